"""What a certificate says, as data: the "Details" tab of a certificate dialog, and checks.

Pure functions, no I/O. ``details(cert, view)`` returns JSON-ready data whose keys are the
same in every view; a view only leaves keys out. Key order is stable (dicts keep insertion
order), following the order of the Windows details tab:

====================== ===================== ==========================================
key                    type                  meaning
====================== ===================== ==========================================
version                str                   "V1" or "V3"
serial_number          str                   lowercase hex bytes, colon separated, no
                                             sign byte, as openssl prints long serials
                                             (``10:00`` for 4096)
serial_number_decimal  str                   the same number in decimal (a string: JSON
                                             readers lose precision past 2**53)
signature_algorithm    str                   openssl's name: ``sha256WithRSAEncryption``,
                                             ``ecdsa-with-SHA256``, ``rsassaPss``,
                                             ``ED25519``; the dotted OID if unknown
signature_algorithm_oid str                  dotted OID
issuer, subject        {openssl, windows,    ``openssl``: as ``openssl x509 -nameopt
                       rfc4514}              oneline,-space_eq`` prints it, most
                                             significant RDN first (``C=US, O=Ex, CN=a``),
                                             values with , + " \\ < > ; quoted;
                                             ``windows``: the same RDNs the other way
                                             round, as Windows shows them (``CN=a, O=Ex,
                                             C=US``); ``rfc4514``: RFC 4514, CN first
valid_from, valid_to   str                   ISO 8601 UTC, ``2026-01-31T12:00:00Z``; with
                                             ``local_time``, in the local time zone with
                                             its offset, ``2026-01-31T13:00:00+01:00``
public_key             {type, size, curve}   type ``RSA|EC|Ed25519|Ed448|DSA``, size in
                                             bits (int), curve: NIST name (``P-256``) or
                                             the SEC name, null for non-EC keys
subject_key_identifier str | null            uppercase hex, colon separated (openssl)
authority_key_identifier str | null          key identifier only, same format
key_usage              [str] | null          openssl names: "Digital Signature", ...
extended_key_usage     [str] | null          openssl names: "TLS Web Server
                                             Authentication", ...; dotted OID if unknown
subject_alternative_names [str] | null       openssl prefixes: "DNS:a", "IP Address:
                                             192.0.2.1", "IP Address:2001:db8::1" (IPv6
                                             in RFC 5952 form, not openssl's), "email:",
                                             "URI:", "DirName:", "Registered ID:",
                                             "othername:"
basic_constraints      {ca, path_length}     bool, int | null; the whole field null when
                       | null                the extension is absent
AIA, CRL points, policies                    (below) where to look the certificate up
extensions             [{name, oid,          every extension in certificate order; name as
                        critical}]           ``openssl x509 -text`` prints it
thumbprint_algorithm   str                   "sha1" (what Windows and IIS bind by)
thumbprints            {sha1, sha256}        uppercase hex, no separators
friendly_name          str | null            the name a PKCS#12 file gives the
                                             certificate (Windows' "Friendly name"); null
                                             when it has none or the file is no PKCS#12
====================== ===================== ==========================================

``null`` for an extension field means the certificate does not have that extension.

After ``basic_constraints`` come, each a list or null:

- ``authority_information_access``: ``{method, location}``, method ``OCSP``, ``CA Issuers``
  or the dotted OID, location a general name as in the SANs (``URI:http://...``);
- ``crl_distribution_points``: ``{full_name, relative_name, reasons, crl_issuer}``, general
  names, the relative name in openssl form, reasons by openssl's names (``Key Compromise``),
  each null when the point does not have it;
- ``certificate_policies``: ``{oid, name, cps, user_notices}``, name openssl's (``X509v3
  Any Policy``) or null, CPS URIs, user notices ``{organization, numbers, explicit_text}``.

Views: ``all``; ``v1`` (version .. public_key); ``extensions`` (the extension fields and
``extensions``); ``critical`` (the fields of critical extensions only, and ``extensions``
holding only the critical ones); ``properties`` (thumbprint_algorithm, thumbprints,
friendly_name).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    CertificatePoliciesOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
    NameOID,
)

View = Literal["all", "v1", "extensions", "critical", "properties"]
DnOrder = Literal["openssl", "windows"]
VIEWS: tuple[View, ...] = ("all", "v1", "extensions", "critical", "properties")

_V1_FIELDS = (
    "version",
    "serial_number",
    "serial_number_decimal",
    "signature_algorithm",
    "signature_algorithm_oid",
    "issuer",
    "valid_from",
    "valid_to",
    "subject",
    "public_key",
)
# Decoded extension fields and the extension each one comes from (for the critical view).
_EXTENSION_FIELDS: dict[str, x509.ObjectIdentifier] = {
    "subject_key_identifier": ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    "authority_key_identifier": ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    "key_usage": ExtensionOID.KEY_USAGE,
    "extended_key_usage": ExtensionOID.EXTENDED_KEY_USAGE,
    "subject_alternative_names": ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    "basic_constraints": ExtensionOID.BASIC_CONSTRAINTS,
    "authority_information_access": ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    "crl_distribution_points": ExtensionOID.CRL_DISTRIBUTION_POINTS,
    "certificate_policies": ExtensionOID.CERTIFICATE_POLICIES,
}
_PROPERTY_FIELDS = ("thumbprint_algorithm", "thumbprints", "friendly_name")


@dataclass(frozen=True)
class Name:
    openssl: str
    windows: str
    rfc4514: str

    @classmethod
    def of(cls, name: x509.Name) -> Name:
        return cls(dn_string(name, "openssl"), dn_string(name, "windows"), name.rfc4514_string())


@dataclass(frozen=True)
class PublicKeyInfo:
    type: str
    size: int
    curve: str | None


@dataclass(frozen=True)
class BasicConstraintsInfo:
    ca: bool
    path_length: int | None


@dataclass(frozen=True)
class AccessDescriptionInfo:
    method: str
    location: str


@dataclass(frozen=True)
class DistributionPointInfo:
    full_name: list[str] | None
    relative_name: str | None
    reasons: list[str] | None
    crl_issuer: list[str] | None


@dataclass(frozen=True)
class UserNoticeInfo:
    organization: str | None
    numbers: list[int]
    explicit_text: str | None


@dataclass(frozen=True)
class PolicyInfo:
    oid: str
    name: str | None
    cps: list[str]
    user_notices: list[UserNoticeInfo]


@dataclass(frozen=True)
class ExtensionInfo:
    name: str
    oid: str
    critical: bool


@dataclass(frozen=True)
class Thumbprints:
    sha1: str
    sha256: str


@dataclass(frozen=True)
class CertificateDetails:
    """The full record; field order is the JSON key order (see the module docstring)."""

    version: str
    serial_number: str
    serial_number_decimal: str
    signature_algorithm: str
    signature_algorithm_oid: str
    issuer: Name
    valid_from: str
    valid_to: str
    subject: Name
    public_key: PublicKeyInfo
    subject_key_identifier: str | None
    authority_key_identifier: str | None
    key_usage: list[str] | None
    extended_key_usage: list[str] | None
    subject_alternative_names: list[str] | None
    basic_constraints: BasicConstraintsInfo | None
    authority_information_access: list[AccessDescriptionInfo] | None
    crl_distribution_points: list[DistributionPointInfo] | None
    certificate_policies: list[PolicyInfo] | None
    extensions: list[ExtensionInfo]
    thumbprint_algorithm: str
    thumbprints: Thumbprints
    friendly_name: str | None


# --- openssl's names ------------------------------------------------------------------

_SIGNATURE_NAMES = {
    "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
    "1.2.840.113549.1.1.14": "sha224WithRSAEncryption",
    "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
    "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
    "1.2.840.113549.1.1.10": "rsassaPss",
    "1.2.840.10045.4.1": "ecdsa-with-SHA1",
    "1.2.840.10045.4.3.1": "ecdsa-with-SHA224",
    "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
    "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
    "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
    "1.3.101.112": "ED25519",
    "1.3.101.113": "ED448",
    "1.2.840.10040.4.3": "dsaWithSHA1",
    "2.16.840.1.101.3.4.3.2": "dsa_with_SHA256",
}

# openssl's short names (-nameopt sname); cryptography's rfc4514 names differ for several.
_ATTRIBUTE_NAMES = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.STREET_ADDRESS: "street",
    NameOID.TITLE: "title",
    NameOID.GIVEN_NAME: "GN",
    NameOID.SURNAME: "SN",
    NameOID.INITIALS: "initials",
    NameOID.GENERATION_QUALIFIER: "generationQualifier",
    NameOID.DN_QUALIFIER: "dnQualifier",
    NameOID.PSEUDONYM: "pseudonym",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
    NameOID.BUSINESS_CATEGORY: "businessCategory",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.JURISDICTION_COUNTRY_NAME: "jurisdictionC",
    NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME: "jurisdictionST",
    NameOID.JURISDICTION_LOCALITY_NAME: "jurisdictionL",
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
}

_EXTENSION_NAMES = {
    "2.5.29.14": "X509v3 Subject Key Identifier",
    "2.5.29.15": "X509v3 Key Usage",
    "2.5.29.17": "X509v3 Subject Alternative Name",
    "2.5.29.18": "X509v3 Issuer Alternative Name",
    "2.5.29.19": "X509v3 Basic Constraints",
    "2.5.29.30": "X509v3 Name Constraints",
    "2.5.29.31": "X509v3 CRL Distribution Points",
    "2.5.29.32": "X509v3 Certificate Policies",
    "2.5.29.33": "X509v3 Policy Mappings",
    "2.5.29.35": "X509v3 Authority Key Identifier",
    "2.5.29.36": "X509v3 Policy Constraints",
    "2.5.29.37": "X509v3 Extended Key Usage",
    "2.5.29.46": "X509v3 Freshest CRL",
    "2.5.29.54": "X509v3 Inhibit Any Policy",
    "1.3.6.1.5.5.7.1.1": "Authority Information Access",
    "1.3.6.1.5.5.7.1.11": "Subject Information Access",
    "1.3.6.1.5.5.7.1.24": "TLS Feature",
    "1.3.6.1.5.5.7.48.1.5": "OCSP No Check",
    "1.3.6.1.4.1.11129.2.4.2": "CT Precertificate SCTs",
    "1.3.6.1.4.1.11129.2.4.3": "CT Precertificate Poison",
    "2.16.840.1.113730.1.1": "Netscape Cert Type",
    "2.16.840.1.113730.1.13": "Netscape Comment",
}

_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "TLS Web Server Authentication",
    ExtendedKeyUsageOID.CLIENT_AUTH: "TLS Web Client Authentication",
    ExtendedKeyUsageOID.CODE_SIGNING: "Code Signing",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "E-mail Protection",
    ExtendedKeyUsageOID.TIME_STAMPING: "Time Stamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSP Signing",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "Any Extended Key Usage",
    ExtendedKeyUsageOID.IPSEC_IKE: "ipsec Internet Key Exchange",
    ExtendedKeyUsageOID.SMARTCARD_LOGON: "Microsoft Smartcard Login",
    ExtendedKeyUsageOID.KERBEROS_PKINIT_KDC: "Signing KDC Response",
    x509.ObjectIdentifier("1.3.6.1.5.5.7.3.5"): "IPSec End System",
    x509.ObjectIdentifier("1.3.6.1.5.5.7.3.6"): "IPSec Tunnel",
    x509.ObjectIdentifier("1.3.6.1.5.5.7.3.7"): "IPSec User",
    x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.4"): "Microsoft Encrypted File System",
    x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"): "Microsoft Server Gated Crypto",
    x509.ObjectIdentifier("2.16.840.1.113730.4.1"): "Netscape Server Gated Crypto",
}

# (attribute of x509.KeyUsage, openssl name) in openssl's print order (bit order).
_KEY_USAGE_BITS = (
    ("digital_signature", "Digital Signature"),
    ("content_commitment", "Non Repudiation"),
    ("key_encipherment", "Key Encipherment"),
    ("data_encipherment", "Data Encipherment"),
    ("key_agreement", "Key Agreement"),
    ("key_cert_sign", "Certificate Sign"),
    ("crl_sign", "CRL Sign"),
    ("encipher_only", "Encipher Only"),
    ("decipher_only", "Decipher Only"),
)

_ACCESS_METHODS = {
    AuthorityInformationAccessOID.OCSP: "OCSP",
    AuthorityInformationAccessOID.CA_ISSUERS: "CA Issuers",
}

# openssl's names for a distribution point's reasons, in bit order (as it prints them).
_REASONS = (
    (x509.ReasonFlags.key_compromise, "Key Compromise"),
    (x509.ReasonFlags.ca_compromise, "CA Compromise"),
    (x509.ReasonFlags.affiliation_changed, "Affiliation Changed"),
    (x509.ReasonFlags.superseded, "Superseded"),
    (x509.ReasonFlags.cessation_of_operation, "Cessation Of Operation"),
    (x509.ReasonFlags.certificate_hold, "Certificate Hold"),
    (x509.ReasonFlags.privilege_withdrawn, "Privilege Withdrawn"),
    (x509.ReasonFlags.aa_compromise, "AA Compromise"),
)

_POLICY_NAMES = {CertificatePoliciesOID.ANY_POLICY: "X509v3 Any Policy"}

_NIST_CURVES = {
    "secp192r1": "P-192",
    "secp224r1": "P-224",
    "secp256r1": "P-256",
    "secp384r1": "P-384",
    "secp521r1": "P-521",
}

# Characters that make openssl's "oneline" format quote a value (RFC 2253 specials).
_QUOTE_TRIGGERS = frozenset(',+"\\<>;')


# --- building the record -----------------------------------------------------------------


def inspect_certificate(
    cert: x509.Certificate, *, friendly_name: str | None = None, local_time: bool = False
) -> CertificateDetails:
    """Every field of the details record for one certificate; ``friendly_name`` is the
    container's (a PKCS#12 file's) name for it, not part of the certificate; ``local_time``
    writes the dates in the local time zone (``TZ``) instead of UTC."""
    exts = {e.oid: e for e in cert.extensions}
    der = cert.public_bytes(serialization.Encoding.DER)
    sig_oid = cert.signature_algorithm_oid.dotted_string
    return CertificateDetails(
        version="V1" if cert.version == x509.Version.v1 else "V3",
        serial_number=_serial_hex(cert.serial_number),
        serial_number_decimal=str(cert.serial_number),
        signature_algorithm=signature_algorithm_name(cert),
        signature_algorithm_oid=sig_oid,
        issuer=Name.of(cert.issuer),
        valid_from=_timestamp(cert.not_valid_before_utc, local_time),
        valid_to=_timestamp(cert.not_valid_after_utc, local_time),
        subject=Name.of(cert.subject),
        public_key=public_key_info(cert),
        subject_key_identifier=_ski(exts),
        authority_key_identifier=_aki(exts),
        key_usage=_key_usage(exts),
        extended_key_usage=_eku(exts),
        subject_alternative_names=_sans(exts),
        basic_constraints=_basic_constraints(exts),
        authority_information_access=_authority_information_access(exts),
        crl_distribution_points=_crl_distribution_points(exts),
        certificate_policies=_certificate_policies(exts),
        extensions=[
            ExtensionInfo(
                _EXTENSION_NAMES.get(e.oid.dotted_string, e.oid.dotted_string),
                e.oid.dotted_string,
                e.critical,
            )
            for e in cert.extensions
        ],
        thumbprint_algorithm="sha1",
        thumbprints=Thumbprints(
            # SHA-1 here is an identifier (what IIS/Windows bind by), not a security check.
            sha1=hashlib.sha1(der, usedforsecurity=False).hexdigest().upper(),
            sha256=hashlib.sha256(der).hexdigest().upper(),
        ),
        friendly_name=friendly_name,
    )


def details(
    cert: x509.Certificate,
    view: View = "all",
    *,
    friendly_name: str | None = None,
    local_time: bool = False,
) -> dict[str, Any]:
    """JSON-ready details for one view; keys are a subset of the ``all`` view, same order."""
    record = inspect_certificate(cert, friendly_name=friendly_name, local_time=local_time)
    data = asdict(record)
    if view == "all":
        return data
    if view == "v1":
        keep: Iterable[str] = _V1_FIELDS
    elif view == "extensions":
        keep = (*_EXTENSION_FIELDS, "extensions")
    elif view == "properties":
        keep = _PROPERTY_FIELDS
    elif view == "critical":
        critical = {e.oid.dotted_string for e in cert.extensions if e.critical}
        keep = [f for f, oid in _EXTENSION_FIELDS.items() if oid.dotted_string in critical]
        keep.append("extensions")
        data["extensions"] = [e for e in data["extensions"] if e["critical"]]
    else:
        raise ValueError(f"unknown view {view!r}")
    wanted = set(keep)
    return {k: v for k, v in data.items() if k in wanted}


def openssl_name(name: x509.Name) -> str:
    """``C=US, O=Example, CN=host``: openssl's ``-nameopt oneline,-space_eq``."""
    return dn_string(name, "openssl")


