"""`source: {type: provided}`: certificates a third-party CA issued (made here by openssl).

Every test drives the CLI in a temporary copy of the project. Supplied files go into
project/playbooks/files/, where the playbooks' `files/...` paths point.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot
from thirdparty import (
    ENV,
    HOSTS,
    INTER_RFC4514,
    INVENTORY,
    SELF_SIGNED,
    SUPPLIED_PFX_PASSWORD,
    Corp,
    assert_refused,
    certs_dir,
    change_of,
    fingerprint,
    fresh,
    host_sans,
    leaf_ext,
    openssl,
    openssl_ok,
    pem_certificates,
    plan_json,
    provided_playbook,
    public_key_of,
    shared_corp,
    supply,
)

PER_HOST = {
    "certificate": "files/{{ host.name }}.cer",
    "key": "files/{{ host.name }}.key",
    "chain": "files/corp-ca-chain.pem",
}

KEY_KEPT_BUG = (
    "BUG: replacing an installed certificate with a supplied one keeps the old key "
    "file ('up to date (key kept)'): httpscert.key no longer matches httpscert.pem, "
    "and every later plan says 'key does not match certificate'"
)


@pytest.fixture(scope="session")
def corp(openssl: str, tmp_path_factory: pytest.TempPathFactory) -> Corp:
    return shared_corp(tmp_path_factory)


def apply(cli: Any, playbook: str, *args: str, env: dict[str, str] | None = None) -> Any:
    return cli("apply", playbook, "-i", INVENTORY, *args, env={**ENV, **(env or {})})


def assert_installed(project: Path, corp: Corp, host: str, *, key: Path) -> None:
    """What a client and an operator would check on the host after the install."""
    folder = certs_dir(project, host)
    fullchain = folder / "httpscert.pem"
    fqdn, address = HOSTS[host]
    # openssl accepts the written leaf with the supplied chain, and with the written
    # fullchain alone as the untrusted set (so the fullchain carries the intermediate).
    openssl("verify", "-CAfile", corp.root, "-untrusted", corp.chain, fullchain)
    openssl(
        "verify",
        "-CAfile",
        corp.root,
        "-untrusted",
        fullchain,
        "-purpose",
        "sslserver",
        "-verify_hostname",
        fqdn,
        fullchain,
    )
    openssl(
        "verify", "-CAfile", corp.root, "-untrusted", fullchain, "-verify_ip", address, fullchain
    )
    written = pem_certificates(fullchain)
    assert written == [*pem_certificates(corp.hosts[host].pem), *pem_certificates(corp.inter)]
    # httpscert.cer (content: root, DER) is the third party's root.
    assert fingerprint(folder / "httpscert.cer", "DER") == fingerprint(corp.root)
    assert public_key_of(folder / "httpscert.key") == public_key_of(key)
    assert (folder / "httpscert.key").stat().st_mode & 0o777 == 0o600


# --- installing ----------------------------------------------------------------------------


def test_per_host_files_in_any_encoding_install_on_every_host(
    project: Path, cli: Any, corp: Corp
) -> None:
    fresh(project)
    # The .cer of each host holds a different encoding; the content tells which.
    supply(project, corp.hosts["cm-pub-01"].pem, "cm-pub-01.cer")  # PEM
    supply(project, corp.hosts["cm-sub-01"].der, "cm-sub-01.cer")  # DER
    supply(project, corp.hosts["cm-sub-02"].p7b, "cm-sub-02.cer")  # DER PKCS#7 with chain
    for host, leaf in corp.hosts.items():
        supply(project, leaf.key, f"{host}.key")
    supply(project, corp.chain, "corp-ca-chain.pem")
    playbook = provided_playbook(project, PER_HOST)

    plan = plan_json(cli, playbook)
    for host in HOSTS:
        change = plan["hosts"][host]["changes"][0]
        assert (change["resource"], change["action"], change["reason"]) == (
            "certificate httpscert",
            "create",
            "missing",
        )

    result = apply(cli, playbook)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "changed 3" in result.stdout
    for host, leaf in corp.hosts.items():
        assert_installed(project, corp, host, key=leaf.key)

    before = snapshot(project / ".provision")
    again = apply(cli, playbook)
    assert again.exit_code == 0, again.stdout + again.stderr
    assert "Recap: ok 3, changed 0, failed 0" in again.stdout
    assert snapshot(project / ".provision") == before


@pytest.mark.parametrize("password", ["env", "file"])
def test_pfx_with_key_leaf_and_chain_installs(
    project: Path, cli: Any, corp: Corp, password: str
) -> None:
    fresh(project)
    for host, leaf in corp.hosts.items():
        assert leaf.pfx is not None
        supply(project, leaf.pfx, f"{host}.pfx")
    if password == "env":
        ref: dict[str, str] = {"env": "CORP_PFX_PASSWORD"}
        env = {"CORP_PFX_PASSWORD": SUPPLIED_PFX_PASSWORD}
    else:
        secret = project / "playbooks" / "secrets" / "corp-pfx.txt"
        secret.parent.mkdir()
        secret.write_text(SUPPLIED_PFX_PASSWORD + "\n")  # the newline an editor adds
        ref, env = {"file": "secrets/corp-pfx.txt"}, {}
    playbook = provided_playbook(
        project, {"certificate": "files/{{ host.name }}.pfx", "password": ref}
    )
    result = apply(cli, playbook, env=env)
    assert result.exit_code == 0, result.stdout + result.stderr
    for host, leaf in corp.hosts.items():
        assert_installed(project, corp, host, key=leaf.key)
    again = apply(cli, playbook, env=env)
    assert "Recap: ok 3, changed 0, failed 0" in again.stdout, again.stdout


def test_root_file_completes_a_chain_without_the_root(project: Path, cli: Any, corp: Corp) -> None:
    fresh(project)
    leaf = corp.hosts["cm-pub-01"]
    supply(project, leaf.pem, "cm-pub-01.cer")
    supply(project, leaf.key, "cm-pub-01.key")
    supply(project, corp.inter, "corp-inter.pem")
    supply(project, corp.root_der, "corp-root.cer")  # the root as Windows exports it: DER
    playbook = provided_playbook(
        project, {**PER_HOST, "chain": "files/corp-inter.pem", "root": "files/corp-root.cer"}
    )
    result = apply(cli, playbook, "--limit", "cm-pub-01")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert_installed(project, corp, "cm-pub-01", key=leaf.key)


def test_replacing_the_self_signed_certificate_backs_it_up(
    project: Path, cli: Any, corp: Corp
) -> None:
    fresh(project)
    assert apply(cli, SELF_SIGNED, "-l", "cm-pub-01").exit_code == 0
    old = snapshot(certs_dir(project))
    leaf = corp.hosts["cm-pub-01"]
    supply(project, leaf.pem, "cm-pub-01.cer")
    supply(project, leaf.key, "cm-pub-01.key")
    supply(project, corp.chain, "corp-ca-chain.pem")
    playbook = provided_playbook(project, PER_HOST)
    change = plan_json(cli, playbook, "-l", "cm-pub-01")["hosts"]["cm-pub-01"]["changes"][0]
    assert change["action"] == "replace"
    assert change["reason"] == f"issuer changed: self-signed -> {INTER_RFC4514}"
    result = apply(cli, playbook, "-l", "cm-pub-01")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert_installed(project, corp, "cm-pub-01", key=leaf.key)
    backup = sorted((certs_dir(project) / ".backup").iterdir())[-1]
    for name in ("httpscert.cer", "httpscert.pem", "httpscert.key"):
        (saved,) = backup.glob(f"*-{name}")
        assert saved.read_bytes() == old[name][0]


def test_renewed_third_party_certificate_with_a_new_key_is_installed_whole(
    project: Path, cli: Any, corp: Corp, tmp_path: Path
) -> None:
    """The yearly renewal: same CA, new serial, new key."""
    fresh(project)
    leaf = corp.hosts["cm-pub-01"]
    supply(project, leaf.pem, "cm-pub-01.cer")
    supply(project, leaf.key, "cm-pub-01.key")
    supply(project, corp.chain, "corp-ca-chain.pem")
    playbook = provided_playbook(project, PER_HOST)
    assert apply(cli, playbook, "-l", "cm-pub-01").exit_code == 0
    new_key = tmp_path / "renewed.key"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", new_key)
    request = tmp_path / "renewed.csr"
    openssl(
        "req",
        "-new",
        "-key",
        new_key,
        "-out",
        request,
        "-subj",
        "/O=Example Voice Operations/CN=cm-pub-01.voice.example.com",
    )
    renewed = corp.sign(request, tmp_path / "renewed.pem", leaf_ext(host_sans("cm-pub-01")))
    supply(project, renewed, "cm-pub-01.cer")
    supply(project, new_key, "cm-pub-01.key")
    change = plan_json(cli, playbook, "-l", "cm-pub-01")["hosts"]["cm-pub-01"]["changes"][0]
    assert change["action"] == "replace"
    assert change["reason"].startswith("supplied certificate changed: serial ")
    assert apply(cli, playbook, "-l", "cm-pub-01").exit_code == 0
    fullchain = certs_dir(project) / "httpscert.pem"
    assert pem_certificates(fullchain)[0] == pem_certificates(renewed)[0]
    assert public_key_of(certs_dir(project) / "httpscert.key") == public_key_of(new_key)
    again = apply(cli, playbook, "-l", "cm-pub-01")
    assert "cm-pub-01: ok" in again.stdout, again.stdout


# --- refusals ------------------------------------------------------------------------------

# Each case: the files to supply (name in files/ -> attribute path on Corp), the source, and
# what the message must say. cm-pub-01 holds a self-signed certificate to protect.
CER_KEY = {
    "certificate": "files/cm-pub-01.cer",
    "key": "files/cm-pub-01.key",
    "chain": "files/corp-ca-chain.pem",
}
REFUSALS: dict[str, tuple[dict[str, str], dict[str, Any], dict[str, str], tuple[str, ...]]] = {
    "key-does-not-match": (
        {"cm-pub-01.cer": "hosts.cm-pub-01.pem", "cm-pub-01.key": "other_key"},
        CER_KEY,
        {},
        ("files/cm-pub-01.key", "the private key does not match the certificate"),
    ),
    "missing-intermediate": (
        {
            "cm-pub-01.cer": "hosts.cm-pub-01.pem",
            "cm-pub-01.key": "hosts.cm-pub-01.key",
            "corp-ca-chain.pem": "root_only_chain",
        },
        CER_KEY,
        {},
        (
            "files/cm-pub-01.cer",
            "the chain does not lead to a self-signed root",
            f"no certificate for the issuer {INTER_RFC4514}",
        ),
    ),
    "root-missing": (
        {
            "cm-pub-01.cer": "hosts.cm-pub-01.pem",
            "cm-pub-01.key": "hosts.cm-pub-01.key",
            "corp-ca-chain.pem": "inter",
        },
        CER_KEY,
        {},
        ("files/cm-pub-01.cer", "the chain does not lead to a self-signed root", "root:"),
    ),
    "signature-does-not-verify": (
        {
            "cm-pub-01.cer": "hosts.cm-pub-01.pem",
            "cm-pub-01.key": "hosts.cm-pub-01.key",
            "corp-ca-chain.pem": "impostor_chain",
        },
        CER_KEY,
        {},
        ("files/cm-pub-01.cer", f"the signature on {INTER_RFC4514} does not verify"),
    ),
    "expired": (
        {"cm-pub-01.cer": "expired.pem", "cm-pub-01.key": "expired.key"},
        CER_KEY,
        {},
        ("files/cm-pub-01.cer", "CN=cm-pub-01.voice.example.com", "expired on"),
    ),
    "chain-certificate-expired": (
        {
            "cm-pub-01.cer": "expired_inter_leaf.pem",
            "cm-pub-01.key": "expired_inter_leaf.key",
            "corp-ca-chain.pem": "expired_inter_chain",
        },
        CER_KEY,
        {},
        ("files/cm-pub-01.cer", f"certificate {INTER_RFC4514} expired on"),
    ),
    # The one chain verifier's purpose rules (crypto.chains), refused by openssl too
    # (tests/test_chains.py cross-checks each with `openssl verify -purpose sslserver`).
    "issuer-not-a-ca": (
        {
            "cm-pub-01.cer": "not_ca_inter_leaf.pem",
            "cm-pub-01.key": "not_ca_inter_leaf.key",
            "corp-ca-chain.pem": "not_ca_inter_chain",
        },
        CER_KEY,
        {},
        ("files/cm-pub-01.cer", f"{INTER_RFC4514} issued", "is not a CA (CA:FALSE"),
    ),
    "leaf-crl-sign-only": (
        {"cm-pub-01.cer": "crl_sign_only.pem", "cm-pub-01.key": "crl_sign_only.key"},
        CER_KEY,
        {},
        ("files/cm-pub-01.cer", "(CRL Sign) does not allow a TLS server key"),
    ),
    "leaf-signature-damaged": (
        {"cm-pub-01.cer": "damaged_signature", "cm-pub-01.key": "hosts.cm-pub-01.key"},
        CER_KEY,
        {},
        ("files/cm-pub-01.cer", "the signature on CN=cm-pub-01.voice.example.com"),
    ),
    "leaf-sha1": (
        {"cm-pub-01.cer": "sha1_leaf.pem", "cm-pub-01.key": "sha1_leaf.key"},
        CER_KEY,
        {},
        ("files/cm-pub-01.cer", "is signed with SHA-1", "ask the CA for a SHA-256"),
    ),
    "not-yet-valid": (
        {"cm-pub-01.cer": "not_yet_valid.pem", "cm-pub-01.key": "not_yet_valid.key"},
        CER_KEY,
        {},
        ("files/cm-pub-01.cer", "not valid before"),
    ),
    "lacks-server-auth": (
        {"cm-pub-01.cer": "client_only.pem", "cm-pub-01.key": "client_only.key"},
        CER_KEY,
        {},
        ("files/cm-pub-01.cer", "lacks serverAuth"),
    ),
    "name-not-covered": (
        {"cm-pub-01.cer": "missing_name.pem", "cm-pub-01.key": "missing_name.key"},
        CER_KEY,
        {},
        ("files/cm-pub-01.cer", "does not cover every name", "cm-pub-01: not covered"),
    ),
    "rsa-1024": (
        {"cm-pub-01.cer": "rsa1024.pem", "cm-pub-01.key": "rsa1024.key"},
        CER_KEY,
        {},
        ("files/cm-pub-01.key", "RSA key of 1024 bits is too small"),
    ),
    "pfx-wrong-password": (
        {"cm-pub-01.pfx": "hosts.cm-pub-01.pfx"},
        {"certificate": "files/cm-pub-01.pfx", "password": {"env": "CORP_PFX_PASSWORD"}},
        {"CORP_PFX_PASSWORD": "not the password"},
        ("files/cm-pub-01.pfx", "wrong password"),
    ),
    "truncated-pem": (
        {"cm-pub-01.cer": "truncated", "cm-pub-01.key": "hosts.cm-pub-01.key"},
        CER_KEY,
        {},
        ("files/cm-pub-01.cer", "truncated PEM"),
    ),
}


def _corp_file(corp: Corp, dotted: str, tmp: Path) -> Path:
    if dotted == "truncated":
        text = corp.hosts["cm-pub-01"].pem.read_bytes()
        path = tmp / "truncated.pem"
        path.write_bytes(text[: len(text) // 2])
        return path
    value: Any = corp
    parts = dotted.split(".")
    if parts[0] == "hosts":
        value, parts = corp.hosts[f"{parts[1]}"], parts[2:]
    for part in parts:
        value = getattr(value, part)
    assert isinstance(value, Path)
    return value


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusal_names_the_file_and_changes_nothing(
    project: Path, cli: Any, corp: Corp, case: str, tmp_path: Path
) -> None:
    fresh(project)
    first = apply(cli, SELF_SIGNED, "-l", "cm-pub-01")
    assert first.exit_code == 0, first.stdout + first.stderr
    before = snapshot(project / ".provision")
    assert before

    files, source, env, fragments = REFUSALS[case]
    for name, dotted in {"corp-ca-chain.pem": "chain", **files}.items():
        supply(project, _corp_file(corp, dotted, tmp_path), name)
    playbook = provided_playbook(project, source)
    for command in ("plan", "apply"):
        result = cli(command, playbook, "-i", INVENTORY, "-l", "cm-pub-01", env={**ENV, **env})
        message = assert_refused(result, *fragments)
        assert "Traceback" not in message
    assert snapshot(project / ".provision") == before


def test_openssl_agrees_the_broken_chains_are_broken(corp: Corp) -> None:
    """The refusals above are not provision's opinion: openssl rejects the same files."""
    leaf = corp.hosts["cm-pub-01"].pem
    for untrusted in (corp.impostor_chain, corp.root_only_chain):
        ok, _ = openssl_ok("verify", "-CAfile", corp.root, "-untrusted", untrusted, leaf)
        assert not ok
    assert corp.expired_inter_leaf is not None and corp.expired is not None
    ok, out = openssl_ok(
        "verify",
        "-CAfile",
        corp.root,
        "-untrusted",
        corp.expired_inter_chain,
        corp.expired_inter_leaf.pem,
    )
    assert not ok and "expired" in out
    ok, out = openssl_ok("verify", "-CAfile", corp.root, "-untrusted", corp.inter, corp.expired.pem)
    assert not ok and "expired" in out


