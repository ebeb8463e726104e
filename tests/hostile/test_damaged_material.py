"""Host files that look right and are not (issue 14): a private key whose public half still
matches its certificate but whose private numbers are damaged. Keys are loaded without
OpenSSL's slow RSA consistency check, so only a signature shows it: the plan must say so and
apply must replace it, never report `ok` while every TLS handshake fails."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PLAYBOOK = "playbooks/callmanager-https.yml"
INVENTORY = "inventory/example.yml"


def _damage(key_file: Path) -> None:
    """Rewrite an RSA key with wrong private numbers and the same public ones."""
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    numbers = key.private_numbers()
    wrong = rsa.RSAPrivateNumbers(
        p=numbers.p,
        q=numbers.q,
        d=numbers.d + 2,
        dmp1=(numbers.dmp1 + 2) % (numbers.p - 1),
        dmq1=(numbers.dmq1 + 2) % (numbers.q - 1),
        iqmp=numbers.iqmp,
        public_numbers=numbers.public_numbers,
    )
    damaged = wrong.private_key(unsafe_skip_rsa_key_validation=True)
    key_file.write_bytes(
        damaged.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def _key_ok(key: Path) -> bool:
    # (OpenSSL 3 exits 0 from `rsa -check` even when it finds the key broken: read its words.)
    checked = _openssl("rsa", "-in", str(key), "-check", "-noout")
    return "RSA key ok" in checked.stdout and "error" not in checked.stderr


def test_a_damaged_key_with_an_intact_public_half_is_replaced(project: Path, cli: Any) -> None:
    assert cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01").exit_code == 0
    folder = project / ".provision" / "fleet" / "cm-pub-01" / "certificates"
    key, certificate = folder / "httpscert.key", folder / "httpscert.pem"
    _damage(key)
    # What openssl says of the planted key: the public halves agree, the key is broken.
    public_of_key = _openssl("pkey", "-in", str(key), "-pubout").stdout
    public_of_certificate = _openssl("x509", "-in", str(certificate), "-noout", "-pubkey").stdout
    assert public_of_key == public_of_certificate
    assert not _key_ok(key)

    plan = cli("plan", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01", "--format", "json")
    host = json.loads(plan.stdout)["hosts"]["cm-pub-01"]
    reasons = {c["resource"]: c["reason"] for c in host["changes"]}
    assert reasons["certificate httpscert"] == (
        "key is damaged: a signature made with it does not verify"
    )
    assert cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01").exit_code == 0
    assert _key_ok(key)
    again = cli("plan", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01", "--format", "json")
    assert json.loads(again.stdout)["hosts"]["cm-pub-01"]["changes"] == []