def dn_string(name: x509.Name, order: DnOrder) -> str:
    """A name as one string: RDNs in openssl's order (the certificate's, most significant
    first: ``C=US, O=Example, CN=host``) or Windows' (the other way round: ``CN=host,
    O=Example, C=US``), each written as openssl's ``oneline`` writes it."""
    rdns = []
    for rdn in name.rdns:
        parts = [
            f"{_ATTRIBUTE_NAMES.get(a.oid, a.oid.dotted_string)}={_openssl_value(a.value)}"
            for a in rdn
        ]
        rdns.append(" + ".join(parts))
    return ", ".join(rdns if order == "openssl" else reversed(rdns))


def _openssl_value(value: str | bytes) -> str:
    text = value if isinstance(value, str) else value.hex()
    # Control characters are hex escaped by openssl; non-ASCII is kept (openssl escapes it,
    # but readable names matter more here than byte-exact openssl output).
    text = "".join(f"\\{ord(c):02X}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text)
    needs_quotes = (
        any(c in _QUOTE_TRIGGERS for c in text) or text[:1] in ("#", " ") or text.endswith(" ")
    )
    return f'"{text}"' if needs_quotes else text


def _serial_hex(serial: int) -> str:
    # Magnitude bytes without the DER sign byte: what openssl prints for long serials.
    raw = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")
    return ":".join(f"{b:02x}" for b in raw)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _timestamp(moment: datetime, local_time: bool) -> str:
    if not local_time:
        return _iso(moment)
    # astimezone() without a zone asks the C library for the offset at that very moment
    # (summer or winter time), as TZ says; a fixed offset taken now would be wrong for half
    # the year.
    return moment.astimezone().isoformat(timespec="seconds")


def _colon_hex(data: bytes) -> str:
    return ":".join(f"{b:02X}" for b in data)


def signature_algorithm_name(cert: x509.Certificate) -> str:
    """openssl's name for the certificate's signature algorithm; the dotted OID if unknown."""
    oid = cert.signature_algorithm_oid.dotted_string
    return _SIGNATURE_NAMES.get(oid, oid)


def public_key_info(cert: x509.Certificate) -> PublicKeyInfo:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return PublicKeyInfo("RSA", key.key_size, None)
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = _NIST_CURVES.get(key.curve.name, key.curve.name)
        return PublicKeyInfo("EC", key.curve.key_size, curve)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return PublicKeyInfo("Ed25519", 256, None)
    if isinstance(key, ed448.Ed448PublicKey):
        return PublicKeyInfo("Ed448", 456, None)
    if isinstance(key, dsa.DSAPublicKey):
        return PublicKeyInfo("DSA", key.key_size, None)
    return PublicKeyInfo(cert.public_key_algorithm_oid.dotted_string, 0, None)


def extensions_problem(cert: x509.Certificate) -> str | None:
    """Why the certificate's extensions cannot be read, in words; None when they can."""
    try:
        cert.extensions  # noqa: B018 (parsed on first access: this is the check)
    except (ValueError, x509.DuplicateExtension) as exc:
        return unreadable_extensions(exc)
    return None


def unreadable_extensions(exc: Exception) -> str:
    """The words for cryptography's refusal to parse a certificate's extensions. Its own
    message is not passed on: for a malformed value it is a Rust debug structure
    (``ParseError { kind: InvalidValue, location: [...] }``), not a sentence."""
    if isinstance(exc, x509.DuplicateExtension):
        oid = exc.oid.dotted_string
        return f"the extension {_EXTENSION_NAMES.get(oid, oid)} ({oid}) appears twice"
    return "an extension is malformed (its value is not what its type requires)"


_Extensions = Mapping[x509.ObjectIdentifier, x509.Extension[x509.ExtensionType]]


def _ski(exts: _Extensions) -> str | None:
    ext = exts.get(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    if ext is None or not isinstance(ext.value, x509.SubjectKeyIdentifier):
        return None
    return _colon_hex(ext.value.digest)


def _aki(exts: _Extensions) -> str | None:
    ext = exts.get(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    if ext is None or not isinstance(ext.value, x509.AuthorityKeyIdentifier):
        return None
    key_id = ext.value.key_identifier
    return None if key_id is None else _colon_hex(key_id)


def _key_usage(exts: _Extensions) -> list[str] | None:
    ext = exts.get(ExtensionOID.KEY_USAGE)
    if ext is None or not isinstance(ext.value, x509.KeyUsage):
        return None
    usage = ext.value
    names = []
    for attribute, label in _KEY_USAGE_BITS:
        # encipher_only/decipher_only raise unless key_agreement is set.
        if attribute in ("encipher_only", "decipher_only") and not usage.key_agreement:
            continue
        if getattr(usage, attribute):
            names.append(label)
    return names


def _eku(exts: _Extensions) -> list[str] | None:
    ext = exts.get(ExtensionOID.EXTENDED_KEY_USAGE)
    if ext is None or not isinstance(ext.value, x509.ExtendedKeyUsage):
        return None
    return [_EKU_NAMES.get(oid, oid.dotted_string) for oid in ext.value]


def _sans(exts: _Extensions) -> list[str] | None:
    ext = exts.get(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    if ext is None or not isinstance(ext.value, x509.SubjectAlternativeName):
        return None
    return [_general_name(n) for n in ext.value]


def _general_name(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP Address:{name.value}"
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    if isinstance(name, x509.DirectoryName):
        return f"DirName:{openssl_name(name.value)}"
    if isinstance(name, x509.RegisteredID):
        return f"Registered ID:{name.value.dotted_string}"
    if isinstance(name, x509.OtherName):
        return f"othername:{name.type_id.dotted_string}"
    return str(name)


def _basic_constraints(exts: _Extensions) -> BasicConstraintsInfo | None:
    ext = exts.get(ExtensionOID.BASIC_CONSTRAINTS)
    if ext is None or not isinstance(ext.value, x509.BasicConstraints):
        return None
    return BasicConstraintsInfo(ext.value.ca, ext.value.path_length)


def _authority_information_access(exts: _Extensions) -> list[AccessDescriptionInfo] | None:
    ext = exts.get(ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    if ext is None or not isinstance(ext.value, x509.AuthorityInformationAccess):
        return None
    return [
        AccessDescriptionInfo(
            _ACCESS_METHODS.get(d.access_method, d.access_method.dotted_string),
            _general_name(d.access_location),
        )
        for d in ext.value
    ]


def _crl_distribution_points(exts: _Extensions) -> list[DistributionPointInfo] | None:
    ext = exts.get(ExtensionOID.CRL_DISTRIBUTION_POINTS)
    if ext is None or not isinstance(ext.value, x509.CRLDistributionPoints):
        return None
    points = []
    for point in ext.value:
        relative = point.relative_name
        reasons = point.reasons
        points.append(
            DistributionPointInfo(
                full_name=_general_names(point.full_name),
                relative_name=None if relative is None else openssl_name(x509.Name([relative])),
                reasons=None if reasons is None else [n for r, n in _REASONS if r in reasons],
                crl_issuer=_general_names(point.crl_issuer),
            )
        )
    return points


def _general_names(names: Iterable[x509.GeneralName] | None) -> list[str] | None:
    return None if names is None else [_general_name(n) for n in names]


def _certificate_policies(exts: _Extensions) -> list[PolicyInfo] | None:
    ext = exts.get(ExtensionOID.CERTIFICATE_POLICIES)
    if ext is None or not isinstance(ext.value, x509.CertificatePolicies):
        return None
    policies = []
    for policy in ext.value:
        qualifiers = policy.policy_qualifiers or []
        notices = [q for q in qualifiers if isinstance(q, x509.UserNotice)]
        policies.append(
            PolicyInfo(
                oid=policy.policy_identifier.dotted_string,
                name=_POLICY_NAMES.get(policy.policy_identifier),
                cps=[q for q in qualifiers if isinstance(q, str)],
                user_notices=[_user_notice(n) for n in notices],
            )
        )
    return policies


def _user_notice(notice: x509.UserNotice) -> UserNoticeInfo:
    reference = notice.notice_reference
    return UserNoticeInfo(
        organization=None if reference is None else reference.organization,
        numbers=[] if reference is None else list(reference.notice_numbers),
        explicit_text=notice.explicit_text,
    )


# --- text rendering ----------------------------------------------------------------------

_LABELS = {
    "version": "Version",
    "serial_number": "Serial number",
    "serial_number_decimal": "Serial (decimal)",
    "signature_algorithm": "Signature algorithm",
    "signature_algorithm_oid": "Signature OID",
    "issuer": "Issuer",
    "valid_from": "Valid from",
    "valid_to": "Valid to",
    "subject": "Subject",
    "public_key": "Public key",
    "subject_key_identifier": "Subject key ID",
    "authority_key_identifier": "Authority key ID",
    "key_usage": "Key usage",
    "extended_key_usage": "Extended key usage",
    "subject_alternative_names": "Subject alt names",
    "basic_constraints": "Basic constraints",
    "authority_information_access": "Authority info",
    "crl_distribution_points": "CRL distribution",
    "certificate_policies": "Certificate policies",
    "extensions": "Extensions",
    "thumbprint_algorithm": "Thumbprint algorithm",
    "thumbprints": "Thumbprint",
    "friendly_name": "Friendly name",
}
_WIDTH = max(len(label) for label in _LABELS.values())


def render_text(
    certificates: Sequence[Mapping[str, Any]],
    *,
    titles: Sequence[str] | None = None,
    dn_order: DnOrder = "openssl",
) -> str:
    """Aligned text for people; one block per certificate, blank line between blocks.

    Each block starts with ``Certificate i of n: <title>``; the title defaults to the
    subject when the view has one (pass ``titles`` for views that leave it out). Issuer and
    subject are written in ``dn_order``.
    """
    blocks = []
    total = len(certificates)
    for index, record in enumerate(certificates):
        title = titles[index] if titles is not None else _default_title(record, dn_order)
        heading = f"Certificate {index + 1} of {total}"
        lines = [f"{heading}: {title}" if title else heading]
        for key, value in record.items():
            values = _text_values(key, value, dn_order)
            lines.extend(_render_field(_LABELS.get(key, key), values))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _default_title(record: Mapping[str, Any], dn_order: DnOrder) -> str:
    subject = record.get("subject")
    return str(subject[dn_order]) if isinstance(subject, Mapping) else ""


def _render_field(label: str, values: list[str]) -> list[str]:
    # Label column padded to the widest label; extra values continue under the first.
    if not values:
        values = ["(none)"]
    first = f"  {label + ':':<{_WIDTH + 1}} {values[0]}"
    rest = [f"  {'':<{_WIDTH + 1}} {v}" for v in values[1:]]
    return [first, *rest]


def _text_values(key: str, value: Any, dn_order: DnOrder) -> list[str]:
    if value is None:
        return ["(none)" if key == "friendly_name" else "(not present)"]
    if key in ("issuer", "subject"):
        return [value[dn_order]]
    if key == "public_key":
        curve = f", {value['curve']}" if value["curve"] else ""
        return [f"{value['type']} ({value['size']} bits{curve})"]
    if key == "basic_constraints":
        path = "" if value["path_length"] is None else f", pathlen:{value['path_length']}"
        return [f"CA:{'TRUE' if value['ca'] else 'FALSE'}{path}"]
    if key == "authority_information_access":
        return [f"{d['method']} - {d['location']}" for d in value]
    if key == "crl_distribution_points":
        return [line for point in value for line in _distribution_point_lines(point)]
    if key == "certificate_policies":
        return [line for policy in value for line in _policy_lines(policy)]
    if key == "extensions":
        return [f"{e['name']} ({e['oid']}){', critical' if e['critical'] else ''}" for e in value]
    if key == "thumbprints":
        return [f"{algorithm}: {digest}" for algorithm, digest in value.items()]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _distribution_point_lines(point: Mapping[str, Any]) -> list[str]:
    # The lines and nesting of ``openssl x509 -text``, so the two read side by side.
    lines = []
    if point["full_name"] is not None:
        lines += ["Full Name:", *(f"  {n}" for n in point["full_name"])]
    if point["relative_name"] is not None:
        lines += ["Relative Name:", f"  {point['relative_name']}"]
    if point["reasons"] is not None:
        lines += ["Reasons:", f"  {', '.join(point['reasons'])}"]
    if point["crl_issuer"] is not None:
        lines += ["CRL Issuer:", *(f"  {n}" for n in point["crl_issuer"])]
    return lines


def _policy_lines(policy: Mapping[str, Any]) -> list[str]:
    lines = [f"Policy: {policy['name'] or policy['oid']}"]
    lines += [f"  CPS: {uri}" for uri in policy["cps"]]
    for notice in policy["user_notices"]:
        lines.append("  User Notice:")
        if notice["organization"] is not None:
            lines.append(f"    Organization: {notice['organization']}")
        if notice["numbers"]:
            lines.append(f"    Numbers: {', '.join(str(n) for n in notice['numbers'])}")
        if notice["explicit_text"] is not None:
            lines.append(f"    Explicit Text: {notice['explicit_text']}")
    return lines


# --- checks ------------------------------------------------------------------------------


def check_validity(cert: x509.Certificate, at: datetime) -> list[str]:
    """Problems with the validity period at ``at`` (naive means UTC); empty when valid."""
    moment = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    if moment < cert.not_valid_before_utc:
        return [f"not valid before {_iso(cert.not_valid_before_utc)} (checked at {_iso(moment)})"]
    if moment > cert.not_valid_after_utc:
        return [f"expired on {_iso(cert.not_valid_after_utc)} (checked at {_iso(moment)})"]
    return []


def check_names(cert: x509.Certificate, names: Iterable[str]) -> list[str]:
    """Problems for each name the certificate does not cover; empty when all are covered.

    Browser rules (RFC 6125 / CA/B Forum): DNS names only match DNS SANs, IP addresses only
    match IP SANs, the subject CN is never consulted, a wildcard is a whole leftmost label
    and covers exactly one label.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    dns_names = [_normalise_dns(n) for n in san.get_values_for_type(x509.DNSName)]
    ips = san.get_values_for_type(x509.IPAddress)
    problems = []
    for name in names:
        if _covered_by(dns_names, ips, name):
            continue
        ip = _as_ip(name)
        if ip is not None:
            problems.append(f"{name}: not covered (no IP Address SAN {ip})")
        else:
            listed = ", ".join(dns_names) if dns_names else "none"
            problems.append(f"{name}: not covered by the DNS SANs ({listed})")
    return problems


def covers(names: Iterable[str], wanted: str) -> bool:
    """Whether a list of certificate names (DNS names, wildcards, IP addresses) covers
    ``wanted``, by the same browser rules as ``check_names``."""
    dns_names: list[str] = []
    ips: list[_IpValue] = []
    for name in names:
        ip = _as_ip(name)
        if ip is not None:
            ips.append(ip)
        else:
            dns_names.append(_normalise_dns(name))
    return _covered_by(dns_names, ips, wanted)


# What an IP Address SAN holds (networks appear only in name constraints, never match).
_IpValue = (
    ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network | ipaddress.IPv6Network
)


def _covered_by(dns_names: Sequence[str], ips: Sequence[_IpValue], wanted: str) -> bool:
    ip = _as_ip(wanted)
    if ip is not None:
        return ip in ips
    host = _normalise_dns(wanted)
    return any(_dns_matches(pattern, host) for pattern in dns_names)


def _as_ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.strip().strip("[]"))
    except ValueError:
        return None


def _normalise_dns(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    try:
        # Unicode host names are compared in their A-label (xn--) form, as SANs hold them.
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


def _dns_matches(pattern: str, host: str) -> bool:
    if not host or not pattern:
        return False
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False  # "w*.example.com" and "*" elsewhere: not honoured by browsers
    suffix = pattern[2:]
    # "*.com" style wildcards are refused: at least two labels must follow the "*".
    if "*" in suffix or suffix.count(".") < 1:
        return False
    label, _, rest = host.partition(".")
    return bool(label) and rest == suffix
