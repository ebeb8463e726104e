"""Encode certificates and keys into the files operators use: DER, PEM, PKCS#7, PKCS#12.

Every encoder is deterministic except PKCS#12, whose salts and IVs are random; that is why
outputs are compared by meaning (see ``compare``), not by bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from provision.crypto.types import PrivateKey

Pkcs12Profile = Literal["modern", "legacy"]


def certificates_der(certificates: Sequence[x509.Certificate]) -> bytes:
    """DER holds exactly one certificate; callers pass a one-element sequence."""
    if len(certificates) != 1:
        raise ValueError("DER encoding holds exactly one certificate")
    return certificates[0].public_bytes(serialization.Encoding.DER)


def certificates_pem(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def certificates_pkcs7(certificates: Sequence[x509.Certificate]) -> bytes:
    """A degenerate PKCS#7 SignedData (.p7b, DER) with the certificates in the order given.

    cryptography's ``pkcs7.serialize_certificates`` sorts the certificate SET as strict DER
    demands, losing the chain order. Windows, ``openssl crl2pkcs7`` and the operators reading
    the file expect leaf, intermediates, root, so it is framed here as ``openssl crl2pkcs7
    -nocrl`` does (version 1, no digests, no signers): byte for byte the same output.
    """

    def tlv(tag: int, contents: bytes) -> bytes:
        size = len(contents)
        if size < 0x80:
            return bytes([tag, size]) + contents
        length = size.to_bytes((size.bit_length() + 7) // 8, "big")
        return bytes([tag, 0x80 | len(length)]) + length + contents

    oid_signed_data = bytes.fromhex("06092a864886f70d010702")
    oid_data = bytes.fromhex("06092a864886f70d010701")
    ders = b"".join(c.public_bytes(serialization.Encoding.DER) for c in certificates)
    signed_data = tlv(
        0x30,
        tlv(0x02, b"\x01")  # version 1
        + tlv(0x31, b"")  # digestAlgorithms: none
        + tlv(0x30, oid_data)  # encapContentInfo: data, absent content
        + tlv(0xA0, ders)  # [0] IMPLICIT certificates, in the order given
        + tlv(0x31, b""),  # signerInfos: none
    )
    return tlv(0x30, oid_signed_data + tlv(0xA0, signed_data))


def private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM without encryption: the file's 0600 mode is its protection."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_der(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def pkcs12_bundle(
    key: PrivateKey,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
    *,
    password: bytes,
    friendly_name: str | None,
    profile: Pkcs12Profile = "modern",
) -> bytes:
    """A PFX. ``modern`` is AES-256/SHA-256; ``legacy`` is 3DES/SHA-1 for older Windows."""
    if profile == "modern":
        algorithm = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            # OpenSSL's default (PKCS12_DEFAULT_ITER): every no-change run opens each PFX to
            # compare it by meaning, and 50,000 rounds cost ~30 ms a file for little gain on
            # a 0600 file.
            .kdf_rounds(2048)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(password)
        )
    else:
        algorithm = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(2048)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())
            .build(password)
        )
    name = friendly_name.encode() if friendly_name else None
    return pkcs12.serialize_key_and_certificates(
        name, key, certificate, list(chain) or None, algorithm
    )
