"""What a run did to each host, as plain data for the report.

Kept apart from the api (which imports cryptography, jinja2 and pydantic) so that a run answered
from the converged record can be reported without importing them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from provision.plan.model import HostPlan


@dataclass(frozen=True)
class NameCheck:
    """One name of a site, connected to over TLS after apply."""

    site: str
    name: str
    address: str
    port: int
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class OwedReload:
    """A site whose files were written but whose server has not taken them: the reload
    marker on the host names it, so the next apply runs ``command`` even if nothing else
    changed."""

    site: str
    command: str | None  # None: the site reloads, but neither it nor its server has a command


@dataclass
class HostReport:
    host: str
    status: str  # ok | changed | failed | skipped
    plan: HostPlan
    error: str | None = None
    seconds: float = 0.0
    backup: str | None = None
    verified: list[NameCheck] = field(default_factory=list)
    # A failed host that the run changed all the same (files replaced before a reload or a
    # verification failed): its changes stand, and ``reload_owed`` names what is still owed.
    wrote: bool = False
    reload_owed: tuple[OwedReload, ...] = ()
    # (authority, serial) of internal-CA leaves a sharded apply replaced on this host: the
    # shard leaves their revocation to one unsharded step (provision/trust/revocation.py).
    superseded: tuple[tuple[str, int], ...] = ()

    @property
    def changed(self) -> bool:
        """Whether this run changed the host, whether it then failed or not."""
        return self.status == "changed" or (self.status == "failed" and self.wrote)


@dataclass
class Report:
    hosts: list[HostReport] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(h.status in ("failed", "skipped") for h in self.hosts)

    def count(self, status: str) -> int:
        """Hosts with ``status``; for "changed", every host the run changed, the ones that
        failed afterwards included (a host can be counted changed and failed)."""
        if status == "changed":
            return sum(1 for h in self.hosts if h.changed)
        return sum(1 for h in self.hosts if h.status == status)


@dataclass(frozen=True)
class BackupSummary:
    """One backup folder on a host, for `rollback --list`: when it was taken and by what,
    what undoing it restores (full paths) and removes, and whether a rollback undid it."""

    name: str  # the folder's name, which `rollback --to` takes
    time: dt.datetime
    folder: str
    operation: str  # apply | rollback | csr: what took it
    restores: tuple[str, ...]  # files undoing it puts back as they were
    removes: tuple[str, ...]  # files undoing it removes (that run created them)
    undoes: tuple[str, ...]  # a rollback's: the backups it undid
    undone_by: str | None  # the rollback (its backup) that undid this one, if still in effect
    always_kept: bool  # the oldest backup: from before provision first wrote here


@dataclass
class HostBackups:
    host: str
    backups: list[BackupSummary] = field(default_factory=list)
    next: str | None = None  # what `rollback` without --to undoes; None: nothing more
    error: str | None = None
