"""Read certificates and keys from whatever file an operator hands us.

The encoding is recognised from the content, never from the file name: operators rename
``.cer`` files freely and a ``.crt`` is as often DER as PEM. Recognition order is chosen so
the common case (a PEM certificate or key on a fleet run) costs one prefix check and one
parse; the DER probes only run for binary input.

Error messages name the source and what is wrong with it in one line. They never quote key
material or passwords; for the same reason the ``ValueError`` text of the underlying parser
is not passed through (it can echo input bytes).
"""

from __future__ import annotations

import base64
import binascii
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from provision.crypto.types import PrivateKey
from provision.errors import CryptoError

__all__ = ["Bundle", "der_items", "load_bundle", "load_private_key"]


@dataclass(frozen=True)
class Bundle:
    """What one file held: certificates in file order (leaf first by convention) and a key."""

    certificates: tuple[x509.Certificate, ...]
    key: PrivateKey | None
    # A PKCS#12's friendly name of each certificate, in the same order (None where a
    # certificate has none); empty for the formats that have no such thing.
    friendly_names: tuple[str | None, ...] = ()

    def friendly_name(self, index: int) -> str | None:
        return self.friendly_names[index] if index < len(self.friendly_names) else None


# A PEM block: label, then body up to the matching END line. Non-greedy so that several
# blocks in one file are found separately; the back reference rejects mismatched labels.
_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----",
    re.DOTALL,
)

_CERT_LABELS = frozenset({b"CERTIFICATE", b"X509 CERTIFICATE"})
_KEY_LABELS = frozenset(
    {b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"ENCRYPTED PRIVATE KEY"}
)
_PKCS7_LABELS = frozenset({b"PKCS7", b"CMS"})

# DER OIDs (tag, length, value) used to tell PKCS#7 and PKCS#12 apart from a certificate
# without running every parser: pkcs7-signedData and pkcs7-data.
_OID_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")
_OID_DATA = bytes.fromhex("06092a864886f70d010701")


