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
from provision.plan.model import HostPlan, Unchanged
from provision.report.outcome import HostReport, Report
from provision.report.progress import Progress


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
    for named in (command.playbook, command.inventory):  # a record of some other run
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
    if not all(os.access(folder, os.W_OK) for folder in host["writable"]):
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


def replay_progress(hit: Hit, progress: Progress) -> None:
    """Tell the progress display what a full run would have told it."""
    hosts = iter(hit.report.hosts)
    for index, size in enumerate(hit.batches, start=1):
        progress.batch(index, len(hit.batches), size)
        for host in itertools.islice(hosts, size):
            progress.host_done(host.host, host.status)
    progress.close()
