"""Build certificates: self-signed leaves, CA-signed leaves, CA certificates and CSRs.

Pure: the caller passes keys, the issuer, and "now"; nothing here reads a clock or a file,
so the same inputs give the same certificate except for the random serial number.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provision.crypto.types import PrivateKey

# Backdate a little so a client whose clock runs slightly behind does not reject the
# certificate as "not yet valid" (certbot and cert-manager do the same).
BACKDATE = dt.timedelta(hours=1)


@dataclass(frozen=True)
class SubjectFields:
    common_name: str | None = None
    organization: str | None = None
    organizational_unit: str | None = None
    locality: str | None = None
    state: str | None = None
    country: str | None = None


_OIDS = (
    ("country", NameOID.COUNTRY_NAME),
    ("state", NameOID.STATE_OR_PROVINCE_NAME),
    ("locality", NameOID.LOCALITY_NAME),
    ("organization", NameOID.ORGANIZATION_NAME),
    ("organizational_unit", NameOID.ORGANIZATIONAL_UNIT_NAME),
    ("common_name", NameOID.COMMON_NAME),
)


def name_of(fields: SubjectFields) -> x509.Name:
    """An X.509 name in the conventional order (C, ST, L, O, OU, CN)."""
    return x509.Name(
        [
            x509.NameAttribute(oid, value)
            for attr, oid in _OIDS
            if (value := getattr(fields, attr)) is not None
        ]
    )


def general_names(names: Sequence[str]) -> list[x509.GeneralName]:
    """DNS names and IP addresses, told apart automatically."""
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


# The digest each ECDSA curve signs with, as the CA/Browser Forum's Baseline Requirements pair
# them (7.1.3.2): a P-384 key signing with SHA-256 would weaken the signature to SHA-256's
# strength, and some validators refuse the mismatched pair.
_EC_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


def signature_hash(signing_key: PrivateKey) -> hashes.HashAlgorithm | None:
    """The digest a signature by ``signing_key`` uses: the issuer's key decides (a leaf signed
    by a P-384 CA is signed with SHA-384, whatever the leaf's own key). RSA signs with SHA-256,
    which every client accepts; Ed25519 hashes inside the algorithm, so takes none."""
    if isinstance(signing_key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(signing_key, ec.EllipticCurvePrivateKey):
        return _EC_DIGESTS.get(signing_key.curve.name, hashes.SHA256)()
    return hashes.SHA256()


def _serial() -> int:
    return x509.random_serial_number()


@dataclass(frozen=True)
class LeafRequest:
    subject: SubjectFields
    names: tuple[str, ...]
    validity_days: int


def leaf(
    request: LeafRequest,
    key: PrivateKey,
    *,
    now: dt.datetime,
    issuer: x509.Certificate | None = None,
    issuer_key: PrivateKey | None = None,
    serial: int | None = None,
    not_after: dt.datetime | None = None,
    crl_urls: tuple[str, ...] = (),
) -> x509.Certificate:
    """A TLS server certificate; self-signed when no issuer is given. ``not_after`` cuts
    its validity short (at its issuer's end); ``crl_urls`` are its CRL distribution points."""
    subject = name_of(request.subject)
    public = key.public_key()
    signing_key = issuer_key or key
    issuer_name = issuer.subject if issuer is not None else subject
    issuer_public = issuer.public_key() if issuer is not None else public
    key_usage = x509.KeyUsage(
        digital_signature=True,
        # RSA key exchange needs keyEncipherment; EC and Ed25519 keys must not assert it.
        key_encipherment=isinstance(key, rsa.RSAPrivateKey),
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(serial or _serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after or now - BACKDATE + dt.timedelta(days=request.validity_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if request.names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(general_names(request.names)), critical=False
        )
    if crl_urls:
        points = [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
            for url in crl_urls
        ]
        builder = builder.add_extension(x509.CRLDistributionPoints(points), critical=False)
    return builder.sign(signing_key, signature_hash(signing_key))  # type: ignore[arg-type]


def authority(
    subject: SubjectFields,
    key: PrivateKey,
    *,
    validity_days: int,
    now: dt.datetime,
    path_length: int | None = None,
) -> x509.Certificate:
    """A self-signed root CA certificate: CA:TRUE, keyCertSign and cRLSign."""
    name = name_of(subject)
    public = key.public_key()
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now - BACKDATE + dt.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
            critical=False,
        )
        .sign(key, signature_hash(key))  # type: ignore[arg-type]
    )


def csr(request: LeafRequest, key: PrivateKey) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(name_of(request.subject))
    if request.names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(general_names(request.names)), critical=False
        )
    return builder.sign(key, signature_hash(key))  # type: ignore[arg-type]
