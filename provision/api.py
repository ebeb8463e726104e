"""The public entry points. The CLI, the tests and the benchmarks call these; everything
else is reached through them.

    loaded = load("playbooks/site.yml", "inventory/example.yml", limit="cm-pub-*")
    plan, report = run(loaded, apply=False)   # reads each host, writes nothing
    plan, report = run(loaded, apply=True)    # makes each host match the playbook
    report = asyncio.run(verify_all(loaded))  # TLS to every name of every site
    report = asyncio.run(rollback_all(loaded, to=None))  # undo the newest apply not undone
    hosts = asyncio.run(list_backups_all(loaded))  # each host's backups (rollback --list)
    render_all(loaded, "out/")                # site files made on the controller alone

``provision.runs`` wraps ``load`` and ``run`` with the converged record for the CLI's plan and
apply; ``provision.fleet`` does the walk across hosts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from provision.fleet import (
    close_all,
    finish_interrupted,
    list_backups_all,
    plan_and_apply,
    rollback_all,
    verify_all,
)
from provision.inputs.load import (
    Loaded,
    check_saved,
    controller_digest,
    load,
    load_saved,
    save_plan,
)
from provision.plan.model import Plan
from provision.report.outcome import HostReport, Report
from provision.report.progress import Progress

if TYPE_CHECKING:
    from provision.servers.offline import Rendered


def render_all(loaded: Loaded, out: str | Path) -> list[Rendered]:
    """`provision render`: every selected host's site files under ``out/HOST/``, made on the
    controller alone (no host is reached, no certificate or key is made)."""
    from provision.servers.offline import render_targets

    return render_targets(
        loaded.targets, loaded.renderer, Path(loaded.playbook.file).name, Path(out)
    )


def run(
    loaded: Loaded,
    *,
    apply: bool,
    now: dt.datetime | None = None,
    saved: Plan | None = None,
    progress: Progress | None = None,
) -> tuple[Plan, Report]:
    return asyncio.run(plan_and_apply(loaded, apply=apply, now=now, saved=saved, progress=progress))


__all__ = [
    "HostReport",
    "Loaded",
    "Report",
    "check_saved",
    "close_all",
    "controller_digest",
    "finish_interrupted",
    "list_backups_all",
    "load",
    "load_saved",
    "plan_and_apply",
    "render_all",
    "rollback_all",
    "run",
    "save_plan",
    "verify_all",
]
