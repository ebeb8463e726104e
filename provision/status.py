"""The fleet's certificates at a glance: issuer, expiry, names covered or missing."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from provision.api import Loaded, close_all
from provision.crypto.compare import days_left
from provision.crypto.details import check_names
from provision.errors import ProvisionError
from provision.facts import gather
from provision.inputs.targets import Target
from provision.plan.certificate import read_current
from provision.trust import health, rotation


@dataclass
class StatusRow:
    host: str
    certificate: str
    issuer: str | None = None
    not_after: str | None = None
    days_left: int | None = None
    names_missing: list[str] = field(default_factory=list)
    problem: str | None = None
    key_type: str | None = None  # rsa | ecdsa | ed25519 | ed448 | dsa, of the leaf read
    key_size: int | None = None  # bits (an ECDSA key: its curve's)
    renew_before_days: int = 30  # the playbook's: inside this many days, apply renews it

    @property
    def bad(self) -> bool:
        return self.problem is not None or bool(self.names_missing)

    @property
    def state(self) -> str:
        """One word for the report's colours, the worst that holds: missing (no certificate
        read), expired, names (a name not covered), renew (inside the renewal window), ok."""
        if self.days_left is None:
            return "missing"
        if self.days_left < 0:
            return "expired"
        if self.names_missing:
            return "names"
        if self.days_left < self.renew_before_days:
            return "renew"
        return "ok"


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


async def _host_rows(loaded: Loaded, target: Target, now: dt.datetime) -> list[StatusRow]:
    name = target.host.name
    try:
        await target.transport.start()
        facts = await gather(target.transport, target.paths_of_interest())
    except ProvisionError as exc:
        return [
            StatusRow(name, c.name, problem=exc.message, renew_before_days=c.renew_before_days)
            for c in target.playbook.certificates
        ]
    rows = []
    passwords = loaded.passwords.get(name, {})
    for certificate in target.playbook.certificates:
        row = StatusRow(name, certificate.name, renew_before_days=certificate.renew_before_days)
        try:
            current = read_current(certificate, target.output_paths(certificate), facts, passwords)
        except ProvisionError as exc:
            row.problem = exc.message
            rows.append(row)
            continue
        leaf = current.leaf
        if leaf is None:
            row.problem = current.unreadable[0] if current.unreadable else "missing"
        else:
            row.issuer = leaf.issuer.rfc4514_string()
            row.not_after = leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
            row.days_left = int(days_left(leaf, now) // 1)
            row.names_missing = [p.split(":", 1)[0] for p in check_names(leaf, certificate.names)]
            row.key_type, row.key_size = key_of(leaf)
            if row.days_left < 0:
                row.problem = f"expired {-row.days_left} days ago"
        rows.append(row)
    return rows


@dataclass
class AuthorityRow:
    """An internal authority on the controller, with its expiry."""

    authority: str
    file: str
    subject: str | None = None
    not_after: str | None = None
    days_left: int | None = None
    problem: str | None = None
    rotation: str | None = None  # its rotation's phase, while it rotates (trust/rotation.py)

    @property
    def bad(self) -> bool:
        return self.problem is not None


def authority_rows(loaded: Loaded, now: dt.datetime | None = None) -> list[AuthorityRow]:
    """Every authority of the playbook, soonest expiry first (one still to create leads)."""
    moment = now or dt.datetime.now(dt.UTC)
    rows = []
    for name, store in sorted(loaded.authorities.items()):
        row = AuthorityRow(name, str(store.certificate_file), rotation=rotation.describe(store))
        if store.material is None:
            row.problem = "not created yet (created by the first apply)"
        else:
            certificate = store.material.leaf
            row.subject = certificate.subject.rfc4514_string()
            row.not_after = certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
            row.days_left = int(days_left(certificate, moment) // 1)
            row.problem = health.unusable(name, row.file, certificate, moment)
        rows.append(row)
    return sorted(rows, key=lambda r: (r.days_left is not None, r.days_left or 0, r.authority))


async def fleet_status(loaded: Loaded, now: dt.datetime | None = None) -> list[StatusRow]:
    moment = now or dt.datetime.now(dt.UTC)
    try:
        return await status_rows(loaded, moment)
    finally:
        await close_all(loaded)


async def status_rows(loaded: Loaded, now: dt.datetime) -> list[StatusRow]:
    """``fleet_status`` leaving the hosts' connections open, for a caller that goes on to
    read more from the same hosts (the report's plan) and closes them itself."""
    per_host = await asyncio.gather(*(_host_rows(loaded, t, now) for t in loaded.targets))
    rows = [row for host_rows in per_host for row in host_rows]
    # Soonest expiry first; missing certificates (no date) lead, as the most urgent.
    return sorted(
        rows, key=lambda r: (r.days_left is not None, r.days_left or 0, r.host, r.certificate)
    )
