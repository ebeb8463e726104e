"""One command across the fleet: each selected host worked on by itself, in batches, at most
``--forks`` at once, a host's failure never stopping the others.

For a plan or an apply, per host: under the host's lock (apply), finish what a killed run
left (``finish_interrupted``), read the files the playbook cares about (facts.py), build the
host's plan (plan/builder.py, pure), and for an apply hand it to the executor
(apply/executor.py), then verify the sites that ask. ``verify_all``, ``rollback_all`` and
``list_backups_all`` are the same walk for `provision verify`, `provision rollback` and its
``--list``. The api (api.py) is the way in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TypeVar

from provision import reloads
from provision.apply.batches import batches, should_stop
from provision.apply.executor import (
    HostOutcome,
    RunContext,
    apply_host,
    owed_reloads,
)
from provision.apply.journal import (
    Finished,
    find_leftovers,
    journal_path,
    overlay,
    read_journal,
    remove_found,
    roll_forward,
)
from provision.apply.journal import (
    check as check_journal,
)
from provision.apply.keymaker import KeyMaker
from provision.apply.lock import HostLock
from provision.apply.rollback import list_backups, rollback_plan
from provision.errors import ProvisionError
from provision.facts import HostFacts, gather, merged
from provision.inputs.load import Loaded
from provision.inputs.targets import Target
from provision.layout import BACKUP_DIR
from provision.plan.builder import build_host_plan, dropped_outputs, reloads_owed
from provision.plan.certificate import (
    current_material,
    read_current,
)
from provision.plan.model import Change, HostPlan, Plan
from provision.report.outcome import HostBackups, HostReport, NameCheck, Report
from provision.report.progress import Progress, Silent
from provision.sources.authority_store import create as create_authority
from provision.sources.base import Expected
from provision.transport.base import both, together
from provision.trust import peers, revocation
from provision.trust.rotation import all_stores
from provision.verify import verify_site

T = TypeVar("T")


async def _bounded(limit: int, items: list[T], work: Callable[[T], Awaitable[object]]) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def one(item: T) -> None:
        async with semaphore:
            await work(item)

    await asyncio.gather(*(one(item) for item in items))


async def close_all(loaded: Loaded) -> None:
    """Close every host's connection at once (an SSH close costs round trips)."""
    await asyncio.gather(*(t.transport.close() for t in loaded.targets), return_exceptions=True)


