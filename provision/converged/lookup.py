"""The check before a run: the recorded empty plan, if every digest still matches.

This is the whole of an idle run answered from its record: read the record, compare the code,
the inputs and each host file's stamp, and build the report a full run would print."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from provision.converged.document import FORMAT, Command, record_path
from provision.converged.stamps import code_digest, inputs_digest, stamp
from provision.errors import TransportError
from provision.layout import LOCK_FILE, lock_content
from provision.plan.model import HostPlan, Unchanged
from provision.report.outcome import HostReport, Report
from provision.report.progress import Progress
from provision.transport import nofollow


@dataclass(frozen=True)
class Hit:
    report: Report
    batches: list[int]


def lookup(command: Command, now: dt.datetime | None = None) -> Hit | None:
    """The recorded empty plan, if every digest still matches; None means "run in full"."""
    try:
        document = json.loads(record_path(command).read_bytes())
        return _check(document, command, now or dt.datetime.now(dt.UTC))
    except Exception:  # whatever is wrong with a record (or a file), the full run answers
        return None


def _check(document: dict[str, Any], command: Command, now: dt.datetime) -> Hit | None:
    if document.get("format") != FORMAT or not document["hosts"]:
        return None
    recorded = dt.datetime.fromisoformat(document["recorded"])
    until = document["until"]
    if now < recorded or (until is not None and now >= dt.datetime.fromisoformat(until)):
        return None  # the clock moved past a decision (or backwards): decide again
    if document["code"] != code_digest():
        return None
    inputs = document["inputs"]
    for named in (command.playbook, *command.inventory):  # a record of some other run
        if f"file:{os.path.abspath(named)}" not in inputs["entries"]:
            return None
    if inputs_digest(inputs["entries"]) != inputs["digest"]:
        return None
    reports = []
    for host in document["hosts"]:
        report = _check_host(host)
        if report is None:
            return None
        reports.append(report)
    return Hit(Report(reports), list(document["batches"]))


def _check_host(host: dict[str, Any]) -> HostReport | None:
    started = time.perf_counter()
    if any(os.path.lexists(path) for path in host["absent"]):
        return None
    if not all(_lock_taken(folder) for folder in host["writable"]):
        return None
    if any(stamp(path) != recorded for path, recorded in host["files"]):
        return None
    unchanged = tuple(Unchanged(resource, reason) for resource, reason in host["unchanged"])
    plan = HostPlan(
        host["name"],
        unchanged=unchanged,
        waiting=tuple(host["waiting"]),
        warnings=tuple(host["warnings"]),
        read_paths=tuple(path for path, _ in host["files"]),
    )
    return HostReport(host["name"], "ok", plan, seconds=time.perf_counter() - started)


def _lock_taken(folder: str) -> bool:
    """Whether this run can take the host's lock, proven by taking it (and releasing it at
    once): a full apply takes it even when nothing changes, and fails the host when it cannot
    (a folder made read-only, a full disk, a lock held), so neither may the record say "ok".
    """
    lock = os.path.join(folder, LOCK_FILE)
    try:
        with nofollow.folder(folder) as at:
            if at is None:
                return False
            name = os.path.basename(lock)
            fd = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=at
            )
            try:
                content = lock_content(dt.datetime.now(dt.UTC))
                written = os.write(fd, content)
            finally:
                os.close(fd)
                os.unlink(name, dir_fd=at)
            return written == len(content)
    except (OSError, TransportError):
        return False


def replay_progress(hit: Hit, progress: Progress) -> None:
    """Tell the progress display what a full run would have told it."""
    hosts = iter(hit.report.hosts)
    for index, size in enumerate(hit.batches, start=1):
        progress.batch(index, len(hit.batches), size)
        for host in itertools.islice(hosts, size):
            progress.host_done(host.host, host.status)
    progress.close()
