"""The fleet document: what `status --format json` and `report --format json` print, and what
`report --from-json` and `status --from-json` read back (docs/status-json.md).

One versioned shape for every consumer: the HTML report and the Prometheus metrics are drawn
from this document alone, never from the hosts, so a document made elsewhere (another
shard's, merged) renders the same as one made here. Its keys are stable: a key is added only
with a new ``schema_version``, and tests/test_report.py pins them.

A document read back is input: it is validated here (unknown keys, wrong types and another
``schema_version`` refused with the file and the field), and the summary is always computed
again from the lists, never trusted.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provision.errors import ProvisionError

SCHEMA_VERSION: Literal[1] = 1
STAMP = "%Y-%m-%dT%H:%M:%SZ"  # every moment in the document, UTC, whole seconds

# Worst first: the order of the report's legend and of its aggregated timeline's stacks.
STATES = ("missing", "expired", "names", "renew", "ok")
State = Literal["missing", "expired", "names", "renew", "ok"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CertificateEntry(_Frozen):
    """One certificate of one host, as the host holds it."""

    host: str
    certificate: str
    issuer: str | None = None
    not_after: str | None = None  # 2027-01-31T12:00:00Z
    days_left: int | None = None  # whole days from the document's generated_at
    names_missing: list[str] = Field(default_factory=list)
    problem: str | None = None
    key_type: str | None = None
    key_size: int | None = None
    renew_before_days: int = 30  # the playbook's: inside this many days, apply renews it
    state: State = "missing"  # state_of the fields above (kept: the report colours by it)

    @property
    def bad(self) -> bool:
        """Exit 1 for `status`: unreadable, missing, expired, or a name not covered."""
        return self.problem is not None or bool(self.names_missing)


def state_of(days_left: int | None, names_missing: list[str], renew_before_days: int) -> State:
    """One word for the report's colours, the worst that holds: missing (no certificate
    read), expired, names (a name not covered), renew (inside the renewal window), ok."""
    if days_left is None:
        return "missing"
    if days_left < 0:
        return "expired"
    if names_missing:
        return "names"
    if days_left < renew_before_days:
        return "renew"
    return "ok"


class AuthorityEntry(_Frozen):
    """An internal CA kept on the controller."""

    authority: str
    file: str
    subject: str | None = None
    not_after: str | None = None
    days_left: int | None = None
    problem: str | None = None
    # The phase of a rotation under way (`provision ca rotate`); None when none is.
    rotation: str | None = None

    @property
    def bad(self) -> bool:
        return self.problem is not None


class HostEntry(_Frozen):
    """What a host's records and a read-only plan say about the host."""

    host: str
    drift: bool | None = None  # the plan has changes; None: the host could not be planned
    changes: int | None = None
    plan_error: str | None = None
    # The newest apply that changed the host (its backup folder's time); None: none found.
    last_apply: str | None = None
    # False while the host owes a reload (an apply replaced files and its reload or its
    # verification failed) or holds a killed run's journal; None when no apply is known.
    last_apply_success: bool | None = None


class Summary(_Frozen):
    hosts: int
    certificates: int
    states: dict[str, int]  # every state of STATES, in that order, with its count
    hosts_drifted: int
    hosts_unplanned: int
    last_apply_failed: int
    authorities: int
    authorities_with_problems: int
    next_expiry: str | None  # the soonest not_after among the certificates read


class RunInput(_Frozen):
    """A file the run read, by path and SHA-256 (as saved plans record them)."""

    path: str
    sha256: str


class FleetDocument(_Frozen):
    schema_version: Literal[1] = SCHEMA_VERSION
    # What every JSON result says of its run (report/envelope.py), so that `provision merge`
    # can put the documents of a run's shards together (report/merge.py).
    kind: Literal["status"] = "status"
    shard: str | None = None  # I/N, or null: every selected host
    merged_shards: int | None = None  # set by `provision merge`
    limit: str | None = None
    playbook: RunInput | None = None
    inventory: list[RunInput] = Field(default_factory=list)
    generated_at: str  # the moment days_left counts from
    certificates: list[CertificateEntry] = Field(default_factory=list)
    authorities: list[AuthorityEntry] = Field(default_factory=list)
    hosts: list[HostEntry] = Field(default_factory=list)
    summary: Summary | None = None

    def summarised(self) -> FleetDocument:
        """This document with its summary computed from its lists (and the lists sorted:
        certificates soonest expiry first, missing ones leading)."""
        certificates = sorted(
            self.certificates,
            key=lambda c: (c.days_left is not None, c.days_left or 0, c.host, c.certificate),
        )
        hosts = sorted(self.hosts, key=lambda h: h.host)
        counts = Counter(str(c.state) for c in certificates)
        dates = sorted(c.not_after for c in certificates if c.not_after is not None)
        summary = Summary(
            hosts=len({c.host for c in certificates} | {h.host for h in hosts}),
            certificates=len(certificates),
            states={state: counts.get(state, 0) for state in STATES},
            hosts_drifted=sum(1 for h in hosts if h.drift),
            hosts_unplanned=sum(1 for h in hosts if h.drift is None),
            last_apply_failed=sum(1 for h in hosts if h.last_apply_success is False),
            authorities=len(self.authorities),
            authorities_with_problems=sum(1 for a in self.authorities if a.problem),
            next_expiry=dates[0] if dates else None,
        )
        return self.model_copy(
            update={"certificates": certificates, "hosts": hosts, "summary": summary}
        )


def dumps(document: FleetDocument) -> str:
    """The document as JSON, keys in their pinned order, two-space indented."""
    return json.dumps(document.summarised().model_dump(mode="json"), indent=2) + "\n"


def loads(text: str | bytes, where: str) -> FleetDocument:
    """A document read back (``where`` names it in errors), summary recomputed."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProvisionError(f"{where}: not JSON ({exc})") from None
    if isinstance(data, dict) and data.get("schema_version") not in (None, SCHEMA_VERSION):
        raise ProvisionError(
            f"{where}: schema_version {data.get('schema_version')!r} is not one this provision "
            f"reads ({SCHEMA_VERSION}); make the document with the same provision version"
        )
    try:
        document = FleetDocument.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(document)"
        raise ProvisionError(
            f"{where}: {field}: {first['msg']} (not a provision status or report document; "
            f"see docs/status-json.md)"
        ) from None
    return document.summarised()
