"""load_bundle / load_private_key against files written by the openssl command line."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from certfixtures import KEY_PASSWORD, PFX_PASSWORD, Pki, openssl, shared_pki
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from provision.crypto import decode
from provision.crypto.decode import Bundle, load_bundle, load_private_key
from provision.errors import CryptoError


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return shared_pki(tmp_path_factory)


def _load(path: Path, password: str | None = None) -> Bundle:
    data = path.read_bytes()
    return load_bundle(data, password=None if password is None else password.encode(),
                       source=str(path))  # fmt: skip


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _subjects(bundle: Bundle) -> list[str]:
    return [c.subject.rfc4514_string() for c in bundle.certificates]


def _error(data: bytes, source: str = "in.file", password: bytes | None = None) -> str:
    with pytest.raises(CryptoError) as caught:
        load_bundle(data, password=password, source=source)
    message = caught.value.message
    assert message.startswith(f"{source}: ")
    assert "\n" not in message
    return message


LEAF = "CN=www.example.test,O=Example\\, Inc.,L=Portland,ST=Oregon,C=US"
INTER = "CN=Example Issuing CA 1,OU=Issuing,O=Example Trust,C=US"


def test_pem_certificate(pki: Pki) -> None:
    bundle = _load(pki.leaf)
    assert _subjects(bundle) == [LEAF]
    assert bundle.key is None
    assert _pem(bundle.certificates[0]) == pki.leaf.read_bytes()


def test_pem_chain_keeps_file_order(pki: Pki) -> None:
    assert _subjects(_load(pki.fullchain)) == [LEAF, INTER]


def test_pem_certificate_and_key_in_one_file(pki: Pki, tmp_path: Path) -> None:
    combined = tmp_path / "combined.pem"
    combined.write_bytes(pki.leaf.read_bytes() + pki.leaf_key.read_bytes())
    bundle = _load(combined)
    assert isinstance(bundle.key, rsa.RSAPrivateKey)
    assert bundle.key.public_key() == bundle.certificates[0].public_key()


def test_pem_with_text_before_blocks(pki: Pki, tmp_path: Path) -> None:
    # "openssl pkcs12 -nodes" writes "Bag Attributes" lines before every block.
    text = openssl("pkcs12", "-in", pki.pfx, "-nodes", "-passin", f"pass:{PFX_PASSWORD}")
    assert not text.startswith(b"-----BEGIN")
    bundle = load_bundle(text, source="dump.pem")
    assert set(_subjects(bundle)) == {LEAF, INTER}
    assert bundle.key is not None


def test_pem_fast_path_never_probes_der(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> Bundle:
        raise AssertionError("DER probing on a PEM input")

    monkeypatch.setattr(decode, "_load_der", refuse)
    assert len(_load(pki.fullchain).certificates) == 2
    assert _load(pki.leaf_key).key is not None


@pytest.mark.parametrize(
    ("attribute", "kind"),
    [
        ("leaf_key", rsa.RSAPrivateKey),  # PKCS#8 "PRIVATE KEY"
        ("rsa_traditional_key", rsa.RSAPrivateKey),  # "RSA PRIVATE KEY"
        ("ec_key", ec.EllipticCurvePrivateKey),  # "EC PRIVATE KEY"
        ("ed_key", ed25519.Ed25519PrivateKey),
    ],
)
def test_pem_private_keys(pki: Pki, attribute: str, kind: type) -> None:
    path: Path = getattr(pki, attribute)
    assert isinstance(load_private_key(path.read_bytes(), source=str(path)), kind)
    bundle = _load(path)
    assert bundle.certificates == () and isinstance(bundle.key, kind)


def test_der_private_key(pki: Pki) -> None:
    der = openssl("pkcs8", "-topk8", "-nocrypt", "-in", pki.ec_key, "-outform", "DER")
    assert isinstance(load_private_key(der, source="k.der"), ec.EllipticCurvePrivateKey)
    assert isinstance(load_bundle(der, source="k.der").key, ec.EllipticCurvePrivateKey)


def test_encrypted_key(pki: Pki) -> None:
    data = pki.encrypted_key.read_bytes()
    key = load_private_key(data, password=KEY_PASSWORD.encode(), source="enc.key")
    assert isinstance(key, rsa.RSAPrivateKey)
    with pytest.raises(CryptoError, match=r"^enc\.key: the private key is encrypted and no pass"):
        load_private_key(data, source="enc.key")
    with pytest.raises(CryptoError) as caught:
        load_private_key(data, password=b"not it", source="enc.key")
    assert caught.value.message == "enc.key: wrong password for the private key"


def test_load_private_key_without_a_key(pki: Pki) -> None:
    with pytest.raises(CryptoError, match=r"^leaf\.pem: holds no private key$"):
        load_private_key(pki.leaf.read_bytes(), source="leaf.pem")
    with pytest.raises(CryptoError, match=r"^leaf\.der: not a private key in PEM or DER$"):
        load_private_key(pki.leaf_der.read_bytes(), source="leaf.der")


def test_der_certificate(pki: Pki) -> None:
    bundle = _load(pki.leaf_der)
    assert _subjects(bundle) == [LEAF]
    assert _pem(bundle.certificates[0]) == pki.leaf.read_bytes()


@pytest.mark.parametrize("attribute", ["p7b_der", "p7b_pem"])
def test_pkcs7(pki: Pki, attribute: str) -> None:
    # openssl writes the SET in chain order (not DER-sorted): cryptography warns about that
    # and the warning must not leak to the operator's terminal.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bundle = _load(getattr(pki, attribute))
    assert _subjects(bundle) == [LEAF, INTER]
    assert bundle.key is None


@pytest.mark.parametrize("attribute", ["p7b_der", "p7b_pem"])
def test_pkcs7_own_reader_when_cryptography_refuses(
    pki: Pki, attribute: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # cryptography announces that non-DER SETs may become an error; our reader takes over.
    def refuse(data: bytes) -> list[x509.Certificate]:
        raise ValueError("not DER")

    monkeypatch.setattr(decode.pkcs7, "load_der_pkcs7_certificates", refuse)
    assert _subjects(_load(getattr(pki, attribute))) == [LEAF, INTER]


def test_pkcs7_damaged(pki: Pki) -> None:
    data = pki.p7b_der.read_bytes()
    assert _error(data[:300], "c.p7b") == "c.p7b: damaged PKCS#7 (DER)"


def test_pkcs12_right_password(pki: Pki) -> None:
    bundle = _load(pki.pfx, PFX_PASSWORD)
    assert _subjects(bundle) == [LEAF, INTER]
    assert isinstance(bundle.key, rsa.RSAPrivateKey)
    assert bundle.key.public_key() == bundle.certificates[0].public_key()


def test_pkcs12_wrong_password(pki: Pki) -> None:
    message = _error(pki.pfx.read_bytes(), "leaf.pfx", b"wrong")
    assert message == "leaf.pfx: wrong password for PKCS#12 (or the file is damaged)"
    assert "wrong" not in message.replace("wrong password", "")  # the password is not echoed


def test_pkcs12_no_password_given(pki: Pki) -> None:
    message = _error(pki.pfx.read_bytes(), "leaf.pfx")
    assert message == "leaf.pfx: PKCS#12 is password protected and no password was given"
    assert PFX_PASSWORD not in message


def test_pkcs12_empty_password_tried_when_none_given(pki: Pki) -> None:
    bundle = _load(pki.pfx_empty)
    assert _subjects(bundle) == [LEAF, INTER]
    assert bundle.key is not None


def test_truncated_pem(pki: Pki) -> None:
    data = pki.fullchain.read_bytes()
    message = _error(data[: len(data) - 200], "full.pem")
    assert message == "full.pem: truncated PEM (a BEGIN line has no matching END line)"


def test_damaged_pem(pki: Pki) -> None:
    lines = pki.leaf.read_bytes().splitlines(keepends=True)
    lines[3] = b"!!!!" + lines[3][4:]
    assert _error(b"".join(lines), "bad.pem") == "bad.pem: damaged PEM CERTIFICATE block"


@pytest.mark.parametrize("attribute", ["csr", "csr_der"])
def test_certificate_request_is_the_wrong_kind(pki: Pki, attribute: str) -> None:
    message = _error(getattr(pki, attribute).read_bytes(), "req")
    assert message == "req: holds a CERTIFICATE REQUEST, expected a certificate or key"


def test_public_key_is_the_wrong_kind(pki: Pki) -> None:
    public = openssl("pkey", "-in", pki.leaf_key, "-pubout")
    assert _error(public, "pub.pem") == "pub.pem: holds a PUBLIC KEY, expected a certificate or key"


@pytest.mark.parametrize(
    "data",
    [b"hello world\n", b"\x30\x03\x02\x01\x05", bytes(range(256))],
    ids=["text", "small-der", "binary"],
)
def test_unknown_content(data: bytes) -> None:
    assert _error(data, "x.bin") == (
        "x.bin: not a certificate, key, PKCS#7 or PKCS#12 in PEM or DER"
    )


def test_empty_file() -> None:
    assert _error(b"  \n", "empty.pem") == "empty.pem: is empty"


def test_two_private_keys(pki: Pki) -> None:
    data = pki.leaf_key.read_bytes() + pki.ec_key.read_bytes()
    assert _error(data, "keys.pem") == "keys.pem: holds more than one private key"


def test_encoding_detected_from_content_not_name(pki: Pki, tmp_path: Path) -> None:
    # A DER certificate named .pem and a PKCS#12 named .crt still load.
    misnamed = tmp_path / "cert.pem"
    misnamed.write_bytes(pki.leaf_der.read_bytes())
    assert _subjects(_load(misnamed)) == [LEAF]
    pfx = tmp_path / "thing.crt"
    pfx.write_bytes(pki.pfx.read_bytes())
    assert _subjects(_load(pfx, PFX_PASSWORD)) == [LEAF, INTER]
