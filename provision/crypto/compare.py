"""Compare certificates by meaning: names, subject, key, issuer, validity; never raw bytes.

Random fields (serial numbers, PKCS#12 salts) differ on every issuance, and timestamps move;
neither is a reason to regenerate. These helpers say what differs, in words for a plan.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import TypeVar

from cryptography import x509

from provision.crypto import chains

T = TypeVar("T")


def san_names(certificate: x509.Certificate) -> list[str]:
    """DNS names (lowercase) and IP addresses (normalised) in the certificate's SAN."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    names.extend(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return names


def names_difference(
    certificate: x509.Certificate, wanted: list[str]
) -> tuple[list[str], list[str]]:
    """(added, removed) names, in the playbook's order and then the certificate's."""
    have = san_names(certificate)
    want = [_normal(n) for n in wanted]
    added = [n for n in want if n not in have]
    removed = [n for n in have if n not in want]
    return added, removed


def _normal(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower()


def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``certificate`` names ``issuer`` as its issuer, by meaning: the issuer's name,
    and its key identifier where both carry one (else the signature is verified).

    Planning asks this of every certificate on every run ("was this issued by the expected
    CA?"); it decides what to regenerate, not whom to trust, so the identifiers suffice and
    spare a signature verification per host (a third of a no-change run with ECDSA keys).
    Planning then proves the issuer it recognised with ``chains.signature_problem``.
    """
    if certificate.issuer != issuer.subject:
        return False
    authority = _extension(certificate, x509.AuthorityKeyIdentifier)
    subject = _extension(issuer, x509.SubjectKeyIdentifier)
    if authority is not None and subject is not None and authority.key_identifier:
        return authority.key_identifier == subject.digest
    # Without identifiers the signature is what names the issuer (the proof, for planning,
    # is chains.signature_problem, asked next; its cache answers the second time).
    return chains.signature_problem(certificate, issuer) is None


def _extension(certificate: x509.Certificate, kind: type[T]) -> T | None:
    try:
        return certificate.extensions.get_extension_for_class(kind).value  # type: ignore[type-var]
    except x509.ExtensionNotFound:
        return None


def is_self_signed(certificate: x509.Certificate) -> bool:
    return issued_by(certificate, certificate)


def lifetime_days(certificate: x509.Certificate) -> float:
    span = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    return span.total_seconds() / 86400


def days_left(certificate: x509.Certificate, now: dt.datetime) -> float:
    return (certificate.not_valid_after_utc - now).total_seconds() / 86400


__all__ = [
    "days_left",
    "is_self_signed",
    "issued_by",
    "lifetime_days",
    "names_difference",
    "san_names",
]
