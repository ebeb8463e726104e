"""The one chain verifier (provision.crypto.chains), judged against `openssl verify`.

Every broken chain below is made by the openssl command line (tests/thirdparty.py), refused by
`chains.verify` with a message naming the certificate and the rule, and refused by
`openssl verify -purpose sslserver` too: the verdicts are not provision's opinion. The same
files are then refused by `provision cert check --ca`, and a damaged signature on a host's
certificate is reissued by planning instead of being reported ok.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from thirdparty import (
    CA_PLAYBOOK,
    ENV,
    INTER_RFC4514,
    INVENTORY,
    SELF_SIGNED,
    Corp,
    certs_dir,
    damage_first_signature,
    fresh,
    openssl_ok,
    pem_certificates,
    provided_playbook,
    shared_corp,
    supply,
)
from typer.testing import CliRunner

from provision.cli.cert import app as cert_app
from provision.crypto import chains

LEAF_RFC4514 = "CN=cm-pub-01.voice.example.com,O=Example Voice Operations"
FQDN = "cm-pub-01.voice.example.com"


@pytest.fixture(scope="session")
def corp(openssl: str, tmp_path_factory: pytest.TempPathFactory) -> Corp:
    return shared_corp(tmp_path_factory)


def _path(corp: Corp, dotted: str) -> Path:
    value: Any = corp
    for part in dotted.split("."):
        value = corp.hosts[part] if value is corp and part == "cm-pub-01" else getattr(value, part)
    assert isinstance(value, Path), dotted
    return value


# case: (leaf file, untrusted file, rule, fragments of the message)
BROKEN: dict[str, tuple[str, str, chains.Rule, tuple[str, ...]]] = {
    "intermediate-ca-false": (
        "not_ca_inter_leaf.pem",
        "not_ca_inter_chain",
        "not-a-ca",
        (INTER_RFC4514, "is not a CA", "CA:FALSE"),
    ),
    "leaf-crl-sign-only": (
        "crl_sign_only.pem",
        "chain",
        "key-usage",
        (LEAF_RFC4514, "(CRL Sign) does not allow a TLS server key"),
    ),
    "leaf-without-server-auth": (
        "client_only.pem",
        "chain",
        "extended-key-usage",
        (LEAF_RFC4514, "lacks serverAuth"),
    ),
    "leaf-signature-damaged": (
        "damaged_signature",
        "chain",
        "signature",
        (f"the signature on {LEAF_RFC4514} does not verify with the key of {INTER_RFC4514}",),
    ),
    "intermediate-expired": (
        "expired_inter_leaf.pem",
        "expired_inter_chain",
        "validity",
        (f"certificate {INTER_RFC4514} expired on",),
    ),
    "intermediate-path-length-exceeded": (
        "too_deep_leaf.pem",
        "too_deep_chain",
        "path-length",
        (f"{INTER_RFC4514} allows at most 0 CA certificate(s) between it and the leaf",),
    ),
    "intermediate-signed-by-an-impostor": (
        "cm-pub-01.pem",
        "impostor_chain",
        "signature",
        (f"the signature on {INTER_RFC4514} does not verify",),
    ),
    "intermediate-missing": (
        "cm-pub-01.pem",
        "root_only_chain",
        "no-issuer",
        (f"no certificate for the issuer {INTER_RFC4514} of {LEAF_RFC4514}",),
    ),
}


def _verify(corp: Corp, leaf: Path, untrusted: Path, **options: Any) -> list[x509.Certificate]:
    return chains.verify(
        pem_certificates(leaf)[0],
        pem_certificates(untrusted),
        pem_certificates(corp.root),
        dt.datetime.now(dt.UTC),
        **options,
    )


def test_a_good_chain_gives_the_path_and_openssl_agrees(corp: Corp) -> None:
    leaf = corp.hosts["cm-pub-01"].pem
    path = _verify(corp, leaf, corp.chain, purpose="server", names=[FQDN, "10.10.0.11"])
    assert path == [*pem_certificates(leaf), *pem_certificates(corp.chain)]
    ok, out = openssl_ok(
        "verify", "-CAfile", corp.root, "-untrusted", corp.chain, "-purpose", "sslserver", leaf
    )
    assert ok, out


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_broken_chain_is_refused_by_us_and_by_openssl(corp: Corp, case: str) -> None:
    leaf_name, untrusted_name, rule, fragments = BROKEN[case]
    leaf, untrusted = (
        _path(corp, leaf_name),
        _path(corp, untrusted_name),
    )
    with pytest.raises(chains.ChainError) as refused:
        _verify(corp, leaf, untrusted, purpose="server")
    problem = refused.value.problem
    assert problem.rule == rule, refused.value.message
    message = refused.value.message
    assert message.startswith("chain does not verify: ")
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    ok, out = openssl_ok(
        "verify", "-CAfile", corp.root, "-untrusted", untrusted, "-purpose", "sslserver", leaf
    )
    assert not ok, f"openssl accepts what we refuse ({case}): {out}"


def test_sha1_is_refused_on_a_signature_but_not_on_a_roots_own(corp: Corp) -> None:
    """SHA-1 is named as such; a root's self-signature is never judged (old roots signed with
    SHA-1 are still trusted). openssl agrees at the security level TLS clients verify with
    (`-auth_level 1`; `openssl verify` alone checks no digest strength)."""
    assert corp.sha1_leaf is not None and corp.sha1_root is not None
    assert corp.sha1_root_leaf is not None
    with pytest.raises(chains.ChainError) as refused:
        _verify(corp, corp.sha1_leaf.pem, corp.chain, purpose="server")
    assert refused.value.problem.rule == "sha1"
    assert f"{LEAF_RFC4514} is signed with SHA-1" in refused.value.message
    ok, out = openssl_ok(
        "verify", "-auth_level", "1", "-CAfile", corp.root, "-untrusted", corp.chain,
        "-purpose", "sslserver", corp.sha1_leaf.pem,
    )  # fmt: skip
    assert not ok and "too weak" in out, out

    leaf = pem_certificates(corp.sha1_root_leaf.pem)[0]
    root = pem_certificates(corp.sha1_root)[0]
    now = dt.datetime.now(dt.UTC)
    assert chains.verify(leaf, [], [root], now, purpose="server") == [leaf, root]
    ok, out = openssl_ok(
        "verify", "-auth_level", "1", "-CAfile", corp.sha1_root, "-purpose", "sslserver",
        corp.sha1_root_leaf.pem,
    )  # fmt: skip
    assert ok, out


def test_usage_rules_belong_to_the_server_purpose(corp: Corp) -> None:
    """Without a purpose (cert check --ca), a leaf's key usage and EKU are not judged, as
    `openssl verify` without -purpose does not; the other rules still hold."""
    assert corp.crl_sign_only is not None and corp.client_only is not None
    for leaf in (corp.crl_sign_only.pem, corp.client_only.pem):
        assert len(_verify(corp, leaf, corp.chain)) == 3
        ok, out = openssl_ok("verify", "-CAfile", corp.root, "-untrusted", corp.chain, leaf)
        assert ok, out
    assert corp.damaged_signature is not None
    with pytest.raises(chains.ChainError, match="signature on"):
        _verify(corp, corp.damaged_signature, corp.chain)


def test_a_name_the_client_uses_must_be_covered(corp: Corp) -> None:
    with pytest.raises(chains.ChainError) as refused:
        _verify(corp, corp.hosts["cm-pub-01"].pem, corp.chain, names=["other.example.com"])
    assert refused.value.problem.rule == "name"
    assert "other.example.com: not covered by the DNS SANs" in refused.value.message


def test_an_untrusted_root_is_named(corp: Corp, tmp_path: Path) -> None:
    """The chain reaches a self-signed certificate that is not among the trusted roots."""
    leaf = pem_certificates(corp.hosts["cm-pub-01"].pem)[0]
    inter, root = pem_certificates(corp.chain)
    impostor = pem_certificates(corp.dir / "impostor-root.pem")
    with pytest.raises(chains.ChainError) as refused:
        chains.verify(leaf, [inter, root], impostor, dt.datetime.now(dt.UTC))
    assert refused.value.problem.rule == "untrusted-root"
    assert "not among the trusted roots" in refused.value.message


def test_signature_problem_asked_again_is_answered_from_the_memo(corp: Corp) -> None:
    """Planning asks twice in a row for a self-signed leaf (issued_by, then the proof): the
    second answer comes from the memo, which is keyed by the certificates' bytes, so an
    equal certificate parsed again is the same key, and a damaged one is not."""
    leaf = pem_certificates(corp.hosts["cm-pub-01"].pem)[0]
    inter = pem_certificates(corp.inter)[0]
    assert corp.damaged_signature is not None
    damaged = pem_certificates(corp.damaged_signature)[0]
    chains._signature_verifies.cache_clear()
    assert chains.signature_problem(leaf, inter) is None
    assert chains.signature_problem(pem_certificates(corp.hosts["cm-pub-01"].pem)[0], inter) is None
    assert chains._signature_verifies.cache_info().hits == 1
    problem = chains.signature_problem(damaged, inter)
    assert problem == f"the signature on {LEAF_RFC4514} does not verify with the key of " + (
        INTER_RFC4514
    )
    assert chains._signature_verifies.cache_info().misses == 2


# --- provision cert check --ca ----------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["intermediate-ca-false", "leaf-signature-damaged", "intermediate-expired"]
)
def test_cert_check_refuses_the_broken_chains(corp: Corp, case: str, tmp_path: Path) -> None:
    leaf_name, untrusted_name, _, fragments = BROKEN[case]
    leaf = _path(corp, leaf_name)
    bundle = tmp_path / "fullchain.pem"
    bundle.write_bytes(leaf.read_bytes() + _path(corp, untrusted_name).read_bytes())
    result = CliRunner().invoke(
        cert_app, ["check", str(bundle), "--name", FQDN, "--ca", str(corp.root)]
    )
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{bundle}: chain does not verify: ")
    for fragment in fragments:
        assert fragment in lines[0]


# --- planning: a damaged signature on a host is reissued, not reported ok -----------------------


def _plan(cli: Any, playbook: str) -> list[tuple[str, str, str]]:
    result = cli("plan", playbook, "-i", INVENTORY, "-l", "cm-pub-01", "--format", "json", env=ENV)
    assert result.exit_code == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    return [
        (c["resource"], c["action"], c["reason"]) for c in document["hosts"]["cm-pub-01"]["changes"]
    ]


@pytest.mark.parametrize(
    ("playbook", "issuer"),
    [
        (SELF_SIGNED, "its own (self-signed) certificate"),
        (CA_PLAYBOOK, "CN=Example Voice Root CA,O=Example Voice Operations"),
    ],
)
def test_a_damaged_signature_on_the_host_is_reissued(
    project: Path, cli: Any, playbook: str, issuer: str
) -> None:
    fresh(project)
    applied = cli("apply", playbook, "-i", INVENTORY, "-l", "cm-pub-01", env=ENV)
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    assert _plan(cli, playbook) == []
    fullchain = certs_dir(project) / "httpscert.pem"
    damage_first_signature(fullchain)

    changes = _plan(cli, playbook)
    assert changes[0] == (
        "certificate httpscert",
        "replace",
        f"signature does not verify: the signature on {LEAF_RFC4514} does not verify "
        f"with the key of {issuer}",
    )
    # Every output is rewritten from the new certificate; none copies the damaged one.
    assert {c[0] for c in changes[1:] if c[0].startswith("file ")} >= {"file httpscert.pem"}
    settled = cli("apply", playbook, "-i", INVENTORY, "-l", "cm-pub-01", env=ENV)
    assert settled.exit_code == 0, settled.stdout + settled.stderr
    assert _plan(cli, playbook) == []
    # openssl agrees the new certificate's signature verifies (-check_ss_sig: a self-signed
    # certificate's own signature is checked too).
    issuer = fullchain if playbook == SELF_SIGNED else project / "playbooks/pki/voice-root/ca.crt"
    ok, out = openssl_ok("verify", "-check_ss_sig", "-CAfile", issuer, fullchain)
    assert ok, out


def test_an_altered_copy_of_a_supplied_certificate_is_replaced_and_says_so(
    project: Path, cli: Any, corp: Corp
) -> None:
    fresh(project)
    host = corp.hosts["cm-pub-01"]
    supply(project, host.pem, "cm-pub-01.cer")
    supply(project, host.key, "cm-pub-01.key")
    supply(project, corp.chain, "corp-ca-chain.pem")
    playbook = provided_playbook(
        project,
        {
            "certificate": "files/{{ host.name }}.cer",
            "key": "files/{{ host.name }}.key",
            "chain": "files/corp-ca-chain.pem",
        },
    )
    applied = cli("apply", playbook, "-i", INVENTORY, "-l", "cm-pub-01", env=ENV)
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    damage_first_signature(certs_dir(project) / "httpscert.pem")
    serial = f"{pem_certificates(host.pem)[0].serial_number:x}"
    assert _plan(cli, playbook)[0] == (
        "certificate httpscert",
        "replace",
        f"differs from files/cm-pub-01.cer under the same serial {serial} "
        "(a damaged or altered copy)",
    )
    settled = cli("apply", playbook, "-i", INVENTORY, "-l", "cm-pub-01", env=ENV)
    assert settled.exit_code == 0, settled.stdout + settled.stderr
    assert _plan(cli, playbook) == []