async def plan_and_apply(
    loaded: Loaded,
    *,
    apply: bool,
    now: dt.datetime | None = None,
    saved: Plan | None = None,
    progress: Progress | None = None,
) -> tuple[Plan, Report]:
    """Plan every host and, when ``apply``, apply each host's plan right after reading it.

    With ``saved``, each host's saved plan is applied instead of a fresh one, provided the
    host's facts still have the digest the plan was made from and a fresh plan asks for the
    same changes.
    """
    moment = now or dt.datetime.now(dt.UTC)
    plans: dict[str, HostPlan] = {}
    reports: dict[str, HostReport] = {}
    saved_hosts = {h.host: h for h in saved.hosts} if saved is not None else None
    keymaker = KeyMaker()
    if apply:
        for store in loaded.authorities.values():
            if store.pending:
                create_authority(store, moment)
    ctx = RunContext(moment, keymaker, loaded.passwords, loaded.authorities, folder=loaded.folder)
    # Roots from other hosts of the run, read before any host is planned.
    loaded.peer_roots.update(await peers.collect(loaded, moment))

    async def one(target: Target) -> None:
        started = time.perf_counter()
        name = target.host.name
        lock = None
        try:
            await target.transport.start()  # before any path: an SSH host's home is its own
            lock = HostLock(target.transport, target.certificates_dir) if apply else None
            if lock is not None:
                await lock.acquire(loaded.lock_timeout, moment)
            try:
                await _work_on(target, started)
                if lock is not None and lock.took_over is not None:
                    report = reports[name]
                    note = Change(
                        "lock",
                        "update",
                        f"took over a stale lock left by {lock.took_over.describe()}",
                    )
                    report.plan = replace(report.plan, changes=(note, *report.plan.changes))
            finally:
                if lock is not None:
                    await lock.release()
        except Exception as exc:  # one host's failure, expected or not, never stops the fleet
            message = (
                exc.message
                if isinstance(exc, ProvisionError)
                else f"unexpected {type(exc).__name__}: {exc}"
            )
            plans[name] = HostPlan(name, error=message)
            reports[name] = HostReport(
                name, "failed", plans[name], message, time.perf_counter() - started
            )

    async def _work_on(target: Target, started: float) -> None:
        name = target.host.name
        repair: list[Change] = []
        journal = None
        if apply:
            # Under the lock: finish what a killed run left. The host is read meanwhile (its
            # reads travel with the journal's, a round trip saved) and read again if the
            # repair moved anything.
            finished, facts = await both(
                target.transport, finish_interrupted(target), gather_host(target)
            )
            if finished.moved:
                facts = await gather_host(target)
                repair.append(
                    Change(
                        "journal",
                        "update",
                        "finished a replacement an interrupted run left half done "
                        f"({finished.moved} files)",
                    )
                )
        else:
            facts, journal = await both(
                target.transport,
                gather_host(target),
                read_journal(target.transport, target.certificates_dir),
            )
        if journal is not None:
            where = journal_path(target.certificates_dir, target.paths)
            check_journal(journal, where, target.may_replace, target.paths)
            facts, pending = await overlay(target.transport, journal, facts)
            if pending:
                repair.append(
                    Change(
                        "journal",
                        "update",
                        f"finish a replacement an interrupted run left half done ({pending} files)",
                    )
                )
        if saved_hosts is None:
            host_plan = build_host_plan(loaded, target, facts, moment)
        else:
            host_plan = _saved_host_plan(
                saved_hosts, name, facts, build_host_plan(loaded, target, facts, moment)
            )
        if repair and not apply:
            host_plan = replace(host_plan, changes=(*repair, *host_plan.changes))
        plans[name] = host_plan
        if host_plan.error:
            reports[name] = HostReport(name, "failed", host_plan, host_plan.error)
        elif not apply:
            status = "changed" if host_plan.has_changes else "ok"
            reports[name] = HostReport(name, status, host_plan)
        else:
            outcome = await _apply_one(target, host_plan, facts, ctx, loaded.expected(target))
            changed = outcome.changed or bool(repair)
            status = "failed" if outcome.error else ("changed" if changed else "ok")
            # The report shows the repair done before planning, with what the plan did.
            shown = replace(host_plan, changes=(*repair, *host_plan.changes))
            reports[name] = HostReport(
                name,
                status,
                shown,
                outcome.error,
                backup=outcome.backup,
                wrote=changed,
                reload_owed=outcome.reload_owed,
            )
            if not outcome.error and any(site.verify for site in target.playbook.sites):
                await _verify_into(reports[name], loaded, target, moment)
                await _owe_reload_if_unverified(reports[name], target)
        reports[name].seconds = time.perf_counter() - started

    watcher = progress or Silent()

    async def tracked(target: Target) -> None:
        await one(target)
        watcher.host_done(target.host.name, reports[target.host.name].status)

    book = loaded.targets[0].playbook if loaded.targets else None
    groups = batches(loaded.targets, book.serial) if apply and book else [list(loaded.targets)]
    try:
        for index, batch in enumerate(groups, start=1):
            watcher.batch(index, len(groups), len(batch))
            await _bounded(loaded.forks, batch, tracked)
            failed = sum(1 for t in batch if reports[t.host.name].status == "failed")
            if book and should_stop(failed, len(batch), book.max_fail_percentage):
                _skip_rest(
                    groups[index:], plans, reports, failed, len(batch), book.max_fail_percentage
                )
                break
    finally:
        watcher.close()
        keymaker.close()
        if apply:
            done = {n for n, r in reports.items() if r.status in ("changed", "ok")}
            for store in all_stores(list(loaded.authorities.values())):
                store.save_serial()
                revocation.finish_run(store, done, moment)
        await close_all(loaded)
    order = [t.host.name for t in loaded.targets]
    plan = Plan(loaded.playbook.file, loaded.inventory.sources, tuple(plans[n] for n in order))
    return plan, Report([reports[n] for n in order])


async def finish_interrupted(target: Target) -> Finished:
    """Under the host's lock, before reading anything: finish the replacement a killed run
    left (its journal), and remove what it staged but never used."""
    found, finished = await both(
        target.transport,
        find_leftovers(
            target.transport,
            target.managed_paths(),
            target.paths.join(target.certificates_dir, BACKUP_DIR),
        ),
        roll_forward(target.transport, target.certificates_dir, target.may_replace),
    )
    await remove_found(target.transport, found)
    return finished


