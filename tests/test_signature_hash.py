"""Issue 15, item 7: the digest of a signature follows the key that signs it, as the CA/Browser
Forum's Baseline Requirements pair them: a P-384 key signs with SHA-384, a P-521 key with
SHA-512, RSA with SHA-256, Ed25519 with none of its own. Judged by `openssl x509 -text` and
`openssl req -text` on what provision wrote, for an internal CA (made by provision, or by
openssl for P-521, which a playbook cannot ask for), self-signed leaves and CSRs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from thirdparty import (
    ENV,
    INVENTORY,
    certs_dir,
    example,
    fresh,
    openssl,
    openssl_text,
    write_playbook,
)

pytestmark = pytest.mark.usefixtures("openssl")  # skip locally / fail in CI without it

ECDSA_P256 = {"type": "ecdsa", "curve": "p256"}
ECDSA_P384 = {"type": "ecdsa", "curve": "p384"}
RSA_3072 = {"type": "rsa", "size": 3072}
ED25519 = {"type": "ed25519"}


def signature_algorithm(*args: str | Path) -> str:
    """What openssl names the signature algorithm of a certificate or request."""
    text = openssl_text(*args, "-noout", "-text")
    found = re.search(r"Signature Algorithm: (\S+)", text)
    assert found, text
    return found.group(1)


def apply(cli: Any, playbook: str) -> None:
    result = cli("apply", playbook, "-i", INVENTORY, "-l", "cm-pub-01", env=ENV)
    assert result.exit_code == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("authority_key", "leaf_key", "expected"),
    [
        # The issuer's key decides, not the leaf's: a P-256 leaf of a P-384 CA is SHA-384.
        (ECDSA_P384, ECDSA_P256, "ecdsa-with-SHA384"),
        (ECDSA_P256, ECDSA_P384, "ecdsa-with-SHA256"),
        (RSA_3072, ECDSA_P384, "sha256WithRSAEncryption"),
        (ED25519, ECDSA_P384, "ED25519"),
    ],
)
def test_an_internal_ca_signs_with_the_digest_of_its_own_key(
    project: Path, cli: Any, authority_key: dict[str, Any], leaf_key: dict[str, Any], expected: str
) -> None:
    fresh(project)
    book = example(project)
    book["authorities"][0]["key"] = authority_key
    book["certificates"][0]["key"] = leaf_key
    apply(cli, write_playbook(project, "ca.yml", book))
    ca = project / "playbooks" / "pki" / "voice-root" / "ca.crt"
    assert signature_algorithm("x509", "-in", ca) == expected  # its own self-signature
    leaf = certs_dir(project) / "httpscert.pem"
    assert signature_algorithm("x509", "-in", leaf) == expected
    openssl("verify", "-CAfile", ca, "-purpose", "sslserver", leaf)


def test_a_p521_authority_made_by_openssl_signs_with_sha512(project: Path, cli: Any) -> None:
    """A playbook cannot ask for a P-521 key, but an authority folder may hold one."""
    fresh(project)
    folder = project / "playbooks" / "pki" / "voice-root"
    folder.mkdir(parents=True)
    key, ca = folder / "ca.key", folder / "ca.crt"
    openssl("ecparam", "-name", "secp521r1", "-genkey", "-noout", "-out", key)
    key.chmod(0o600)
    openssl(
        "req", "-x509", "-new", "-key", key, "-out", ca, "-days", "365", "-sha512",
        "-subj", "/O=Example Voice Operations/CN=Example Voice Root CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    book = example(project)
    book["authorities"][0]["create"] = False
    apply(cli, write_playbook(project, "ca.yml", book))
    leaf = certs_dir(project) / "httpscert.pem"
    assert signature_algorithm("x509", "-in", leaf) == "ecdsa-with-SHA512"
    openssl("verify", "-CAfile", ca, "-purpose", "sslserver", leaf)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (ECDSA_P256, "ecdsa-with-SHA256"),
        (ECDSA_P384, "ecdsa-with-SHA384"),
        (RSA_3072, "sha256WithRSAEncryption"),
        (ED25519, "ED25519"),
    ],
)
def test_a_self_signed_certificate_signs_with_the_digest_of_its_key(
    project: Path, cli: Any, key: dict[str, Any], expected: str
) -> None:
    fresh(project)
    book = example(project, "callmanager-https.yml")
    book["certificates"][0]["key"] = key
    apply(cli, write_playbook(project, "self.yml", book))
    pem = project / ".provision" / "fleet" / "cm-pub-01" / "certificates" / "httpscert.pem"
    assert signature_algorithm("x509", "-in", pem) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (ECDSA_P384, "ecdsa-with-SHA384"),
        (RSA_3072, "sha256WithRSAEncryption"),
        (ED25519, "ED25519"),
    ],
)
def test_a_csr_is_signed_with_the_digest_of_its_key(
    project: Path, cli: Any, tmp_path: Path, key: dict[str, Any], expected: str
) -> None:
    fresh(project)
    book = example(project)
    del book["authorities"]
    certificate = book["certificates"][0]
    certificate["source"] = {"type": "provided", "certificate": "files/{{ host.name }}.cer"}
    certificate["key"] = key
    del certificate["validity_days"]
    playbook = write_playbook(project, "csr.yml", book)
    out = tmp_path / "csrs"
    result = cli("csr", playbook, "-i", INVENTORY, "-l", "cm-pub-01", "--out", str(out), env=ENV)
    assert result.exit_code == 0, result.stdout + result.stderr
    request = out / "cm-pub-01-httpscert.csr"
    openssl("req", "-in", request, "-noout", "-verify")
    assert signature_algorithm("req", "-in", request) == expected
