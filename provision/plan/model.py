"""A plan is plain data: what will change on each host, and why.

It has two readers: ``explain`` prints it, and the executor applies it. Content the plan
knows in advance (rendered configs) travels inside it; content that depends on key material
(every certificate output) is named by reference and derived at apply time, so a plan never
holds a private key and can be saved and reviewed.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Literal

Action = Literal["create", "update", "replace", "delete"]


class OctalText:
    """How a saved plan writes a file mode: octal text ("0600"), as a reviewer reads modes.

    pydantic finds ``__get_pydantic_core_schema__`` on this marker when it serialises a plan
    (plan/saved.py); nothing is imported until then, so this module stays light."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        def parse(value: object) -> int:
            if not isinstance(value, str) or not re.fullmatch(r"[0-7]{3,4}", value):
                raise ValueError("a file mode is octal text such as '0644'")
            return int(value, 8)

        return core_schema.no_info_plain_validator_function(
            parse,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: f"{v:04o}"),
        )


Mode = Annotated[int, OctalText()]


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
    mode: Mode | None = None
    content: bytes | None = None
    derived: Derived | None = None
    issue: Issue | None = None
    diff: str | None = None
    before: dict[str, str] | None = None  # certificate summaries for the reader, never keys
    site: str | None = None  # the site a rendered config belongs to
    # A rendered site file written and reloaded before any certificate is ordered, so that
    # the site serves the HTTP-01 challenge first (servers/challenge.py): ``content`` less
    # the https bindings whose certificate files do not exist yet. None: nothing first.
    first: bytes | None = None
    # A trust store's update command, run on the host once the files are in place, in the
    # same steps as the config tests and reloads (provision/trust/stores.py).
    command: str | None = None
    # How ``content`` becomes the file's bytes at apply time: "java-truststore" (a PKCS#12
    # truststore of the listed certificates, salted afresh on every write); None: as is.
    encoding: str | None = None

    def substance(self) -> tuple[object, ...]:
        """What the change does: every field but the DESCRIPTIVE ones, so a field added
        here is compared (a saved plan's drift check) unless it is declared descriptive."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name not in DESCRIPTIVE)


# The words that describe a change to a reader, not what it does: a saved plan whose changes
# differ only in these still applies (they may be worded differently by another version).
DESCRIPTIVE = frozenset({"reason", "diff", "before"})


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
    # Names a client may use that their certificate does not cover (provision/coverage.py),
    # as ``file:line: key: message``: reported, never a reason to change anything.
    warnings: tuple[str, ...] = ()
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
    inventory: tuple[str, ...]  # every -i source, in the order given (later ones win)
    hosts: tuple[HostPlan, ...] = field(default_factory=tuple)

    @property
    def has_changes(self) -> bool:
        return any(h.has_changes for h in self.hosts)

    @property
    def failed(self) -> bool:
        return any(h.error for h in self.hosts)
