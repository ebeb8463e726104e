"""``provision revoke``: revoke the certificates the selected hosts hold, through their source.

The certificate revoked is the one the host's outputs hold now (read as ``status`` reads it);
the source decides whether and how it can be revoked (ACME: by the account that ordered it).
Nothing is written to the host: the next apply replaces a revoked certificate only once the
playbook or the clock asks for it, so revoke, then apply with a changed key or names.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from provision.api import Loaded, close_all
from provision.errors import ProvisionError
from provision.facts import gather
from provision.inputs.targets import Target
from provision.plan.certificate import read_current
from provision.sources.registry import source_of

# RFC 5280 5.3.1 reason codes a subscriber may give (RFC 8555 7.6; CAs refuse the others).
REASONS = {
    "unspecified": 0,
    "keyCompromise": 1,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
}


@dataclass(frozen=True)
class Revoked:
    host: str
    certificate: str
    done: str | None  # what was done; None when ``error``
    error: str | None = None


async def _host(
    target: Target, reason: int, folder: Path, passwords: dict[str, bytes]
) -> list[Revoked]:
    name = target.host.name
    try:
        await target.transport.start()
        facts = await gather(target.transport, target.paths_of_interest())
    except ProvisionError as exc:
        return [Revoked(name, c.name, None, exc.message) for c in target.playbook.certificates]
    results = []
    for spec in target.playbook.certificates:
        try:
            current = read_current(spec, target.output_paths(spec), facts, passwords)
            if current.leaf is None:
                raise ProvisionError("the host holds no such certificate")
            done = await source_of(spec).revoke(spec, current.leaf, reason, folder)
            results.append(Revoked(name, spec.name, done))
        except ProvisionError as exc:
            results.append(Revoked(name, spec.name, None, exc.message))
    return results


async def revoke_all(loaded: Loaded, reason: str) -> list[Revoked]:
    code = REASONS[reason]
    try:
        per_host = await asyncio.gather(
            *(
                _host(t, code, loaded.folder, dict(loaded.passwords.get(t.host.name, {})))
                for t in loaded.targets
            )
        )
    finally:
        await close_all(loaded)
    return [row for rows in per_host for row in rows]
