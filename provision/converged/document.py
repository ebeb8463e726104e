"""The record document: when a run may be recorded, what its record holds, where records
live, and forgetting them all before a run writes (the package's docstring has the rules)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision.converged.stamps import (
    EDIT_MARGIN_NS,
    Unrecordable,
    code_digest,
    host_stamp,
    input_entries,
    inputs_digest,
)
from provision.errors import ProvisionError

if TYPE_CHECKING:
    from provision.inputs.load import Loaded
    from provision.inputs.targets import Target
    from provision.plan.model import HostPlan, Plan
    from provision.report.outcome import Report

FORMAT = "provision-converged/3"
# Kept per (folder, playbook, inventory, limit): the oldest records beyond this are removed.
MAX_RECORDS = 64


@dataclass(frozen=True)
class Command:
    """What identifies a run: the same command in the same folder finds its record."""

    kind: str  # "plan" (plan, apply --check) or "apply": a plan's record never answers an apply
    playbook: str
    inventory: tuple[str, ...]  # every -i source, in order: -i a -i b is not -i b -i a
    limit: str | None

    def key(self) -> str:
        # Where the paths lead now (a `current` symlink switched to another release is another
        # run), and what relative and ~ paths on the hosts resolve against.
        identity = json.dumps(
            [
                self.kind,
                os.getcwd(),
                os.path.expanduser("~"),
                self.playbook,
                os.path.realpath(self.playbook),
                [[source, os.path.realpath(source)] for source in self.inventory],
                self.limit,
            ]
        )
        return hashlib.sha256(identity.encode()).hexdigest()[:32]


def cache_dir() -> Path:
    configured = os.environ.get("PROVISION_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "provision"


def record_path(command: Command) -> Path:
    return cache_dir() / "converged" / f"{command.key()}.json"


def forget_all() -> None:
    """Before a run writes to hosts: no record may outlive it (a run killed half-way could have
    left staged files that only a full run cleans up), whatever command made the record."""
    folder = cache_dir() / "converged"
    try:
        for path in folder.glob("*.json"):
            path.unlink(missing_ok=True)
    except OSError:
        pass


def record(
    loaded: Loaded, plan: Plan, report: Report, command: Command, now: dt.datetime, started_ns: int
) -> bool:
    """Record the run if it found every host converged and can be proven so again; returns
    whether it did. Never fails the run: a record that cannot be written is not written."""
    try:
        document = _record_document(loaded, plan, report, command, now, started_ns)
    except (Unrecordable, OSError, ValueError):
        return False  # (an input that cannot be read again cannot be checked again)
    path = record_path(command)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(path, json.dumps(document, separators=(",", ":")).encode())
        _prune(path.parent)
    except (OSError, ProvisionError):
        return False
    return True


def _record_document(
    loaded: Loaded, plan: Plan, report: Report, command: Command, now: dt.datetime, started_ns: int
) -> dict[str, Any]:
    _check_recordable(loaded, plan, report, command)
    # Exactly what loading (and rendering) read or looked for: nothing listed by hand here.
    entries = input_entries(loaded.reads.files, loaded.reads.folders)
    edited_before = started_ns - EDIT_MARGIN_NS
    targets = {target.host.name: target for target in loaded.targets}
    return {
        "format": FORMAT,
        "code": code_digest(edited_before),
        "recorded": _iso(now),
        "until": _iso(_stable_until(loaded, plan)),
        # One digest for all of them: no digest of a single key file is kept.
        "inputs": {"entries": entries, "digest": inputs_digest(entries, edited_before)},
        "batches": _batch_sizes(loaded),
        "hosts": [
            _host_entry(targets[host.host], host, command, edited_before) for host in plan.hosts
        ],
    }


def _check_recordable(loaded: Loaded, plan: Plan, report: Report, command: Command) -> None:
    from provision.model.playbook import ProvidedSource
    from provision.transport.local import LocalTransport

    if not loaded.targets:
        raise Unrecordable("no host")
    if loaded.reads.volatile_reasons:
        raise Unrecordable(loaded.reads.volatile_reasons[0])
    if command.limit is not None and "@" in command.limit:
        raise Unrecordable("a --limit @file is read at run time")
    if any(h.status != "ok" for h in report.hosts) or any(h.error or h.changes for h in plan.hosts):
        raise Unrecordable("not converged")
    if loaded.passwords or any(store.pending for store in loaded.authorities.values()):
        raise Unrecordable("passwords are never digested; a pending authority is created")
    for target in loaded.targets:
        if not isinstance(target.transport, LocalTransport):
            raise Unrecordable(f"{target.host.name} is not local")
        if any(site.verify for site in target.playbook.sites):
            raise Unrecordable("apply verifies over the network every time")
        if any(
            isinstance(c.source, ProvidedSource) and c.source.password is not None
            for c in target.playbook.certificates
        ):
            raise Unrecordable("passwords are never digested")


def _stable_until(loaded: Loaded, plan: Plan) -> dt.datetime | None:
    """The first moment the clock alone could change the plan: a host's renewal window, or a
    controller certificate (authority, supplied chain) expiring."""
    moments = [h.stable_until for h in plan.hosts if h.stable_until is not None]
    for store in loaded.authorities.values():
        if store.material is not None:
            moments.append(store.material.leaf.not_valid_after_utc)
    for supplied in loaded.supplied.values():
        if supplied is not None:
            moments += [c.not_valid_after_utc for c in (supplied.leaf, *supplied.chain)]
            if supplied.root is not None:
                moments.append(supplied.root.not_valid_after_utc)
    return min(moments, default=None)


def _batch_sizes(loaded: Loaded) -> list[int]:
    from provision.apply.batches import batches

    serial = loaded.targets[0].playbook.serial
    return [len(batch) for batch in batches(loaded.targets, serial)]


def _host_entry(
    target: Target, host: HostPlan, command: Command, edited_before: int
) -> dict[str, Any]:
    from provision.apply.journal import journal_path
    from provision.layout import LOCK_FILE

    missing = set(host.missing_paths)
    return {
        "name": host.host,
        "files": [
            [path, host_stamp(path, edited_before, path in missing)] for path in host.read_paths
        ],
        # Present only while another run works on the host, or after one was killed: either
        # way the full run (which waits for the lock, or finishes the journal) must answer.
        "absent": [
            journal_path(target.certificates_dir, target.paths),
            os.path.join(target.certificates_dir, LOCK_FILE),
        ],
        # A full apply takes a lock there even when nothing changes: a folder that can no
        # longer be written fails that host, so the record must not say "ok".
        "writable": [target.certificates_dir] if command.kind == "apply" else [],
        "unchanged": [[u.resource, u.reason] for u in host.unchanged],
        # Words of the plan that an answer from the record must repeat.
        "warnings": list(host.warnings),
        "waiting": list(host.waiting),
    }


def _write(path: Path, data: bytes) -> None:
    """Atomic, not durable: a record lost in a crash only costs one full run."""
    from provision import fsutil

    fsutil.commit(fsutil.stage(str(path), data, 0o600, durable=False), str(path), durable=False)


def _prune(folder: Path) -> None:
    records = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    for stale in records[:-MAX_RECORDS]:
        stale.unlink(missing_ok=True)


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
