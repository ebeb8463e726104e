"""Revocation for an internal authority: its list of revoked serials and its CRL.

The list is kept beside the authority's key on the controller (``revoked``: one line per
serial, ``HEX ISO-TIME REASON``), so it survives like the serial counter. The CRL is rebuilt
from it, signed by the authority, and published as DER and PEM to the authority's
``crl.dir`` when one is configured. ``revoke`` is the one entry point for the CLI, for apply
(a replaced leaf is superseded) and for other commands that retire certificates.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID

from provision import fsutil
from provision.crypto.build import signature_hash
from provision.errors import ProvisionError
from provision.inputs.manifest import Manifest
from provision.inputs.manifest import read as record_read
from provision.sources.authority_store import AuthorityStore

REVOKED_FILE = "revoked"
CRL_NUMBER_FILE = "crlnumber"
CRL_DER = "crl.der"
CRL_PEM = "crl.pem"

REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key-compromise": x509.ReasonFlags.key_compromise,
    "superseded": x509.ReasonFlags.superseded,
    "affiliation-changed": x509.ReasonFlags.affiliation_changed,
    "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
}


@dataclass(frozen=True)
class Revoked:
    serial: int
    when: dt.datetime
    reason: str


def read_revoked(store: AuthorityStore) -> list[Revoked]:
    """The authority's revoked serials; a damaged line is an error naming the file and line
    (a CRL silently missing a revocation would un-revoke it)."""
    path = store.folder / REVOKED_FILE
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            serial_hex, when, reason = line.split()
            entries.append(Revoked(int(serial_hex, 16), dt.datetime.fromisoformat(when), reason))
            if reason not in REASONS:
                raise ValueError(reason)
        except ValueError:
            raise ProvisionError(
                f"{path}:{number}: not `SERIAL-HEX ISO-TIME REASON` with a reason of "
                f"{', '.join(REASONS)}"
            ) from None
    return entries


def revoke(
    store: AuthorityStore, serial: int, now: dt.datetime, reason: str = "unspecified"
) -> bool:
    """Put ``serial`` on the authority's list and republish its CRL (when configured).
    False when it was revoked already (nothing changes)."""
    if reason not in REASONS:
        raise ProvisionError(f"unknown revocation reason {reason!r} (one of {', '.join(REASONS)})")
    if store.material is None:
        raise ProvisionError(f"authority {store.spec.name!r} was not created")
    if any(r.serial == serial for r in read_revoked(store)):
        return False
    with open(store.folder / REVOKED_FILE, "a", encoding="ascii") as handle:
        handle.write(f"{serial:x} {now.isoformat()} {reason}\n")
    publish(store, now)
    return True


def build_crl(
    store: AuthorityStore, now: dt.datetime, number: int
) -> x509.CertificateRevocationList:
    """The authority's CRL at ``now``: every revoked serial, signed by the authority."""
    assert store.material is not None
    issuer = store.material.leaf
    days = store.spec.crl.next_update_days if store.spec.crl else 7
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    try:
        identifier = issuer.extensions.get_extension_for_oid(
            ExtensionOID.SUBJECT_KEY_IDENTIFIER
        ).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(identifier),  # type: ignore[arg-type]
            critical=False,
        )
    except x509.ExtensionNotFound:
        pass
    for entry in read_revoked(store):
        revoked = (
            x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.when)
        )
        if entry.reason != "unspecified":  # RFC 5280: absent rather than unspecified
            revoked = revoked.add_extension(x509.CRLReason(REASONS[entry.reason]), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    key = store.material.key
    return builder.sign(key, signature_hash(key))  # type: ignore[arg-type]


def crl_folder(store: AuthorityStore) -> Path | None:
    return store.crl_dir


def publish(store: AuthorityStore, now: dt.datetime) -> list[Path]:
    """Write the CRL as DER and PEM to the configured folder; nothing without ``crl``."""
    folder = store.crl_dir
    if folder is None or store.material is None:
        return []
    number = _next_number(store)
    crl = build_crl(store, now, number)
    folder.mkdir(parents=True, exist_ok=True, mode=0o755)
    written = []
    for name, encoding in (
        (f"{store.crl_stem}.der", serialization.Encoding.DER),
        (f"{store.crl_stem}.pem", serialization.Encoding.PEM),
    ):
        fsutil.write_atomic(str(folder / name), crl.public_bytes(encoding), 0o644)
        written.append(folder / name)
    fsutil.write_atomic(str(store.folder / CRL_NUMBER_FILE), f"{number + 1:x}\n".encode(), 0o644)
    return written


def published(store: AuthorityStore, reads: Manifest | None = None) -> tuple[bytes, bytes] | None:
    """The CRL as last published on the controller (DER, PEM), for the hosts that are given
    a copy (``crl.host_dir``); None before the first one is published, or if it is damaged."""
    folder = store.crl_dir
    if folder is None:
        return None
    record_read(reads, folder / CRL_DER)
    record_read(reads, folder / CRL_PEM)
    try:
        der, text = (folder / CRL_DER).read_bytes(), (folder / CRL_PEM).read_bytes()
        x509.load_der_x509_crl(der)
        x509.load_pem_x509_crl(text)
    except (OSError, ValueError):
        return None
    return der, text


def needs_publishing(store: AuthorityStore, now: dt.datetime) -> bool:
    """The CRL is missing, signed by another key, or half its period has passed (clients
    refuse a stale one)."""
    folder = store.crl_dir
    if folder is None or store.material is None:
        return False
    try:
        crl = x509.load_der_x509_crl((folder / f"{store.crl_stem}.der").read_bytes())
    except (OSError, ValueError):
        return True
    if not crl.is_signature_valid(store.material.key.public_key()):
        return True  # another key's (a rotation made this CA the one whose CRL is named)
    update = crl.next_update_utc
    last = crl.last_update_utc
    return update is None or now >= last + (update - last) / 2


def _next_number(store: AuthorityStore) -> int:
    try:
        return int((store.folder / CRL_NUMBER_FILE).read_text().strip(), 16)
    except (OSError, ValueError):
        return 1


def finish_run(store: AuthorityStore, hosts_done: set[str], now: dt.datetime) -> None:
    """After apply: revoke the leaves replaced on hosts that finished (a host that failed may
    still serve its old leaf), then republish the CRL if it is missing or getting stale."""
    changed = False
    for host, serial in store.superseded:
        if host in hosts_done:
            changed = revoke(store, serial, now, "superseded") or changed
    store.superseded.clear()
    if not changed and needs_publishing(store, now):
        publish(store, now)