def holds_private_key(data: bytes) -> bool:
    """Whether ``data`` holds private key material in any encoding this tool reads or writes:
    a PEM key block (or an OpenSSH/PGP private key), a DER private key, or a PKCS#12 file."""
    if b"PRIVATE KEY-----" in data or b"PRIVATE KEY BLOCK-----" in data:
        return True
    if _looks_like_pkcs12(data[:64]):
        return True
    try:
        serialization.load_der_private_key(data, None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def load_bundle(data: bytes, *, password: bytes | None = None, source: str = "<input>") -> Bundle:
    """Certificates and at most one private key from PEM, DER, PKCS#7 or PKCS#12 bytes.

    ``password`` is used for PKCS#12 and encrypted PEM keys. A PKCS#12 without a password
    given is also tried with an empty one, as Windows exports it when the field is left blank.
    """
    # Fast path first: PEM is what fleets mostly carry, and the check is a prefix test.
    if data[:64].lstrip().startswith(b"-----BEGIN"):
        return _load_pem(data, password, source)
    if not data.strip():
        raise CryptoError(f"{source}: is empty")
    # DER always starts with a SEQUENCE tag; anything else that mentions BEGIN is PEM with
    # text in front ("Bag Attributes" from openssl pkcs12, comments from other tools).
    if data[0] != 0x30 and b"-----BEGIN" in data:
        return _load_pem(data, password, source)
    return _load_der(data, password, source)


def load_private_key(
    data: bytes, *, password: bytes | None = None, source: str = "<input>"
) -> PrivateKey:
    """One private key from PEM (any key label) or DER (PKCS#8 or traditional)."""
    if data[:1] != b"\x30" and b"-----BEGIN" in data:
        bundle = _load_pem(data, password, source)
        if bundle.key is None:
            raise CryptoError(f"{source}: holds no private key")
        return bundle.key
    try:
        key = serialization.load_der_private_key(
            data, password, unsafe_skip_rsa_key_validation=True
        )
    except TypeError:
        raise CryptoError(_password_problem(source, password)) from None
    except ValueError:
        raise CryptoError(f"{source}: not a private key in PEM or DER") from None
    return _supported_key(key, source)


def _load_pem(data: bytes, password: bytes | None, source: str) -> Bundle:
    blocks = [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(data)]
    # A BEGIN without its END means the file was cut (partial copy, full disk).
    if data.count(b"-----BEGIN ") != len(blocks):
        raise CryptoError(f"{source}: truncated PEM (a BEGIN line has no matching END line)")
    certificates: list[x509.Certificate] = []
    key: PrivateKey | None = None
    for label, block in blocks:
        name = label.decode("ascii")
        if label in _CERT_LABELS:
            try:
                certificates.append(x509.load_pem_x509_certificate(block))
            except ValueError:
                raise CryptoError(f"{source}: damaged PEM {name} block") from None
        elif label in _KEY_LABELS:
            if key is not None:
                raise CryptoError(f"{source}: holds more than one private key")
            key = _pem_key(block, password, source)
        elif label in _PKCS7_LABELS:
            der = _pem_body(block)
            if der is None:
                raise CryptoError(f"{source}: damaged PEM {name} block")
            certificates.extend(_pkcs7_certificates(der, f"{source}: damaged PEM {name} block"))
        else:
            # CSRs, CRLs, public keys, parameters: a real file, just the wrong kind.
            raise CryptoError(f"{source}: holds a {name}, expected a certificate or key")
    if not certificates and key is None:
        raise CryptoError(f"{source}: holds no PEM certificate or key")
    return Bundle(tuple(certificates), key)


def _pem_key(block: bytes, password: bytes | None, source: str) -> PrivateKey:
    try:
        # Skipping the RSA consistency check saves milliseconds per key; a wrong key is caught
        # by the separate key/certificate match, which is what actually matters.
        key = serialization.load_pem_private_key(
            block, password, unsafe_skip_rsa_key_validation=True
        )
    except TypeError:
        # Raised both for "encrypted but no password" and "password given but not encrypted".
        raise CryptoError(_password_problem(source, password)) from None
    except ValueError:
        if password is not None and b"ENCRYPTED" in block[:40]:
            raise CryptoError(f"{source}: wrong password for the private key") from None
        raise CryptoError(f"{source}: damaged PEM private key block") from None
    return _supported_key(key, source)


def _password_problem(source: str, password: bytes | None) -> str:
    if password is None:
        return f"{source}: the private key is encrypted and no password was given"
    return f"{source}: a password was given but the private key is not encrypted"


def _load_der(data: bytes, password: bytes | None, source: str) -> Bundle:
    if data[0] != 0x30:  # every DER structure we accept is a SEQUENCE
        raise _unknown(source)
    start = data[:40]
    if _looks_like_pkcs12(start):
        return _load_pkcs12(data, password, source)
    if _OID_SIGNED_DATA in start:
        return Bundle(_pkcs7_certificates(data, f"{source}: damaged PKCS#7 (DER)"), None)
    try:
        return Bundle((x509.load_der_x509_certificate(data),), None)
    except ValueError:
        pass
    try:
        key = serialization.load_der_private_key(
            data, password, unsafe_skip_rsa_key_validation=True
        )
    except TypeError:
        raise CryptoError(_password_problem(source, password)) from None
    except ValueError:
        pass
    else:
        return Bundle((), _supported_key(key, source))
    # Only now pay for the CSR probe, to give a precise message for a common mistake.
    try:
        x509.load_der_x509_csr(data)
    except ValueError:
        raise _unknown(source) from None
    raise CryptoError(f"{source}: holds a CERTIFICATE REQUEST, expected a certificate or key")


def _pem_body(block: bytes) -> bytes | None:
    lines = block.splitlines()[1:-1]
    body = b"".join(line for line in lines if b":" not in line)  # skip RFC 1421 headers
    try:
        return base64.b64decode(body, validate=False)
    except binascii.Error:
        return None


def _pkcs7_certificates(der: bytes, damaged: str) -> tuple[x509.Certificate, ...]:
    """Certificates of a PKCS#7 SignedData in file order.

    openssl crl2pkcs7 and Windows write the certificate SET in chain order, which is not
    DER's sorted order; cryptography then warns and falls back to BER (and says that may
    become an error). The warning is noise for a normal file, so it is silenced, and our
    own reader below takes over if cryptography refuses the file.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="PKCS#7 certificates could not be parsed")
            return tuple(pkcs7.load_der_pkcs7_certificates(der))
    except ValueError:
        pass
    try:
        return tuple(x509.load_der_x509_certificate(c) for c in _signed_data_certificates(der))
    except ValueError:
        raise CryptoError(damaged) from None


def der_items(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(tag, whole TLV, contents) for each DER item in ``data``; definite lengths only."""
    items = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ValueError("truncated DER")
        tag, length, start = data[pos], data[pos + 1], pos + 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4 or start + count > len(data):
                raise ValueError("unsupported DER length")
            length = int.from_bytes(data[start : start + count], "big")
            start += count
        end = start + length
        if end > len(data):
            raise ValueError("truncated DER")
        items.append((tag, data[pos:end], data[start:end]))
        pos = end
    return items


def _signed_data_certificates(der: bytes) -> Sequence[bytes]:
    # ContentInfo { contentType, [0] { SignedData { version, digestAlgorithms,
    # encapContentInfo, [0] IMPLICIT certificates OPTIONAL, ... } } }
    (outer,) = der_items(der)
    content_type, explicit = der_items(outer[2])[:2]
    if content_type[1] != _OID_SIGNED_DATA or explicit[0] != 0xA0:
        raise ValueError("not SignedData")
    (signed_data,) = der_items(explicit[2])
    for tag, _, contents in der_items(signed_data[2]):
        if tag == 0xA0:
            return [whole for _, whole, _ in der_items(contents)]
    return []


def _looks_like_pkcs12(start: bytes) -> bool:
    # PFX ::= SEQUENCE { version INTEGER (3), authSafe ContentInfo (pkcs7-data), ... }
    return b"\x02\x01\x03\x30" in start[:12] and _OID_DATA in start


def _load_pkcs12(data: bytes, password: bytes | None, source: str) -> Bundle:
    # Windows writes an empty password for a blank field; some tools write no MAC at all.
    candidates = [password] if password is not None else [None, b""]
    for candidate in candidates:
        try:
            loaded = pkcs12.load_pkcs12(data, candidate)
        except ValueError:
            continue
        entries = [loaded.cert] if loaded.cert is not None else []
        entries.extend(loaded.additional_certs)
        key = None if loaded.key is None else _supported_key(loaded.key, source)
        return Bundle(
            tuple(e.certificate for e in entries),
            key,
            # Windows writes BMPStrings, which cryptography hands over as UTF-8.
            tuple(
                None if e.friendly_name is None else e.friendly_name.decode(errors="replace")
                for e in entries
            ),
        )
    if password is None:
        raise CryptoError(f"{source}: PKCS#12 is password protected and no password was given")
    raise CryptoError(f"{source}: wrong password for PKCS#12 (or the file is damaged)")


def _supported_key(key: object, source: str) -> PrivateKey:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        return key
    raise CryptoError(
        f"{source}: holds a {type(key).__name__.removeprefix('_')} key; "
        "only RSA, EC and Ed25519 keys are supported"
    )


def _unknown(source: str) -> CryptoError:
    return CryptoError(f"{source}: not a certificate, key, PKCS#7 or PKCS#12 in PEM or DER")