async def gather_host(target: Target) -> HostFacts:
    """Everything the plan needs from a host: the playbook's paths, then the outputs an
    earlier apply recorded and the playbook dropped (the state file names them)."""
    # (The certificates directory too: its mode is managed.)
    facts = await gather(target.transport, target.paths_of_interest(), [target.certificates_dir])
    dropped = dropped_outputs(target, facts)
    more = [*dropped.values(), *await trust_files_on_host(target)]
    if more:
        facts = merged(facts, await gather(target.transport, more))
    return facts


async def trust_files_on_host(target: Target) -> list[str]:
    """The root files provision may have written in the host's folder trust stores (the
    ``provision-TRUST-*.crt`` names in each folder), to read with the rest."""
    folders = target.trust_folders()
    if not folders:
        return []
    listings = await together(
        target.transport, [target.transport.list_dir(folder) for _, folder in folders]
    )
    found = []
    for (_, folder), names in zip(folders, listings, strict=True):
        for name in sorted(names):
            path = target.paths.normpath(target.paths.join(folder, name))
            if target.is_trust_file(path):
                found.append(path)
    return found


async def verify_host(
    loaded: Loaded, target: Target, now: dt.datetime, *, every_site: bool = False
) -> list[NameCheck]:
    """Read the host's certificates as they are now and check every site that asks (with
    ``every_site``, as `provision verify` does: every site)."""
    await target.transport.start()
    facts = await gather(target.transport, target.paths_of_interest())
    passwords = loaded.passwords.get(target.host.name, {})
    expected = loaded.expected(target)
    materials = {}
    for certificate in target.playbook.certificates:
        current = read_current(certificate, target.output_paths(certificate), facts, passwords)
        if current.leaf is not None and current.key is not None:
            materials[certificate.name] = current_material(
                certificate, current, expected[certificate.name]
            )
    checks: list[NameCheck] = []
    for site in target.playbook.sites:
        if every_site or site.verify is not None:
            checks.extend(await verify_site(target, site, materials, now))
    return checks


async def _verify_into(
    report: HostReport,
    loaded: Loaded,
    target: Target,
    now: dt.datetime,
    *,
    every_site: bool = False,
) -> None:
    try:
        report.verified = await verify_host(loaded, target, now, every_site=every_site)
    except ProvisionError as exc:
        report.status, report.error = "failed", f"verification: {exc.message}"
        return
    failed = [c for c in report.verified if not c.ok]
    if failed:
        report.status = "failed"
        report.error = "verification failed: " + "; ".join(
            f"{c.name} ({c.address}:{c.port}): {c.problem}" for c in failed
        )


async def _owe_reload_if_unverified(report: HostReport, target: Target) -> None:
    """A site that fails verification after apply is owed a reload: the next run reloads it
    even if its files match (say, after a broken reload command was fixed)."""
    failing = sorted({c.site for c in report.verified if not c.ok})
    sites = [s for s in target.playbook.sites if s.name in failing and s.reload]
    if sites:
        names = [s.name for s in sites]
        previous = reloads.parse((await target.transport.read(target.marker_path)).content)
        marker = reloads.updated(previous, names, owed=names)
        assert marker is not None  # (it names the sites owed)
        await target.transport.write(target.marker_path, marker, 0o644)
        report.reload_owed = owed_reloads(target, sites)


async def verify_all(loaded: Loaded, now: dt.datetime | None = None) -> Report:
    """`provision verify`: every https binding of every site of every host, by every name a
    client may use (provision/coverage.py), or as a site's ``verify:`` narrows it."""
    moment = now or dt.datetime.now(dt.UTC)
    reports: dict[str, HostReport] = {}

    async def one(target: Target) -> None:
        name = target.host.name
        report = HostReport(name, "ok", HostPlan(name))
        await _verify_into(report, loaded, target, moment, every_site=True)
        reports[name] = report

    try:
        await _bounded(loaded.forks, list(loaded.targets), one)
    finally:
        await close_all(loaded)
    return Report([reports[t.host.name] for t in loaded.targets])


