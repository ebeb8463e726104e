"""The fleet's certificates at a glance: issuer, expiry, names covered or missing."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from provision.api import Loaded, close_all
from provision.crypto.compare import days_left
from provision.crypto.details import check_names
from provision.errors import ProvisionError
from provision.facts import gather
from provision.inputs.targets import Target
from provision.plan.certificate import read_current
from provision.report.document import STAMP, AuthorityEntry, CertificateEntry, state_of
from provision.trust import health, rotation


def key_of(certificate: x509.Certificate) -> tuple[str | None, int | None]:
    """The type and size of a certificate's public key, as the playbook's key: spells them."""
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa", key.key_size
    return None, None


async def _host_rows(loaded: Loaded, target: Target, now: dt.datetime) -> list[CertificateEntry]:
    name = target.host.name
    try:
        await target.transport.start()
        facts = await gather(target.transport, target.paths_of_interest())
    except ProvisionError as exc:
        return [
            _entry(name, c.name, c.renew_before_days, problem=exc.message)
            for c in target.playbook.certificates
        ]
    rows = []
    passwords = loaded.passwords.get(name, {})
    for certificate in target.playbook.certificates:
        renew = certificate.renew_before_days
        try:
            current = read_current(certificate, target.output_paths(certificate), facts, passwords)
        except ProvisionError as exc:
            rows.append(_entry(name, certificate.name, renew, problem=exc.message))
            continue
        leaf = current.leaf
        if leaf is None:
            problem = current.unreadable[0] if current.unreadable else "missing"
            rows.append(_entry(name, certificate.name, renew, problem=problem))
            continue
        left = int(days_left(leaf, now) // 1)
        key_type, key_size = key_of(leaf)
        rows.append(
            _entry(
                name,
                certificate.name,
                renew,
                issuer=leaf.issuer.rfc4514_string(),
                not_after=leaf.not_valid_after_utc.strftime(STAMP),
                days_left=left,
                names_missing=[p.split(":", 1)[0] for p in check_names(leaf, certificate.names)],
                key_type=key_type,
                key_size=key_size,
                problem=f"expired {-left} days ago" if left < 0 else None,
            )
        )
    return rows


def _entry(host: str, certificate: str, renew_before_days: int, **read: Any) -> CertificateEntry:
    """A certificate's row, its state derived from what was read."""
    state = state_of(read.get("days_left"), read.get("names_missing", []), renew_before_days)
    return CertificateEntry(
        host=host,
        certificate=certificate,
        renew_before_days=renew_before_days,
        state=state,
        **read,
    )


def authority_rows(loaded: Loaded, now: dt.datetime | None = None) -> list[AuthorityEntry]:
    """Every authority of the playbook, soonest expiry first (one still to create leads)."""
    moment = now or dt.datetime.now(dt.UTC)
    rows = []
    for name, store in sorted(loaded.authorities.items()):
        file, phase = str(store.certificate_file), rotation.describe(store)
        if store.material is None:
            problem = "not created yet (created by the first apply)"
            rows.append(AuthorityEntry(authority=name, file=file, problem=problem, rotation=phase))
            continue
        certificate = store.material.leaf
        rows.append(
            AuthorityEntry(
                authority=name,
                file=file,
                subject=certificate.subject.rfc4514_string(),
                not_after=certificate.not_valid_after_utc.strftime(STAMP),
                days_left=int(days_left(certificate, moment) // 1),
                problem=health.unusable(name, file, certificate, moment),
                rotation=phase,
            )
        )
    return sorted(rows, key=lambda r: (r.days_left is not None, r.days_left or 0, r.authority))


async def fleet_status(loaded: Loaded, now: dt.datetime | None = None) -> list[CertificateEntry]:
    moment = now or dt.datetime.now(dt.UTC)
    try:
        return await status_rows(loaded, moment)
    finally:
        await close_all(loaded)


async def status_rows(loaded: Loaded, now: dt.datetime) -> list[CertificateEntry]:
    """``fleet_status`` leaving the hosts' connections open, for a caller that goes on to
    read more from the same hosts (the report's plan) and closes them itself."""
    per_host = await asyncio.gather(*(_host_rows(loaded, t, now) for t in loaded.targets))
    rows = [row for host_rows in per_host for row in host_rows]
    # Soonest expiry first; missing certificates (no date) lead, as the most urgent.
    return sorted(
        rows, key=lambda r: (r.days_left is not None, r.days_left or 0, r.host, r.certificate)
    )