# --- the CSR workflow: the key is made on the host -------------------------------------------


def csr_playbook(project: Path, *, sites: bool = True) -> str:
    return provided_playbook(
        project,
        {"certificate": "files/{{ host.name }}.cer", "chain": "files/corp-ca-chain.pem"},
        name="csr.yml",
        sites=sites,
    )


def test_without_key_plan_waits_for_the_signed_certificate(
    project: Path, cli: Any, corp: Corp
) -> None:
    fresh(project)
    supply(project, corp.chain, "corp-ca-chain.pem")
    playbook = csr_playbook(project, sites=False)
    document = plan_json(cli, playbook, "-l", "cm-pub-01")
    host = document["hosts"]["cm-pub-01"]
    assert host["status"] == "ok"
    assert host["changes"] == []
    assert "error" not in host
    reasons = {u["resource"]: u["reason"] for u in host["unchanged"]}
    assert "waiting for the signed certificate" in reasons["certificate httpscert"]
    assert "files/cm-pub-01.cer" in reasons["certificate httpscert"]
    assert host["waiting"] == ["httpscert"]
    # Work is still to do (issue 15): --detailed-exitcode says so, and the plan says how.
    command = f"provision csr {playbook} -i {INVENTORY} --out csr"
    pending = cli("plan", playbook, "-i", INVENTORY, "--detailed-exitcode", env=ENV)
    assert pending.exit_code == 2, pending.stdout + pending.stderr
    assert pending.stdout.endswith(
        "Plan: 3 hosts, 0 to change, 0 failed.\n3 certificates wait for a CA to sign a "
        "request (cm-pub-01: httpscert, cm-sub-01: httpscert, cm-sub-02: httpscert). "
        "Unless it was done already, make the keys on the hosts and the requests with\n"
        f"  {command}\nthen have the CA sign each request (csr/HOST-CERTIFICATE.csr) and "
        "save each signed certificate where the certificate's source.certificate says; the "
        "next apply installs it.\n"
    )
    limited = cli("plan", playbook, "-i", INVENTORY, "-l", "cm-sub-01", "--format", "json", env=ENV)
    assert json.loads(limited.stdout)["hosts"]["cm-sub-01"]["waiting"] == ["httpscert"]
    assert f"provision csr {playbook} -i {INVENTORY} --limit cm-sub-01 --out csr" in (
        limited.stderr
    )
    result = apply(cli, playbook)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "Recap: ok 3, changed 0, failed 0" in result.stdout
    assert snapshot(project / ".provision") == {}


