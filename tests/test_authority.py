"""Internal CAs: the `callmanager-https-ca.yml` example, judged with the openssl command line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot
from thirdparty import (
    CA_PLAYBOOK,
    ENV,
    HOSTS,
    INVENTORY,
    assert_refused,
    certs_dir,
    example,
    fingerprint,
    fresh,
    openssl,
    openssl_text,
    pem_certificates,
    plan_json,
    sha256,
    subjects,
    write_playbook,
)

pytestmark = pytest.mark.usefixtures("openssl")  # skip locally / fail in CI without it

CA_SUBJECT = "O = Example Voice Operations, CN = Example Voice Root CA"


def authority_dir(project: Path) -> Path:
    return project / "playbooks" / "pki" / "voice-root"


def apply(cli: Any, playbook: str = CA_PLAYBOOK, *args: str) -> Any:
    return cli("apply", playbook, "-i", INVENTORY, *args, env=ENV)


def test_ca_example_creates_the_authority_and_issues_every_host(project: Path, cli: Any) -> None:
    fresh(project)
    result = apply(cli)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "Recap: ok 0, changed 3, failed 0" in result.stdout

    folder = authority_dir(project)
    assert sorted(p.name for p in folder.iterdir()) == ["ca.crt", "ca.key", "serial"]
    assert (folder / "ca.key").stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o077 == 0  # the folder is the owner's alone
    assert int((folder / "serial").read_text(), 16) == 1 + len(HOSTS)  # next serial

    ca = folder / "ca.crt"
    text = openssl_text("x509", "-in", ca, "-noout", "-text")
    assert re.search(r"X509v3 Basic Constraints: critical\n\s+CA:TRUE\n", text), text
    usage = re.search(r"X509v3 Key Usage: critical\n\s+(.*)\n", text)
    assert usage, text
    assert {"Certificate Sign", "CRL Sign"} <= set(usage.group(1).split(", "))
    assert f"Subject: {CA_SUBJECT}" in text
    assert f"Issuer: {CA_SUBJECT}" in text
    assert "ASN1 OID: secp384r1" in text  # key: {type: ecdsa, curve: p384}
    openssl("verify", "-CAfile", ca, ca)  # a well-formed self-signed root

    serials = set()
    for host, (fqdn, address) in HOSTS.items():
        certs = certs_dir(project, host)
        fullchain = certs / "httpscert.pem"
        openssl(
            "verify", "-CAfile", ca, "-purpose", "sslserver", "-verify_hostname", fqdn, fullchain
        )
        openssl("verify", "-CAfile", ca, "-verify_ip", address, fullchain)
        leaf_text = openssl_text("x509", "-in", fullchain, "-noout", "-text", "-serial")
        for name in (
            f"DNS:{fqdn}",
            f"DNS:{host}",
            f"IP Address:{address}",
            "DNS:localhost",
            "IP Address:127.0.0.1",
        ):
            assert name in leaf_text
        assert "CA:FALSE" in leaf_text
        assert "TLS Web Server Authentication" in leaf_text
        serials.add(re.search(r"serial=(\w+)", leaf_text).group(1))  # type: ignore[union-attr]
        # The root in DER, as the original procedure asks.
        assert fingerprint(certs / "httpscert.cer", "DER") == fingerprint(ca)
        assert (certs / "httpscert.key").stat().st_mode & 0o777 == 0o600
        assert (certs / "httpscert.pfx").stat().st_mode & 0o777 == 0o600
    assert len(serials) == len(HOSTS)


def test_second_apply_changes_nothing(project: Path, cli: Any) -> None:
    fresh(project)
    assert apply(cli).exit_code == 0
    before = snapshot(project / ".provision")
    ca_before = {name: data[:2] for name, data in snapshot(authority_dir(project)).items()}
    again = apply(cli)
    assert again.exit_code == 0, again.stdout + again.stderr
    assert "Recap: ok 3, changed 0, failed 0" in again.stdout
    # Every byte and every mtime: the PFX (random salt) is compared by meaning, not rewritten.
    assert snapshot(project / ".provision") == before
    assert {name: data[:2] for name, data in snapshot(authority_dir(project)).items()} == (
        ca_before
    )
    plan = cli("plan", CA_PLAYBOOK, "-i", INVENTORY, "--detailed-exitcode", env=ENV)
    assert plan.exit_code == 0, plan.stdout


def test_apply_that_issues_nothing_leaves_the_authority_folder_alone(
    project: Path, cli: Any
) -> None:
    fresh(project)
    assert apply(cli, CA_PLAYBOOK, "-l", "cm-pub-01").exit_code == 0
    before = snapshot(authority_dir(project))
    assert "changed 0" in apply(cli, CA_PLAYBOOK, "-l", "cm-pub-01").stdout
    assert snapshot(authority_dir(project)) == before


def test_fullchain_of_a_root_issued_leaf_is_the_leaf_alone(project: Path, cli: Any) -> None:
    """fullchain = leaf + intermediates; an internal root CA has none, so the .pem and .p7b
    hold the leaf only, while the .pfx carries the root too (for IIS to build the chain)."""
    fresh(project)
    assert apply(cli, CA_PLAYBOOK, "-l", "cm-pub-01").exit_code == 0
    certs = certs_dir(project)
    leaf = "O = Example Voice Operations, CN = cm-pub-01.voice.example.com"
    assert subjects(openssl_text("x509", "-in", certs / "httpscert.pem", "-noout", "-subject")) == [
        leaf
    ]
    assert len(pem_certificates(certs / "httpscert.pem")) == 1
    p7b = openssl_text(
        "pkcs7", "-inform", "DER", "-in", certs / "httpscert.p7b", "-print_certs", "-noout"
    )
    assert subjects(p7b) == [leaf]
    pfx = openssl_text(
        "pkcs12", "-in", certs / "httpscert.pfx", "-passin", "env:PFX_PASSWORD", "-nokeys", env=ENV
    )
    assert subjects(pfx) == [leaf, CA_SUBJECT]  # leaf first, then the root
    assert "friendlyName: httpscert" in pfx


def test_authority_without_create_and_no_folder_is_an_error(project: Path, cli: Any) -> None:
    fresh(project)
    data = example(project)
    data["authorities"][0]["create"] = False
    playbook = write_playbook(project, "no-create.yml", data)
    for command in ("validate", "plan", "apply"):
        result = cli(command, playbook, "-i", INVENTORY, env=ENV)
        assert_refused(
            result,
            "authority 'voice-root' has no key or certificate in",
            "pki/voice-root",
            "create: true",
        )
    assert not (project / ".provision").exists()
    assert not authority_dir(project).exists()


def test_ca_init_then_an_authority_without_create(project: Path, cli: Any) -> None:
    fresh(project)
    data = example(project)
    data["authorities"][0]["create"] = False
    playbook = write_playbook(project, "no-create.yml", data)
    made = cli("ca", "init", playbook, "voice-root")
    assert made.exit_code == 0, made.stdout + made.stderr
    assert (authority_dir(project) / "ca.key").stat().st_mode & 0o777 == 0o600
    assert_refused(cli("ca", "init", playbook, "voice-root"), "already exists")
    result = apply(cli, playbook, "-l", "cm-pub-01")
    assert result.exit_code == 0, result.stdout + result.stderr
    openssl(
        "verify", "-CAfile", authority_dir(project) / "ca.crt", certs_dir(project) / "httpscert.pem"
    )


def test_authority_key_that_does_not_match_its_certificate(
    project: Path, cli: Any, tmp_path: Path
) -> None:
    fresh(project)
    assert apply(cli).exit_code == 0
    key = authority_dir(project) / "ca.key"
    openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-out",
        tmp_path / "other.key",
    )
    key.write_bytes((tmp_path / "other.key").read_bytes())
    key.chmod(0o600)
    before = snapshot(project / ".provision")
    result = apply(cli)
    assert_refused(
        result, "authority 'voice-root'", "ca.key does not match the certificate", "ca.crt"
    )
    assert snapshot(project / ".provision") == before


def test_authority_key_readable_by_others_is_refused(project: Path, cli: Any) -> None:
    fresh(project)
    assert apply(cli, CA_PLAYBOOK, "-l", "cm-pub-01").exit_code == 0
    (authority_dir(project) / "ca.key").chmod(0o644)
    before = snapshot(project / ".provision")
    assert_refused(apply(cli), "ca.key is readable by others", "chmod 600")
    assert snapshot(project / ".provision") == before


@pytest.mark.parametrize("curve", ["p256", "p384"])
def test_leaves_differ_per_host_and_chain_to_the_same_root(
    project: Path, cli: Any, curve: str
) -> None:
    fresh(project)
    data = example(project)
    data["authorities"][0]["key"] = {"type": "ecdsa", "curve": curve}
    data["certificates"][0]["key"] = {"type": "ecdsa", "curve": "p256"}
    playbook = write_playbook(project, "ec.yml", data)
    assert apply(cli, playbook).exit_code == 0
    roots = {sha256(pem_certificates(authority_dir(project) / "ca.crt")[0])}
    leaves = set()
    for host in HOSTS:
        leaf = pem_certificates(certs_dir(project, host) / "httpscert.pem")[0]
        leaves.add(sha256(leaf))
        openssl(
            "verify",
            "-CAfile",
            authority_dir(project) / "ca.crt",
            certs_dir(project, host) / "httpscert.pem",
        )
    assert len(leaves) == len(HOSTS) and len(roots) == 1


def test_a_reissue_leaves_the_issuers_outputs_alone(project: Path, cli: Any) -> None:
    """Issue 15, item 7: a leaf reissued by the same CA changes the leaf's outputs only; the
    root (DER) and the chain (PEM, empty under a root CA) already hold what the reissue keeps,
    so the plan lists them unchanged and apply leaves each file as it was (inode and mtime)."""
    fresh(project)
    data = example(project)
    data["certificates"][0]["outputs"].append(
        {"file": "httpscert.chain.pem", "format": "pem", "content": "chain"}
    )
    playbook = write_playbook(project, "reissue.yml", data)
    assert apply(cli, playbook, "-l", "cm-pub-01").exit_code == 0
    certs = certs_dir(project)
    kept = ("httpscert.cer", "httpscert.chain.pem")
    before = {name: (certs / name).stat() for name in kept}
    leaf_before = (certs / "httpscert.pem").read_bytes()

    data["certificates"][0]["names"].append("new.voice.example.com")
    write_playbook(project, "reissue.yml", data)
    plan = plan_json(cli, playbook, "-l", "cm-pub-01")["hosts"]["cm-pub-01"]
    changed = {c["resource"] for c in plan["changes"]}
    assert "certificate httpscert" in changed
    assert {"file httpscert.pem", "file httpscert.p7b", "file httpscert.pfx"} <= changed
    assert not changed & {f"file {name}" for name in kept}, plan["changes"]
    unchanged = {u["resource"]: u["reason"] for u in plan["unchanged"]}
    for name in kept:
        assert unchanged[f"file {name}"] == "up to date (the issuer's, which the reissue keeps)"

    result = apply(cli, playbook, "-l", "cm-pub-01")
    assert result.exit_code == 0, result.stdout + result.stderr
    for name in kept:
        assert f"file {name}" not in result.stdout
        after = (certs / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before[name].st_ino, before[name].st_mtime_ns)
    assert (certs / "httpscert.pem").read_bytes() != leaf_before
    openssl("verify", "-CAfile", authority_dir(project) / "ca.crt", certs / "httpscert.pem")
    assert fingerprint(certs / "httpscert.cer", "DER") == fingerprint(
        authority_dir(project) / "ca.crt"
    )
    again = cli(
        "plan", playbook, "-i", INVENTORY, "-l", "cm-pub-01", "--detailed-exitcode", env=ENV
    )
    assert again.exit_code == 0, again.stdout
