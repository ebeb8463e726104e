"""A plan is plain data: what will change on each host, and why.

It has two readers: ``explain`` prints it, and the executor applies it. Content the plan
knows in advance (rendered configs) travels inside it; content that depends on key material
(every certificate output) is named by reference and derived at apply time, so a plan never
holds a private key and can be saved and reviewed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

Action = Literal["create", "update", "replace", "delete"]


@dataclass(frozen=True)
class Issue:
    """A certificate to (re)issue at apply time."""

    certificate: str
    new_key: bool


@dataclass(frozen=True)
class Derived:
    """A certificate output whose bytes come from the certificate's material at apply time."""

    certificate: str
    output: int  # index into the certificate's outputs


@dataclass(frozen=True)
class Change:
    resource: str
    action: Action
    reason: str
    path: str | None = None
    mode: int | None = None
    content: bytes | None = None
    derived: Derived | None = None
    issue: Issue | None = None
    diff: str | None = None
    before: dict[str, str] | None = None  # certificate summaries for the reader, never keys
    site: str | None = None  # the site a rendered config belongs to


@dataclass(frozen=True)
class Unchanged:
    resource: str
    reason: str


@dataclass(frozen=True)
class HostPlan:
    host: str
    changes: tuple[Change, ...] = ()
    unchanged: tuple[Unchanged, ...] = ()
    facts_digest: str = ""
    error: str | None = None
    waiting: tuple[str, ...] = ()  # certificates waiting for a file (CSR workflow)
    # The moment the clock alone would change this plan (a renewal window opens); None: never.
    stable_until: dt.datetime | None = None
    read_paths: tuple[str, ...] = ()  # the host's files ``facts_digest`` covers
    missing_paths: tuple[str, ...] = ()  # those of them that were not there

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)


@dataclass(frozen=True)
class Plan:
    playbook: str
    inventory: str
    hosts: tuple[HostPlan, ...] = field(default_factory=tuple)

    @property
    def has_changes(self) -> bool:
        return any(h.has_changes for h in self.hosts)

    @property
    def failed(self) -> bool:
        return any(h.error for h in self.hosts)