def test_a_plan_answered_from_the_record_still_waits(
    project: Path, cli: Any, corp: Corp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No password to read: the waiting plan is recorded, and the record's answer still
    exits 2 and says what to run."""
    from provision import api

    fresh(project)
    supply(project, corp.chain, "corp-ca-chain.pem")
    outputs = [
        {"file": "httpscert.pem", "format": "pem", "content": "fullchain"},
        {"file": "httpscert.key", "format": "pem", "content": "key"},
    ]
    playbook = provided_playbook(
        project,
        {"certificate": "files/{{ host.name }}.cer", "chain": "files/corp-ca-chain.pem"},
        name="csr.yml",
        sites=False,
        outputs=outputs,
    )
    evaluated: list[str] = []
    real = api.load
    monkeypatch.setattr(api, "load", lambda *a, **k: evaluated.append("full") or real(*a, **k))
    time.sleep(0.1)  # the inputs age past the converged record's edit margin
    for _ in range(2):  # in full, then answered from the converged record
        pending = cli("plan", playbook, "-i", INVENTORY, "--detailed-exitcode")
        assert pending.exit_code == 2, pending.stdout + pending.stderr
        assert f"  provision csr {playbook} -i {INVENTORY} --out csr\n" in pending.stdout
    assert evaluated == ["full"]


def test_csr_with_nothing_to_sign_says_so_in_a_sentence(project: Path, cli: Any) -> None:
    fresh(project)
    out = project / "csrs"
    result = cli("csr", SELF_SIGNED, "-i", INVENTORY, "--out", str(out), env=ENV)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {SELF_SIGNED}: nothing to sign on the 3 selected hosts, so nothing was "
        "written. `provision csr` makes a signing request for each certificate that a "
        "third-party CA issues (source: provided) and whose key stays on the host (no key: "
        "file given); this playbook has none: its certificates are issued here (self-signed, "
        "an internal CA) or supplied with their keys.\n"
    )
    assert not out.exists()
    assert not (project / ".provision").exists()


def test_csr_then_signed_certificate_installs_against_the_host_key(
    project: Path, cli: Any, corp: Corp
) -> None:
    fresh(project)
    supply(project, corp.chain, "corp-ca-chain.pem")
    playbook = csr_playbook(project)
    out = project / "csrs"
    result = cli("csr", playbook, "-i", INVENTORY, "--out", str(out), env=ENV)
    assert result.exit_code == 0, result.stdout + result.stderr
    for host in HOSTS:
        key = certs_dir(project, host) / "httpscert.key"
        assert key.stat().st_mode & 0o777 == 0o600
        request = out / f"{host}-httpscert.csr"
        text = openssl("req", "-in", request, "-noout", "-text", "-verify").decode()
        for san in host_sans(host):
            assert san.replace("IP:", "IP Address:") in text
        # The CSR is for the key on the host.
        csr_key = openssl("req", "-in", request, "-noout", "-pubkey")
        host_key = openssl("pkey", "-in", key, "-pubout")
        assert csr_key == host_key

    # A second csr keeps the keys.
    keys_before = {h: (certs_dir(project, h) / "httpscert.key").read_bytes() for h in HOSTS}
    again = cli("csr", playbook, "-i", INVENTORY, "--out", str(out), env=ENV)
    assert again.exit_code == 0
    assert keys_before == {h: (certs_dir(project, h) / "httpscert.key").read_bytes() for h in HOSTS}

    # Only cm-pub-01's certificate came back; the others keep waiting, without error.
    corp.sign(
        out / "cm-pub-01-httpscert.csr",
        project / "playbooks" / "files" / "cm-pub-01.cer",
        leaf_ext(host_sans("cm-pub-01")),
    )
    document = plan_json(cli, playbook)
    pub = document["hosts"]["cm-pub-01"]
    assert pub["changes"][0]["resource"] == "certificate httpscert"
    assert pub["changes"][0]["action"] == "create"
    for host in ("cm-sub-01", "cm-sub-02"):
        reasons = {u["resource"]: u["reason"] for u in document["hosts"][host]["unchanged"]}
        assert "waiting for the signed certificate" in reasons["certificate httpscert"]
    result = apply(cli, playbook)
    assert result.exit_code == 0, result.stdout + result.stderr
    key = certs_dir(project) / "httpscert.key"
    assert key.read_bytes() == keys_before["cm-pub-01"]  # the CSR's key, not rewritten
    fullchain = certs_dir(project) / "httpscert.pem"
    openssl(
        "verify", "-CAfile", corp.root, "-untrusted", fullchain, "-purpose", "sslserver", fullchain
    )
    assert fingerprint(certs_dir(project) / "httpscert.cer", "DER") == fingerprint(corp.root)
    again = apply(cli, playbook)
    assert "cm-pub-01: ok" in again.stdout, again.stdout


def test_signed_certificate_for_another_key_fails_the_host(
    project: Path, cli: Any, corp: Corp, tmp_path: Path
) -> None:
    fresh(project)
    supply(project, corp.chain, "corp-ca-chain.pem")
    playbook = csr_playbook(project)
    result = cli(
        "csr", playbook, "-i", INVENTORY, "-l", "cm-pub-01", "--out", str(tmp_path), env=ENV
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    before = snapshot(project / ".provision")
    # The CA signed a request made with some other key.
    other_csr = tmp_path / "other.csr"
    assert corp.other_key is not None
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-key",
            str(corp.other_key),
            "-out",
            str(other_csr),
            "-subj",
            "/CN=cm-pub-01.voice.example.com",
        ],
        check=True,
        capture_output=True,
    )
    corp.sign(
        other_csr,
        project / "playbooks" / "files" / "cm-pub-01.cer",
        leaf_ext(host_sans("cm-pub-01")),
    )
    failed = apply(cli, playbook, "-l", "cm-pub-01")
    assert_refused(failed, "does not match the key on the host")
    assert snapshot(project / ".provision") == before


def test_csr_for_a_new_key_type_keeps_the_served_pair_until_the_signed_certificate_comes(
    project: Path, cli: Any, corp: Corp
) -> None:
    """Issue 13: `provision csr` after the key type changed never replaces the live key (the
    served certificate would stop matching it); the new key waits beside it, and apply
    installs both once the CA signed the new request, backing up the old pair."""
    fresh(project)
    supply(project, corp.chain, "corp-ca-chain.pem")
    out = project / "csrs"
    rsa_playbook = csr_playbook(project, sites=False)
    made = cli("csr", rsa_playbook, "-i", INVENTORY, "-l", "cm-pub-01", "--out", str(out), env=ENV)
    assert made.exit_code == 0, made.stdout + made.stderr
    signed = project / "playbooks" / "files" / "cm-pub-01.cer"
    corp.sign(out / "cm-pub-01-httpscert.csr", signed, leaf_ext(host_sans("cm-pub-01")))
    assert apply(cli, rsa_playbook, "-l", "cm-pub-01").exit_code == 0
    folder = certs_dir(project)
    live_key, live_cert = folder / "httpscert.key", folder / "httpscert.pem"
    old_key, old_cert = live_key.read_bytes(), live_cert.read_bytes()

    ecdsa_playbook = provided_playbook(
        project,
        {"certificate": "files/{{ host.name }}.cer", "chain": "files/corp-ca-chain.pem"},
        name="csr-ecdsa.yml",
        sites=False,
        key={"type": "ecdsa", "curve": "p256"},
    )
    again = cli(
        "csr", ecdsa_playbook, "-i", INVENTORY, "-l", "cm-pub-01", "--out", str(out), env=ENV
    )
    assert again.exit_code == 0, again.stdout + again.stderr
    assert "created beside the live key" in again.stdout
    # The served pair is untouched and still a pair.
    assert live_key.read_bytes() == old_key and live_cert.read_bytes() == old_cert
    assert openssl("x509", "-in", live_cert, "-noout", "-pubkey") == openssl(
        "pkey", "-in", live_key, "-pubout"
    )
    pending = folder / "httpscert.key.provision-pending"
    assert pending.stat().st_mode & 0o777 == 0o600
    assert b"NIST CURVE: P-256" in openssl("pkey", "-in", pending, "-noout", "-text_pub")
    request = out / "cm-pub-01-httpscert.csr"
    assert openssl("req", "-in", request, "-noout", "-pubkey") == openssl(
        "pkey", "-in", pending, "-pubout"
    )
    # Until the new certificate arrives, the host stays as it is.
    waiting = plan_json(cli, ecdsa_playbook, "-l", "cm-pub-01")["hosts"]["cm-pub-01"]
    assert waiting["changes"] == [], waiting
    # A second csr keeps the pending key.
    pending_bytes = pending.read_bytes()
    cli("csr", ecdsa_playbook, "-i", INVENTORY, "-l", "cm-pub-01", "--out", str(out), env=ENV)
    assert pending.read_bytes() == pending_bytes

    corp.sign(request, signed, leaf_ext(host_sans("cm-pub-01")))
    document = plan_json(cli, ecdsa_playbook, "-l", "cm-pub-01")["hosts"]["cm-pub-01"]
    certificate = change_of({"hosts": {"h": document}}, "h", "certificate httpscert")
    assert certificate is not None and "`provision csr` made" in certificate["reason"]
    dropped = change_of({"hosts": {"h": document}}, "h", "file httpscert.key.provision-pending")
    assert dropped is not None and dropped["action"] == "delete"
    result = apply(cli, ecdsa_playbook, "-l", "cm-pub-01")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert live_key.read_bytes() == pending_bytes
    assert not pending.exists()
    assert openssl("x509", "-in", live_cert, "-noout", "-pubkey") == openssl(
        "pkey", "-in", live_key, "-pubout"
    )
    backed_up = [p.read_bytes() for p in (folder / ".backup").rglob("*httpscert.key")]
    assert old_key in backed_up
    assert "cm-pub-01: ok" in apply(cli, ecdsa_playbook, "-l", "cm-pub-01").stdout
