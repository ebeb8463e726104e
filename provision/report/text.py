"""Turn plans and run reports into text and JSON for people and for CI.

Output is deterministic: hosts in inventory order, changes in plan order, no timestamps.
Nothing here ever sees key material: plans carry none.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from provision.plan.model import Change
from provision.report.outcome import BackupSummary, HostBackups, HostReport, OwedReload, Report

_WIDTH = 34


def _change_line(change: Change) -> str:
    return f"  {change.action:<8} {change.resource:<{_WIDTH}} {change.reason}"


def plan_text(report: Report, *, diffs: bool = True) -> str:
    lines: list[str] = []
    for host in report.hosts:
        plan = host.plan
        if host.status == "failed":
            lines.append(f"{host.host}: FAILED: {host.error}")
            continue
        count = len(plan.changes)
        lines.append(
            f"{host.host}: {count} change{'s' if count != 1 else ''}"
            if count
            else f"{host.host}: no changes"
        )
        for change in plan.changes:
            lines.append(_change_line(change))
            if change.before:
                lines.append(
                    f"           was: {change.before['sha256'][:16]}… "
                    f"{change.before['names']} (until {change.before['not_after']})"
                )
            if diffs and change.diff:
                lines.extend("      " + line for line in change.diff.rstrip("\n").split("\n"))
        for item in plan.unchanged:
            lines.append(f"  {'ok':<8} {item.resource:<{_WIDTH}} {item.reason}")
        lines.extend(_warning_lines(host))
    changed = sum(1 for h in report.hosts if h.plan.has_changes and h.status != "failed")
    lines.append("")
    hosts = len(report.hosts)
    lines.append(
        f"Plan: {hosts} host{'s' if hosts != 1 else ''}, {changed} to change, "
        f"{report.count('failed')} failed{_warnings_count(report)}."
    )
    return "\n".join(lines) + "\n"


def _warning_lines(host: HostReport) -> list[str]:
    return [f"  {'warning':<8} {warning}" for warning in host.plan.warnings]


def _warnings_count(report: Report) -> str:
    count = sum(len(h.plan.warnings) for h in report.hosts if h.status != "failed")
    return f", {count} warning{'s' if count != 1 else ''}" if count else ""


def _owed_line(owed: OwedReload) -> str:
    command = f"`{owed.command}`" if owed.command else "(no reload command)"
    return f"  {'owed':<8} {'site ' + owed.site:<{_WIDTH}} reload {command}: the next apply runs it"


def recap_text(report: Report) -> str:
    lines: list[str] = []
    for host in report.hosts:
        if host.status in ("failed", "skipped"):
            # A host that failed after it was changed says both: what it wrote stands.
            status = f"changed, {host.status}" if host.changed else host.status
            lines.append(f"{host.host}: {status}: {host.error}")
        else:
            lines.append(f"{host.host}: {host.status}")
        if host.changed:
            for change in host.plan.changes:
                lines.append(_change_line(change))
        lines.extend(_owed_line(owed) for owed in host.reload_owed)
        if host.status not in ("failed", "skipped"):
            for check in host.verified:
                lines.append(f"  verified {check.name} on {check.address}:{check.port}")
            lines.extend(_warning_lines(host))
    lines.append("")
    skipped = report.count("skipped")
    lines.append(
        f"Recap: ok {report.count('ok')}, changed {report.count('changed')}, "
        f"failed {report.count('failed')}"
        + (f", skipped {skipped}" if skipped else "")
        + _warnings_count(report)
    )
    return "\n".join(lines) + "\n"


def verify_text(report: Report) -> str:
    lines = []
    idle = 0
    for host in report.hosts:
        for check in host.verified:
            state = "ok" if check.ok else f"FAILED: {check.problem}"
            lines.append(
                f"{host.host}: {check.site}: {check.name} ({check.address}:{check.port}) {state}"
            )
        if host.error and not host.verified:
            lines.append(f"{host.host}: failed: {host.error}")
        elif host.status == "ok" and not host.verified:
            idle += 1
            lines.append(f"{host.host}: nothing to verify (no https binding)")
    lines.append("")
    nothing = f", {idle} with nothing to verify" if idle else ""
    lines.append(
        f"Verified: {report.count('ok') - idle} hosts ok, {report.count('failed')} failed{nothing}"
    )
    return "\n".join(lines) + "\n"


def _host_json(host: HostReport) -> dict[str, Any]:
    data: dict[str, Any] = {
        "status": host.status,
        "changes": [
            {
                "resource": c.resource,
                "action": c.action,
                "reason": c.reason,
                **({"path": c.path} if c.path else {}),
                **({"before": c.before} if c.before else {}),
            }
            for c in host.plan.changes
        ],
        "unchanged": [{"resource": u.resource, "reason": u.reason} for u in host.plan.unchanged],
        "seconds": round(host.seconds, 4),
    }
    data["changed"] = host.changed  # with status "failed" too: what it wrote stands
    if host.error:
        data["error"] = host.error
    if host.plan.warnings:
        data["warnings"] = list(host.plan.warnings)
    if host.plan.waiting:
        data["waiting"] = list(host.plan.waiting)
    if host.superseded:
        data["superseded"] = [
            {"authority": authority, "serial": f"{serial:x}"}
            for authority, serial in host.superseded
        ]
    if host.reload_owed:
        data["reload_owed"] = [{"site": o.site, "command": o.command} for o in host.reload_owed]
    if host.verified:
        data["verified"] = [
            {
                "site": c.site,
                "name": c.name,
                "address": c.address,
                "port": c.port,
                "ok": c.ok,
                **({"problem": c.problem} if c.problem else {}),
            }
            for c in host.verified
        ]
    return data


def report_json(report: Report, envelope: Mapping[str, Any] | None = None) -> str:
    """The JSON result; ``envelope`` (provision/report/envelope.py) leads it when given."""
    document = {
        **(envelope or {}),
        "summary": {
            "ok": report.count("ok"),
            "changed": report.count("changed"),
            "failed": report.count("failed"),
            "skipped": report.count("skipped"),
        },
        "hosts": {host.host: _host_json(host) for host in report.hosts},
    }
    return json.dumps(document, indent=2) + "\n"


def _when(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _backup_lines(backup: BackupSummary) -> list[str]:
    taken = f"taken by {backup.operation}"
    if backup.undoes:
        taken += f", undid {', '.join(backup.undoes)}"
    if backup.undone_by:
        taken += f"; undone by the rollback {backup.undone_by}"
    if backup.always_kept:
        taken += "; the oldest, always kept"
    lines = [f"  {backup.name}  {_when(backup.time)}  {taken}"]
    lines += [f"      restores {path}" for path in backup.restores]
    lines += [f"      removes  {path}" for path in backup.removes]
    return lines


def backups_text(hosts: list[HostBackups]) -> str:
    """`rollback --list`: each host's backups, oldest first, with the full path of every file
    undoing one restores or removes, and what a rollback without --to undoes next."""
    lines: list[str] = []
    for host in hosts:
        if host.error is not None:
            lines.append(f"{host.host}: failed: {host.error}")
            continue
        if not host.backups:
            lines.append(f"{host.host}: no backups")
            continue
        count = len(host.backups)
        lines.append(f"{host.host}: {count} backup{'s' if count != 1 else ''}")
        for backup in host.backups:
            lines.extend(_backup_lines(backup))
        following = next((b for b in host.backups if b.name == host.next), None)
        if following is None:
            lines.append("  next rollback: nothing more to roll back")
        else:
            lines.append(
                f"  next rollback undoes {following.name} "
                f"(the {following.operation} of {_when(following.time)})"
            )
    return "\n".join(lines) + "\n"


def backups_json(hosts: list[HostBackups]) -> str:
    document: dict[str, Any] = {"hosts": {}}
    for host in hosts:
        if host.error is not None:
            document["hosts"][host.host] = {"error": host.error}
            continue
        document["hosts"][host.host] = {
            "backups": [
                {
                    "name": b.name,
                    "time": b.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "folder": b.folder,
                    "operation": b.operation,
                    "restores": list(b.restores),
                    "removes": list(b.removes),
                    "undoes": list(b.undoes),
                    "undone_by": b.undone_by,
                    "always_kept": b.always_kept,
                }
                for b in host.backups
            ],
            "next": host.next,
        }
    return json.dumps(document, indent=2) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def plan_markdown(report: Report) -> str:
    """The plan as a Markdown document for a pull-request comment."""
    lines = ["# provision plan", ""]
    lines += ["| host | status | changes |", "|---|---|---|"]
    for host in report.hosts:
        status = (
            "failed"
            if host.status == "failed"
            else ("changes" if host.plan.has_changes else "no changes")
        )
        lines.append(f"| {_cell(host.host)} | {status} | {len(host.plan.changes)} |")
    changed = sum(1 for h in report.hosts if h.plan.has_changes and h.status != "failed")
    lines += [
        "",
        f"**{len(report.hosts)} hosts, {changed} to change, {report.count('failed')} failed.**",
        "",
    ]
    for host in report.hosts:
        lines += [f"## {host.host}", ""]
        if host.status == "failed":
            lines += [f"**Failed:** {host.error}", ""]
            continue
        if host.plan.warnings:
            lines += [*(f"- **Warning:** {_cell(w)}" for w in host.plan.warnings), ""]
        if not host.plan.changes:
            lines += ["No changes.", ""]
            continue
        lines += ["| action | resource | reason |", "|---|---|---|"]
        for change in host.plan.changes:
            lines.append(f"| {change.action} | {_cell(change.resource)} | {_cell(change.reason)} |")
        lines.append("")
        for change in host.plan.changes:
            if change.before:
                b = change.before
                lines += [
                    f"**{change.resource}** was `{b['sha256'][:16]}…`, "
                    f"issued by {b['issuer']}, names {b['names']}, "
                    f"until {b['not_after']}.",
                    "",
                ]
            if change.diff:
                lines += [
                    f"<details><summary>{change.resource}: diff</summary>",
                    "",
                    "```diff",
                    change.diff.rstrip("\n"),
                    "```",
                    "",
                    "</details>",
                    "",
                ]
    return "\n".join(lines).rstrip("\n") + "\n"
