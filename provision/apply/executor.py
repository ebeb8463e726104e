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
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from provision.apply.journal import Journal, journal_path
from provision.apply.keymaker import KeyMaker
from provision.errors import ProvisionError
from provision.facts import HostFacts
from provision.inputs.targets import Target
from provision.layout import BACKUP_DIR, BACKUP_MANIFEST, PARTIAL_SUFFIX
from provision.model.playbook import Certificate, Site
from provision.plan import state
from provision.plan.certificate import current_material, read_current
from provision.plan.material import Material, output_bytes
from provision.plan.model import Change, HostPlan
from provision.servers.registry import server
from provision.sources.authority_store import AuthorityStore
from provision.sources.base import Expected, IssueRequest
from provision.sources.registry import source_of
from provision.transport.base import FileState


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
    operation: str = "apply"  # recorded in the journal


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
    changed: bool
    error: str | None = None
    backup: str | None = None


async def apply_host(
    target: Target,
    plan: HostPlan,
    facts: HostFacts,
    ctx: RunContext,
    expected: Mapping[str, Expected],
) -> HostOutcome:
    if not plan.changes:
        return HostOutcome(target.host.name, changed=False)
    passwords = ctx.passwords.get(target.host.name, {})
    materials = await _issue(target, plan, facts, ctx, passwords, expected)
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
    backup = await _back_up(target, facts, [*writes, *removed], ctx.now)
    reload_sites = [s for s in _sites_touched(target, plan.changes) if s.reload]
    if reload_sites:
        await transport.write(
            target.marker_path,
            "".join(f"{s.name}\n" for s in reload_sites).encode(),
            0o644,
            durable=False,
        )
    if not writes and not removed:
        # Nothing to replace (a reload owed, say): no journal needed.
        await transport.flush()
        outcome = HostOutcome(target.host.name, changed=True, backup=backup)
        await _test_and_reload(target, plan, facts, [], outcome)
        return outcome
    committed = await _commit_journaled(target, facts, writes, removed, ctx.operation)
    outcome = HostOutcome(target.host.name, changed=True, backup=backup)
    await _test_and_reload(target, plan, facts, committed, outcome)
    return outcome


async def _commit_journaled(
    target: Target,
    facts: HostFacts,
    writes: list[_Write],
    removed: list[_Write],
    operation: str,
) -> list[_Write]:
    """Rename every staged file into place and remove the files to go, under a journal: a run
    killed among the renames is finished by the next one. On a failure, what was done is
    undone from ``facts`` (the files as they were) and the error raised."""
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
        raise
    await transport.remove(journal_path(target.certificates_dir, target.paths), durable=False)
    return committed


async def write_files(
    target: Target,
    facts: HostFacts,
    files: Sequence[tuple[str, bytes, int]],
    now: dt.datetime,
    operation: str,
) -> str | None:
    """Write files that no plan describes (a key `provision csr` makes) by the same path as
    apply: staged complete, what they replace backed up, renamed under the journal. The caller
    holds the host's lock. Returns the backup folder, if anything was replaced."""
    writes = [
        _Write(Change(f"file {path}", "update", operation, path=path), path, data, mode)
        for path, data, mode in files
    ]
    await _stage_all(target, writes)
    backup = await _back_up(target, facts, writes, now)
    await _commit_journaled(target, facts, writes, [], operation)
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
        )
        materials[spec.name] = await source_of(spec).issue(request)
    return materials


def _write_for(
    change: Change,
    target: Target,
    materials: Mapping[str, Material],
    facts: HostFacts,
    passwords: Mapping[str, bytes],
    expected: Mapping[str, Expected],
) -> _Write:
    assert change.path is not None and change.mode is not None
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
        elif output.format == "pem" and output.content in ("fullchain", "certificate"):
            order = 1
        else:
            order = 2
        return order, write.path

    return rank


