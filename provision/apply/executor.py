"""The only code that writes to hosts.

For one host: issue what the plan says to issue, derive every output's bytes, back up what
will be replaced, stage every new file beside its target, then rename them into place (keys
first, so a certificate never sits beside a key it does not match for longer than one rename),
then test and reload the sites that use what changed. If the server rejects the new config,
the host's previous files are restored and the host is reported failed with the server's words.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from provision import reloads
from provision.apply import backups
from provision.apply.challenges import HostChallengeFiles, wait_served
from provision.apply.journal import Journal, journal_path
from provision.apply.keymaker import KeyMaker
from provision.errors import ProvisionError
from provision.facts import HostFacts
from provision.inputs.targets import Target
from provision.model.playbook import Certificate, Site
from provision.plan import state
from provision.plan.certificate import current_material, read_current
from provision.plan.material import Material, output_bytes
from provision.plan.model import Change, HostPlan
from provision.reloads import CANNOT_RUN
from provision.report.outcome import OwedReload
from provision.servers.challenge import challenge_endpoints, challenge_folder
from provision.servers.commands import site_commands
from provision.sources.authority_store import AuthorityStore
from provision.sources.base import Expected, IssueRequest
from provision.sources.registry import source_of
from provision.transport.base import CommandResult, FileState
from provision.trust import record as trust_record
from provision.trust.stores import (
    DEFAULT_JAVA_PASSWORD,
    JAVA_TRUSTSTORE,
    java_truststore,
    password_key,
)


class ApplyError(ProvisionError):
    pass


T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class RunContext:
    now: dt.datetime
    keys: KeyMaker
    passwords: Mapping[str, Mapping[str, bytes]]  # host -> output file -> password
    authorities: Mapping[str, AuthorityStore]
    operation: backups.Operation = "apply"  # recorded in the journal and the backup
    folder: Path = Path()  # the playbook's folder on the controller (an ACME account's home)


def _state_content(target: Target, facts: HostFacts) -> bytes:
    """The outputs this playbook writes, so a later run can remove the ones it drops (other
    owners' entries kept as they are)."""
    current = state.parse(facts.file(target.state_path).content, target.state_path)
    return state.dumps(current, target.playbook)


@dataclass
class _Write:
    change: Change
    path: str
    data: bytes
    mode: int
    staged: str | None = None


@dataclass
class HostOutcome:
    host: str
    # Whether the run leaves the host changed: files replaced or a reload done (not once a
    # refused config test put the files back). With ``error`` too, what was written stays
    # written (a reload that failed, say), and ``reload_owed`` names the reloads still owed.
    changed: bool
    error: str | None = None
    backup: str | None = None
    reload_owed: tuple[OwedReload, ...] = ()


async def apply_host(
    target: Target,
    plan: HostPlan,
    facts: HostFacts,
    ctx: RunContext,
    expected: Mapping[str, Expected],
    undoes: Sequence[str] = (),
) -> HostOutcome:
    """Apply ``plan`` to the host; a rollback passes the backups it undoes (``undoes``), which
    its own backup records so that the next rollback goes one further back."""
    if not plan.changes:
        return HostOutcome(target.host.name, changed=False)
    passwords = ctx.passwords.get(target.host.name, {})
    first = None
    if any(c.first is not None for c in plan.changes):
        served = await _serve_challenges_first(target, plan, facts, ctx, expected)
        if isinstance(served, HostOutcome):
            return served
        first = served
    try:
        materials = await _issue(target, plan, facts, ctx, passwords, expected)
    except ProvisionError as exc:
        if first is None:
            raise
        # The sites were rewritten and reloaded to serve the challenge: that stays.
        return HostOutcome(target.host.name, changed=True, error=exc.message, backup=first or None)
    folder = target.certificates_dir
    writes = [
        _write_for(change, target, materials, facts, passwords, expected)
        for change in plan.changes
        if change.path not in (None, folder) and change.action != "delete"
    ]
    deletions = [c for c in plan.changes if c.action == "delete" and c.path is not None]
    state_path = target.state_path
    if facts.file(state_path).content != (state_content := _state_content(target, facts)):
        writes.append(
            _Write(
                Change("state", "update", "outputs written", path=state_path),
                state_path,
                state_content,
                0o644,
            )
        )
    writes.sort(key=_commit_order(target))
    transport = target.transport
    await _stage_all(target, writes)
    for change in plan.changes:
        if change.path == folder and change.mode is not None:
            # (After staging, which makes the folder when it is missing.)
            await transport.set_folder_mode(folder, change.mode)
    removed = [_Write(c, c.path, b"", 0) for c in deletions if c.path is not None]
    backup = await backups.take(
        target, facts, [w.path for w in [*writes, *removed]], ctx.now, ctx.operation, undoes
    )
    reload_sites = [s for s in _sites_touched(target, plan.changes) if s.reload]
    if reload_sites:
        names = [s.name for s in reload_sites]
        marker = reloads.updated(_marker(target, facts), names, owed=names)
        assert marker is not None  # (it names the sites owed)
        await transport.write(target.marker_path, marker, 0o644, durable=False)
    committed: list[_Write] = []
    if writes or removed:
        committed = await _commit_journaled(target, facts, writes, removed, ctx.operation, backup)
    else:
        # Nothing to replace (a reload owed, say): no journal needed.
        await transport.flush()
    outcome = HostOutcome(target.host.name, changed=True, backup=backup)
    try:
        await _test_and_reload(target, plan, facts, committed, outcome)
    except ProvisionError as exc:
        # The host stopped answering (say) after the files were replaced: they stay, and so
        # does the marker, so the sites are owed their reload.
        outcome.changed = bool(committed)
        outcome.error = f"{exc.message} (reload owed)"
        outcome.reload_owed = owed_reloads(target, reload_sites)
    if not outcome.changed and backup is not None:
        await backups.discard(target, backup)  # everything is as it was: nothing to undo
        outcome.backup = None
    elif backup is not None:
        # Only once the files stay: a run that put everything back evicts no older backup.
        await backups.prune(target)
    return outcome


async def _serve_challenges_first(
    target: Target,
    plan: HostPlan,
    facts: HostFacts,
    ctx: RunContext,
    expected: Mapping[str, Expected],
) -> HostOutcome | str:
    """Write and reload the site files the plan wants in place before an HTTP-01 order
    (``Change.first``): the backup folder taken (or ""), or the host's failed outcome, with
    the files put back when the server's config test refused them."""
    firsts = [c for c in plan.changes if c.first is not None and c.path is not None]
    files = [(c.path or "", c.first or b"", c.mode or 0o644) for c in firsts]
    backup = await write_files(target, facts, files, ctx.now, ctx.operation)
    names = {c.site for c in firsts}
    sites = [s for s in target.playbook.sites if s.name in names and s.reload]
    tests: dict[str, None] = {}
    reload_commands: dict[str, None] = {}
    for site in sites:
        test, reload = site_commands(target, site)
        if test:
            tests[test] = None
        if reload:
            reload_commands[reload] = None
    results = await target.transport.run_steps([*tests, *reload_commands])
    failed = next((r for r in results if not r.ok), None)
    if failed is None:
        for site in sites:
            # A reload by signal returns before the new config is live: wait (bounded) until
            # the site answers a probe as the CA will be answered.
            endpoints = challenge_endpoints(target, site)
            for certificate in dict.fromkeys(e[3] for e in endpoints):
                thumbprint = expected[certificate].http01_thumbprint or ""
                chosen = [e[:3] for e in endpoints if e[3] == certificate]
                await wait_served(
                    target.transport,
                    challenge_folder(target),
                    chosen,
                    thumbprint,
                    _folder_mode(target, plan),
                )
        return backup or ""
    # A refused test or a failed reload: the previous files go back, so that the next run
    # writes and reloads them first again (the server still runs the previous config).
    written = [_Write(c, c.path or "", c.first or b"", c.mode or 0o644) for c in firsts]
    await _restore(target, facts, written)
    if backup is not None:
        await backups.discard(target, backup)
    step = "config test" if len(results) <= len(tests) else "reload"
    return HostOutcome(
        target.host.name,
        changed=False,
        error=(
            f"{step} `{failed.command}` failed for the site that must serve the http-01 "
            f"challenge first; previous files restored, nothing ordered: {failed.output}"
        ),
    )


async def _commit_journaled(
    target: Target,
    facts: HostFacts,
    writes: list[_Write],
    removed: list[_Write],
    operation: str,
    backup: str | None,
) -> list[_Write]:
    """Rename every staged file into place and remove the files to go, under a journal: a run
    killed among the renames is finished by the next one. On a failure, what was done is
    undone from ``facts`` (the files as they were), the backup taken for it discarded (it
    records nothing that happened), and the error raised."""
    transport = target.transport
    journal = Journal(
        tuple((w.staged or "", w.path) for w in writes),
        tuple(w.path for w in removed),
        operation,
    )
    await transport.write(
        journal_path(target.certificates_dir, target.paths), journal.dumps(), 0o600, durable=False
    )
    # Durability point 1: backups, marker and journal are on disk before anything is
    # replaced. The renames need no fsync each: until point 2 the journal can redo them.
    await transport.flush()
    committed: list[_Write] = []
    try:
        # All asked for at once, in this order (a transport keeps the order of the renames
        # it is asked for together: keys first), and none durable one by one.
        await _each(
            target,
            [*writes, *removed],
            lambda write: (
                transport.commit(write.staged, write.path, durable=False)
                if write.staged is not None
                else transport.remove(write.path, durable=False)
            ),
            committed,
        )
        # Durability point 2: every rename is on disk before the journal goes.
        await transport.flush()
    except ProvisionError:
        await _discard([w for w in writes if w not in committed], target)
        await _restore(target, facts, committed)
        await transport.remove(journal_path(target.certificates_dir, target.paths))
        if backup is not None:
            await backups.discard(target, backup)
        raise
    await transport.remove(journal_path(target.certificates_dir, target.paths), durable=False)
    return committed


async def write_files(
    target: Target,
    facts: HostFacts,
    files: Sequence[tuple[str, bytes, int]],
    now: dt.datetime,
    operation: backups.Operation,
) -> str | None:
    """Write files that no plan describes (a key `provision csr` makes) by the same path as
    apply: staged complete, what they replace backed up, renamed under the journal. The caller
    holds the host's lock. Returns the backup folder, if anything was replaced."""
    writes = [
        _Write(Change(f"file {path}", "update", operation, path=path), path, data, mode)
        for path, data, mode in files
    ]
    await _stage_all(target, writes)
    backup = await backups.take(target, facts, [w.path for w in writes], now, operation)
    await _commit_journaled(target, facts, writes, [], operation, backup)
    if backup is not None:
        await backups.prune(target)
    return backup


async def _stage_all(target: Target, writes: Sequence[_Write]) -> None:
    """Stage every write (at once where the transport is pipelined)."""
    await _each(
        target,
        writes,
        lambda write: target.transport.stage(write.path, write.data, write.mode),
        [],
        lambda write, staged: setattr(write, "staged", staged),
    )


async def _each(
    target: Target,
    items: Sequence[T],
    step: Callable[[T], Awaitable[R]],
    done: list[T],
    keep: Callable[[T, R], object] | None = None,
) -> None:
    """``step`` for every item, all at once where the transport is pipelined (their requests
    travel together), else one after the other until one fails; ``done`` lists the items
    whose step succeeded, in order, and each result is given to ``keep``. The first failure
    is raised once no step is left running."""
    failure: BaseException | None = None
    if target.transport.pipelined:
        results = await asyncio.gather(*(step(item) for item in items), return_exceptions=True)
    else:
        results = []
        for item in items:
            try:
                results.append(await step(item))
            except BaseException as exc:
                results.append(exc)
                break
    for item, result in zip(items, results, strict=False):
        if isinstance(result, BaseException):
            failure = failure or result
            continue
        done.append(item)
        if keep is not None:
            keep(item, result)
    if failure is not None:
        raise failure


async def _issue(
    target: Target,
    plan: HostPlan,
    facts: HostFacts,
    ctx: RunContext,
    passwords: Mapping[str, bytes],
    expected: Mapping[str, Expected],
) -> dict[str, Material]:
    materials: dict[str, Material] = {}
    folder_mode = _folder_mode(target, plan)
    for change in plan.changes:
        if change.issue is None:
            continue
        spec = target.playbook.certificate(change.issue.certificate)
        current = read_current(spec, target.output_paths(spec), facts, passwords)
        request = IssueRequest(
            spec,
            current,
            change.issue.new_key,
            expected[spec.name],
            ctx.now,
            ctx.keys.generate,
            ctx.authorities,
            target.host.name,
            ctx.folder,
            HostChallengeFiles(target.transport, challenge_folder(target), folder_mode),
        )
        materials[spec.name] = await source_of(spec).issue(request)
    return materials


def _folder_mode(target: Target, plan: HostPlan) -> int | None:
    """The mode the plan gives the certificates directory, if it changes it."""
    folder = target.certificates_dir
    return next((c.mode for c in plan.changes if c.path == folder and c.mode), None)


def _write_for(
    change: Change,
    target: Target,
    materials: Mapping[str, Material],
    facts: HostFacts,
    passwords: Mapping[str, bytes],
    expected: Mapping[str, Expected],
) -> _Write:
    assert change.path is not None and change.mode is not None
    if change.content is not None and change.encoding == JAVA_TRUSTSTORE:
        password = passwords.get(password_key(change.path), DEFAULT_JAVA_PASSWORD)
        data = java_truststore(change.content, password)
        return _Write(change, change.path, data, change.mode)
    if change.content is not None:
        return _Write(change, change.path, change.content, change.mode)
    assert change.derived is not None
    spec = target.playbook.certificate(change.derived.certificate)
    output = spec.outputs[change.derived.output]
    material = materials.get(spec.name) or _material_on_host(
        target, spec, facts, passwords, expected[spec.name]
    )
    return _Write(change, change.path, output_bytes(output, material, passwords), change.mode)


def _material_on_host(
    target: Target,
    spec: Certificate,
    facts: HostFacts,
    passwords: Mapping[str, bytes],
    expected: Expected,
) -> Material:
    current = read_current(spec, target.output_paths(spec), facts, passwords)
    if current.leaf is None or current.key is None:
        raise ApplyError(f"certificate {spec.name}: the host's files changed since the plan")
    return current_material(spec, current, expected)


def _commit_order(target: Target) -> Callable[[_Write], tuple[int, str]]:
    """Keys first, then the PEM files a server reads beside them, then every other encoding,
    then the configs that point at them: a web server can only find its certificate beside a
    key it does not match between two consecutive renames."""

    def rank(write: _Write) -> tuple[int, str]:
        derived = write.change.derived
        if derived is None:
            return (4 if write.change.content is not None else 3), write.path
        output = target.playbook.certificate(derived.certificate).outputs[derived.output]
        if output.is_key_file:
            order = 0
        elif output.format == "pem" and output.holds_leaf:
            order = 1
        else:
            order = 2
        return order, write.path

    return rank


async def _discard(writes: list[_Write], target: Target) -> None:
    for write in writes:
        if write.staged is not None:
            await target.transport.remove(write.staged)


async def _restore(target: Target, facts: HostFacts, committed: list[_Write]) -> None:
    """Put back what was there before: old content, or nothing for files we created."""
    for write in reversed(committed):
        state: FileState = facts.file(write.path)
        if state.kind == "file":
            await target.transport.write(write.path, state.content or b"", state.mode or 0o600)
        else:
            await target.transport.remove(write.path)


def _sites_touched(target: Target, changes: Sequence[Change]) -> list[Site]:
    """Sites whose config changed, which bind a certificate whose files changed, or which
    are owed a reload."""
    changed_certificates = {c.derived.certificate for c in changes if c.derived}
    changed_sites = {c.site for c in changes if c.site}
    touched = []
    for site in target.playbook.sites:
        uses = {b.certificate for b in site.bindings if b.certificate}
        if site.name in changed_sites or uses & changed_certificates:
            touched.append(site)
    return touched


def owed_reloads(target: Target, sites: Sequence[Site]) -> tuple[OwedReload, ...]:
    """The reloads the host's marker now owes ``sites``, by site and command, for the report."""
    return tuple(OwedReload(site.name, site_commands(target, site)[1]) for site in sites)


async def _test_and_reload(
    target: Target,
    plan: HostPlan,
    facts: HostFacts,
    committed: list[_Write],
    outcome: HostOutcome,
) -> None:
    sites = [s for s in _sites_touched(target, plan.changes) if s.reload]
    tests: dict[str, None] = {}
    to_reload: dict[str, list[Site]] = {}
    for site in sites:
        # The site's own, else its server's defaults for this kind of host.
        test, reload = site_commands(target, site)
        if test:
            tests[test] = None
        if reload:
            to_reload.setdefault(reload, []).append(site)
    # Each distinct command once per host, however many sites share it, all sent together:
    # each runs only if every one before it succeeded, so no reload follows a failed test.
    # A trust store's update command runs once its files are in place and the configs
    # passed their tests, before the reloads (provision/trust/stores.py).
    stores = {c.command: c.resource for c in plan.changes if c.command is not None}
    results = await target.transport.run_steps([*tests, *stores, *to_reload])
    failed = next((r for r in results if not r.ok), None)
    if failed is not None and len(results) <= len(tests):
        await _restore(target, facts, committed)
        # The old files are back, and they are what the server runs: the marker says
        # what it said before this run, and nothing was changed.
        await _write_marker(target, facts.file(target.marker_path).content)
        outcome.changed = False
        outcome.error = (
            f"config test `{failed.command}` failed, previous files restored: {failed.output}"
        )
        return
    handled = [site.name for site in sites]
    if failed is not None and failed.command in stores:
        # The files stay, the record says the command is owed (it is run again next time),
        # and the reloads after it did not run: owed too.
        outcome.changed = bool(committed)
        outcome.error = (
            f"{stores[failed.command]}: its update command failed (will be retried): "
            f"{failed.output}"
        )
        outcome.reload_owed = owed_reloads(target, sites)
        return
    if failed is None and stores:
        await _confirm_trust_record(target, plan)
    if failed is not None:
        # What was written stays written (a reload alone owed changed nothing).
        outcome.changed = bool(committed)
        if failed.exit_status in CANNOT_RUN:
            using = to_reload[failed.command]
            await _cannot_run(target, facts, handled, using, failed, outcome)
            # The other sites (their reloads not run after this one) stay owed.
            outcome.reload_owed = owed_reloads(target, [s for s in sites if s not in using])
            return
        # The marker stays, naming every site: the next run reloads them all.
        outcome.error = f"reload `{failed.command}` failed (will be retried): {failed.output}"
        outcome.reload_owed = owed_reloads(target, sites)
        return
    await _write_marker(target, reloads.updated(_marker(target, facts), handled))


async def _confirm_trust_record(target: Target, plan: HostPlan) -> None:
    """Every store's update command succeeded: the record no longer says one is owed."""
    path = target.trust_record_path
    written = next((c.content for c in plan.changes if c.path == path), None)
    if written is None:
        state = await target.transport.read(path)
        written = state.content
    confirmed = trust_record.confirmed(trust_record.parse(written, path))
    await target.transport.write(path, trust_record.dumps(confirmed), 0o644)


def _marker(target: Target, facts: HostFacts) -> reloads.Marker:
    return reloads.parse(facts.file(target.marker_path).content)


async def _write_marker(target: Target, content: bytes | None) -> None:
    if content is None:
        await target.transport.remove(target.marker_path)
    else:
        await target.transport.write(target.marker_path, content, 0o644)


async def _cannot_run(
    target: Target,
    facts: HostFacts,
    handled: list[str],
    using: list[Site],
    result: CommandResult,
    outcome: HostOutcome,
) -> None:
    """A reload the host cannot run fails the host, and is not owed as it is: retried on
    every run it would fail every run. The marker keeps it with its command, so the next apply
    reloads once the site's reload command changes (provision/reloads.py); the other sites
    touched stay owed."""
    blocked = {site.name: result.command for site in using}
    owed = [name for name in handled if name not in blocked]
    await _write_marker(target, reloads.updated(_marker(target, facts), handled, owed, blocked))
    why = "not found" if result.exit_status == 127 else "not executable"
    names = ", ".join(repr(site.name) for site in using)
    outcome.error = (
        f"reload `{result.command}` of site {names} cannot run on {target.host.name}, a "
        f"{target.paths.family} host: the command is {why} there ({result.output}). "
        "The files are written; this reload is not retried as it is, since it would fail "
        "the same way on every run. Give the site a reload_command this host can run (the "
        "next apply then reloads), or set reload: false and reload the server where it runs "
        "(an IIS site's script runs on its Windows host: see docs/windows.md)"
    )