async def rollback_all(loaded: Loaded, to: str | None, now: dt.datetime | None = None) -> Report:
    """`provision rollback`: restore each host's files from its backups and reload its sites."""
    from provision.converged.document import forget_all

    forget_all()  # before anything is written: no converged record may outlive a write
    moment = now or dt.datetime.now(dt.UTC)
    reports: dict[str, HostReport] = {}
    keymaker = KeyMaker()
    ctx = RunContext(moment, keymaker, loaded.passwords, loaded.authorities, "rollback")

    async def one(target: Target) -> None:
        name = target.host.name
        try:
            await target.transport.start()
            lock = HostLock(target.transport, target.certificates_dir)
            await lock.acquire(loaded.lock_timeout, moment)
            try:
                finished = await finish_interrupted(target)
                if finished.operation == "rollback":
                    # The interrupted run was this rollback: finishing it is the rollback,
                    # and the reload it may not have done is still owed.
                    facts = await gather_host(target)
                    owed = reloads_owed(target, facts, [])
                    outcome = await _apply_one(
                        target, HostPlan(name, tuple(owed)), facts, ctx, loaded.expected(target)
                    )
                    done = Change(
                        "journal",
                        "update",
                        f"finished an interrupted rollback ({finished.moved} files)",
                    )
                    reports[name] = HostReport(
                        name,
                        "failed" if outcome.error else "changed",
                        HostPlan(name, (done, *owed)),
                        outcome.error,
                        wrote=True,  # the interrupted rollback's files were put in place
                        reload_owed=outcome.reload_owed,
                    )
                    return
                host_plan, paths, undoes = await rollback_plan(target, to)
                facts = await gather(target.transport, [*target.paths_of_interest(), *paths])
                outcome = await _apply_one(
                    target, host_plan, facts, ctx, loaded.expected(target), undoes
                )
            finally:
                await lock.release()
        except ProvisionError as exc:
            reports[name] = HostReport(name, "failed", HostPlan(name), exc.message)
            return
        reports[name] = HostReport(
            name,
            "failed" if outcome.error else "changed",
            host_plan,
            outcome.error,
            backup=outcome.backup,
            wrote=outcome.changed,
            reload_owed=outcome.reload_owed,
        )

    try:
        await _bounded(loaded.forks, list(loaded.targets), one)
    finally:
        keymaker.close()
        await close_all(loaded)
    return Report([reports[t.host.name] for t in loaded.targets])


async def list_backups_all(loaded: Loaded) -> list[HostBackups]:
    """`provision rollback --list`: each host's backups, read without the lock (it writes
    nothing); a host whose backups cannot be read fails alone."""
    found: dict[str, HostBackups] = {}

    async def one(target: Target) -> None:
        name = target.host.name
        try:
            await target.transport.start()
            found[name] = await list_backups(target)
        except ProvisionError as exc:
            found[name] = HostBackups(name, error=exc.message)

    try:
        await _bounded(loaded.forks, list(loaded.targets), one)
    finally:
        await close_all(loaded)
    return [found[t.host.name] for t in loaded.targets]


def _saved_host_plan(
    saved: Mapping[str, HostPlan], name: str, facts: HostFacts, fresh: HostPlan
) -> HostPlan:
    """The reviewed plan for this host, if it is still exactly what the inputs ask."""
    host_plan = saved[name]
    if host_plan.facts_digest != facts.digest():
        raise ProvisionError(
            "refused: the host's files changed since the plan was made (someone edited a "
            "file, or a certificate was renewed meanwhile); nothing was changed here. "
            "Make a new plan."
        )
    # Same inputs and same files must give the same changes. A plan file edited by hand, or
    # one that time overtook (a renewal window opened meanwhile), is refused, not trusted.
    if _substance(host_plan) != _substance(fresh):
        raise ProvisionError(
            "refused: the saved plan's changes are not what the playbook now asks of this "
            "host (was the plan file edited, or did a renewal window open?); nothing was "
            "changed here. Make a new plan."
        )
    return host_plan


def _substance(plan: HostPlan) -> list[tuple[object, ...]]:
    """What the changes do, without the words that describe them (``Change.substance``)."""
    return [c.substance() for c in plan.changes]


def _skip_rest(
    rest: list[list[Target]],
    plans: dict[str, HostPlan],
    reports: dict[str, HostReport],
    failed: int,
    size: int,
    limit: float | None,
) -> None:
    why = (
        f"the previous batch had {failed} of {size} hosts failed, more than "
        f"max_fail_percentage {limit:g}%"
    )
    for batch in rest:
        for target in batch:
            name = target.host.name
            plans[name] = HostPlan(name)
            reports[name] = HostReport(name, "skipped", plans[name], why)


async def _apply_one(
    target: Target,
    plan: HostPlan,
    facts: HostFacts,
    ctx: RunContext,
    expected: Mapping[str, Expected],
    undoes: tuple[str, ...] = (),
) -> HostOutcome:
    try:
        return await apply_host(target, plan, facts, ctx, expected, undoes)
    except ProvisionError as exc:
        return HostOutcome(target.host.name, changed=False, error=exc.message)