async def _back_up(
    target: Target, facts: HostFacts, writes: list[_Write], now: dt.datetime
) -> str | None:
    """Copy every file about to be replaced into a timestamped backup folder, and list the
    files about to be created, so `rollback` can bring back the set as it was."""
    replaced = [w for w in writes if facts.file(w.path).kind == "file"]
    created = sorted(w.path for w in writes if facts.file(w.path).kind == "missing")
    if not replaced and not created:
        return None
    root = target.paths.join(target.certificates_dir, BACKUP_DIR)
    existing = [n for n in await target.transport.list_dir(root) if not n.startswith(".")]
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    name = stamp
    serial = 1
    while name in existing:
        serial += 1
        name = f"{stamp}-{serial}"
    folder = target.paths.join(root, name)
    # Filled under a hidden name and renamed when complete: a run killed meanwhile leaves a
    # hidden partial folder (removed by the next run), never a backup without its manifest.
    partial = target.paths.join(root, f".{name}{PARTIAL_SUFFIX}")
    manifest = []
    copies: list[tuple[str, bytes, int]] = []
    for index, write in enumerate(replaced):
        state = facts.file(write.path)
        stored = f"{index:03d}-{target.paths.basename(write.path)}"
        copies.append(
            (target.paths.join(partial, stored), state.content or b"", state.mode or 0o600)
        )
        manifest.append(
            {"path": write.path, "backup": target.paths.join(folder, stored), "mode": state.mode}
        )
    listing = json.dumps({"files": manifest, "created": created}, indent=2, sort_keys=True)
    copies.append((target.paths.join(partial, BACKUP_MANIFEST), listing.encode() + b"\n", 0o600))
    # All at once: the requests to a host travel together.
    await _each(
        target,
        copies,
        lambda copy: target.transport.write(copy[0], copy[1], copy[2], durable=False),
        [],
    )
    await target.transport.flush()  # the backup's files are on disk before it is complete
    # Durable now, before the journal can be: a journal on disk with its backup still under
    # the partial name would see that backup removed as a leftover by the next run.
    await target.transport.commit(partial, folder)
    await _prune(target, root, [*existing, name])
    return folder


async def _prune(target: Target, root: str, names: list[str]) -> None:
    keep = target.playbook.backups
    old = sorted(names)[:-keep] if keep else sorted(names)
    for name in old:
        folder = target.paths.join(root, name)
        for entry in await target.transport.list_dir(folder):
            await target.transport.remove(target.paths.join(folder, entry))
        await target.transport.remove_dir(folder)


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


async def _test_and_reload(
    target: Target,
    plan: HostPlan,
    facts: HostFacts,
    committed: list[_Write],
    outcome: HostOutcome,
) -> None:
    sites = [s for s in _sites_touched(target, plan.changes) if s.reload]
    tests: dict[str, None] = {}
    reloads: dict[str, None] = {}
    for site in sites:
        # Each server's own defaults (servers/<name>.py), for the site's paths on this host.
        default_test, default_reload = server(site.server).default_commands(
            site, target.site_paths(site)
        )
        if test := site.test_command or default_test:
            tests[test] = None
        if reload := site.reload_command or default_reload:
            reloads[reload] = None
    # Each distinct command once per host, however many sites share it, all sent together:
    # each runs only if every one before it succeeded, so no reload follows a failed test.
    results = await target.transport.run_steps([*tests, *reloads])
    failed = next((r for r in results if not r.ok), None)
    if failed is not None and len(results) <= len(tests):
        await _restore(target, facts, committed)
        # The old files are back, and they are what the server runs: nothing is owed.
        await target.transport.remove(target.marker_path)
        outcome.error = (
            f"config test `{failed.command}` failed, previous files restored: {failed.output}"
        )
        return
    if failed is not None:
        outcome.error = f"reload `{failed.command}` failed (will be retried): {failed.output}"
        return
    await target.transport.remove(target.marker_path)
