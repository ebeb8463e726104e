"""Revocation for an internal CA (issue 18, item 4): replaced leaves and `provision ca revoke`
go on the CRL, published as DER and PEM; leaves carry its distribution point. Judged with
`openssl crl` and `openssl verify -crl_check`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from thirdparty import (
    ENV,
    INVENTORY,
    assert_refused,
    certs_dir,
    example,
    fresh,
    openssl_ok,
    openssl_text,
    pem_certificates,
    write_playbook,
)

pytestmark = pytest.mark.usefixtures("openssl")

URL = "http://pki.example.test/voice-root.crl"


def crl_playbook(project: Path, extra_name: str | None = None) -> str:
    data: dict[str, Any] = example(project)
    del data["sites"]
    data["authorities"][0]["crl"] = {"dir": "pki/crl", "url": URL}
    if extra_name:
        data["certificates"][0]["names"].append(extra_name)
    return write_playbook(project, "crl.yml", data)


def crl_dir(project: Path) -> Path:
    return project / "playbooks" / "pki" / "crl"


def ca_file(project: Path) -> Path:
    return project / "playbooks" / "pki" / "voice-root" / "ca.crt"


def verify_with_crl(project: Path, leaf: Path) -> tuple[bool, str]:
    return openssl_ok(
        "verify", "-crl_check", "-CRLfile", crl_dir(project) / "crl.pem",
        "-CAfile", ca_file(project), leaf,
    )  # fmt: skip


def serial_hex(leaf: Path) -> str:
    digits = format(pem_certificates(leaf)[0].serial_number, "X")
    return digits.zfill(len(digits) + len(digits) % 2)  # as openssl prints it: whole bytes


def test_replaced_and_revoked_leaves_are_on_the_crl(
    project: Path, cli: Any, tmp_path: Path
) -> None:
    fresh(project)
    playbook = crl_playbook(project)
    result = cli("apply", playbook, "-i", INVENTORY, env=ENV)
    assert result.exit_code == 0, result.stdout + result.stderr

    pub = certs_dir(project, "cm-pub-01") / "httpscert.pem"
    text = openssl_text("x509", "-in", pub, "-noout", "-text")
    assert "X509v3 CRL Distribution Points" in text and f"URI:{URL}" in text, text
    listing = openssl_text(
        "crl", "-inform", "DER", "-in", crl_dir(project) / "crl.der", "-noout", "-text"
    )
    assert "No Revoked Certificates" in listing, listing
    ok, output = verify_with_crl(project, pub)
    assert ok, output

    # A leaf replaced by apply (a name added) is superseded: on the CRL, the new one is not.
    old = tmp_path / "old-pub.pem"
    shutil.copyfile(pub, old)
    playbook = crl_playbook(project, "extra.example.test")
    result = cli("apply", playbook, "-i", INVENTORY, env=ENV)
    assert result.exit_code == 0, result.stdout + result.stderr
    listing = openssl_text(
        "crl", "-inform", "DER", "-in", crl_dir(project) / "crl.der", "-noout", "-text"
    )
    assert f"Serial Number: {serial_hex(old)}" in listing, listing
    assert "Superseded" in listing
    ok, output = verify_with_crl(project, old)
    assert not ok and "certificate revoked" in output, output
    ok, output = verify_with_crl(project, pub)
    assert ok, output

    # `provision ca revoke` with a certificate file: on the CRL at once.
    sub = certs_dir(project, "cm-sub-01") / "httpscert.pem"
    result = cli(
        "ca",
        "revoke",
        playbook,
        "voice-root",
        "--certificate",
        str(sub),
        "--reason",
        "key-compromise",
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    listing = openssl_text(
        "crl", "-inform", "DER", "-in", crl_dir(project) / "crl.der", "-noout", "-text"
    )
    assert f"Serial Number: {serial_hex(sub)}" in listing and "Key Compromise" in listing
    ok, output = verify_with_crl(project, sub)
    assert not ok and "certificate revoked" in output, output
    # Again: nothing changes, and it says so.
    again = cli("ca", "revoke", playbook, "voice-root", "--serial", serial_hex(sub))
    assert again.exit_code == 0 and "already revoked" in again.stdout

    # An idle apply leaves the CRL alone (fresh for half its period).
    before = (crl_dir(project) / "crl.der").read_bytes()
    assert cli("apply", playbook, "-i", INVENTORY, env=ENV).exit_code == 0
    assert (crl_dir(project) / "crl.der").read_bytes() == before


def test_revoke_refuses_bad_input_in_one_line(project: Path, cli: Any) -> None:
    fresh(project)
    playbook = crl_playbook(project)
    assert cli("ca", "init", playbook, "voice-root").exit_code == 0
    assert_refused(cli("ca", "revoke", playbook, "voice-root", "--serial", "zz"), "--serial 'zz'")
    assert_refused(cli("ca", "revoke", playbook, "voice-root"), "--serial HEX or --certificate")
    assert_refused(
        cli("ca", "revoke", playbook, "voice-root", "--serial", "1F", "--reason", "bored"),
        "unknown revocation reason 'bored'",
    )
    assert_refused(
        cli("ca", "revoke", playbook, "nope", "--serial", "1F"), "no authority named 'nope'"
    )
    other = project / "other.pem"
    other.write_text("not a certificate\n")
    assert_refused(
        cli("ca", "revoke", playbook, "voice-root", "--certificate", str(other)), "other.pem"
    )
    revoked = project / "playbooks" / "pki" / "voice-root" / "revoked"
    revoked.write_text("garbage\n")
    assert_refused(cli("ca", "revoke", playbook, "voice-root", "--serial", "1F"), f"{revoked}:1")
