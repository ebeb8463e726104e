"""The api's entry points for a plan or an apply of a playbook, as the CLI runs them: answered
from the converged record when it still holds (provision/converged/), else loaded and run in
full by ``provision.api``, and recorded when the fleet was found converged.

Light to import, unlike ``provision.api``: a run answered from its record never loads
cryptography, jinja2 or pydantic, so the api (and everything heavy) is imported only when the
run is evaluated in full. Errors are ``ProvisionError``; the caller words them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from provision.converged import document, lookup

if TYPE_CHECKING:
    from provision.inputs.load import Loaded
    from provision.plan.model import Plan
    from provision.report.outcome import Report
    from provision.report.progress import Progress
    from provision.transport.factory import ConnectOptions

# Makes the progress display for a run of N hosts (a terminal's, or none).
ProgressFactory = Callable[[int], "Progress"]
# Makes the options for reaching hosts, only when a run is evaluated in full: ConnectOptions
# lives beside the transports, whose imports a run answered from its record does without.
ConnectFactory = Callable[[], "ConnectOptions"]


@dataclass(frozen=True)
class Outcome:
    """What a run found (and did). ``plan`` and ``loaded`` are None when the converged record
    answered: the plan was empty, and nothing was loaded."""

    report: Report
    plan: Plan | None = None
    loaded: Loaded | None = None

    @property
    def has_changes(self) -> bool:
        return self.plan is not None and self.plan.has_changes


def plan_playbook(
    playbook: str,
    inventory: str | Sequence[str],
    limit: str | None = None,
    *,
    forks: int = 20,
    connect: ConnectFactory | None = None,
    full: bool = False,
    vault: Sequence[tuple[str, str]] = (),
) -> Outcome:
    """What apply would change on each host; writes nothing to any host. ``full`` evaluates
    every host even when the record of the last converged plan still holds."""
    return _run(
        document.Command("plan", playbook, _sources(inventory), limit),
        apply=False,
        full=full,
        forks=forks,
        connect=connect,
        vault=vault,
    )


def apply_playbook(
    playbook: str,
    inventory: str | Sequence[str],
    limit: str | None = None,
    *,
    check: bool = False,
    forks: int = 20,
    connect: ConnectFactory | None = None,
    lock_timeout: float = 30.0,
    full: bool = False,
    progress: ProgressFactory | None = None,
    vault: Sequence[tuple[str, str]] = (),
) -> Outcome:
    """Make each host match the playbook (``check``: only plan, as ``plan_playbook``)."""
    return _run(
        document.Command("plan" if check else "apply", playbook, _sources(inventory), limit),
        apply=not check,
        full=full,
        forks=forks,
        connect=connect,
        lock_timeout=lock_timeout,
        progress=progress,
        vault=vault,
    )


def apply_saved_plan(
    path: str,
    *,
    check: bool = False,
    forks: int = 20,
    connect: ConnectFactory | None = None,
    lock_timeout: float = 30.0,
    progress: ProgressFactory | None = None,
    vault: Sequence[tuple[str, str]] = (),
) -> Outcome:
    """Apply exactly a plan saved by ``plan --out`` (refused where its inputs or a host's
    files changed since; ``check``: only compare). Never answered from a record, nor recorded."""
    from provision import api

    loaded, saved = api.load_saved(
        path,
        forks=forks,
        connect=connect() if connect else None,
        lock_timeout=lock_timeout,
        vault=vault,
    )
    shown = progress(len(loaded.targets)) if progress is not None and not check else None
    if not check:
        document.forget_all()  # before anything is written (see document.forget_all)
    plan, report = api.run(loaded, apply=not check, saved=saved.plan, progress=shown)
    return Outcome(report, plan, loaded)


def _sources(inventory: str | Sequence[str]) -> tuple[str, ...]:
    # (as inputs.load.inventory_sources, without importing the loader: a run answered from
    # its record imports nothing heavy)
    return (inventory,) if isinstance(inventory, str) else tuple(inventory)


def _run(
    command: document.Command,
    *,
    apply: bool,
    full: bool,
    forks: int,
    connect: ConnectFactory | None,
    lock_timeout: float = 30.0,
    progress: ProgressFactory | None = None,
    vault: Sequence[tuple[str, str]] = (),
) -> Outcome:
    started_ns = time.time_ns()
    hit = None if full else lookup.lookup(command)
    if hit is not None:
        if apply and progress is not None:
            lookup.replay_progress(hit, progress(len(hit.report.hosts)))
        return Outcome(hit.report)

    from provision import api

    loaded = api.load(
        command.playbook,
        command.inventory,
        command.limit,
        forks=forks,
        connect=connect() if connect else None,
        lock_timeout=lock_timeout,
        vault=vault,
    )
    shown = progress(len(loaded.targets)) if apply and progress is not None else None
    if apply:
        document.forget_all()  # before anything is written (see document.forget_all)
    moment = dt.datetime.now(dt.UTC)
    plan, report = api.run(loaded, apply=apply, progress=shown, now=moment)
    document.record(loaded, plan, report, command, moment, started_ns)
    return Outcome(report, plan, loaded)
