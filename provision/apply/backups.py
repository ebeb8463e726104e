"""The backup folders on a host: taking one, reading them back as input, and pruning them.

Every write that replaces or removes a host's files first copies what it replaces into
``CERTIFICATES_DIR/.backup/STAMP/`` with a ``manifest.json``: where each copy came from, the
files the write creates, which operation took it (an apply, a rollback, `provision csr`)
and, for a rollback, the backups it undid. That last list is what lets the next rollback go
one further back instead of undoing the rollback it just made (``History``).

A manifest is read from the host, so it is input (docs/architecture.md): it must parse
(``Manifest``), every file it restores or removes must be one the playbook manages, every
copy must lie in its own folder, modes are plain permission bits, and the folder itself must
be a folder, not a symlink to one elsewhere. Anything else refuses the rollback, names the
file, and leaves the backup as it is for inspection.

Pruning keeps the backups of the last ``backups:`` applies, the oldest backup of all (taken
before provision first wrote there: the way back to the host as it was), and every
rollback's backup that records the undoing of a backup still kept.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provision.errors import ProvisionError
from provision.facts import HostFacts
from provision.inputs.targets import Target
from provision.layout import BACKUP_MANIFEST, PARTIAL_SUFFIX
from provision.transport.base import together

Operation = Literal["apply", "rollback", "csr"]

# The folder name: the run's moment, and a serial when one run backs up twice in a second's
# millionth (never in practice, but the name must be new).
STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"
_NAME = re.compile(r"(\d{8}T\d{12}Z)(?:-[1-9]\d{0,5})?")


class BackupError(ProvisionError):
    """A backup on the host is not one provision would have written."""


class Entry(BaseModel):
    """One replaced file: where it was, where its copy is, its mode."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    path: str
    backup: str
    # Null when the file had no mode to copy: restored 0600 then. Checked by ``check``.
    mode: int | None = None


class Manifest(BaseModel):
    """``manifest.json`` of one backup folder (early versions wrote only files and created)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    files: list[Entry] = Field(default_factory=list)
    created: list[str] = Field(default_factory=list)
    operation: Operation = "apply"
    undoes: list[str] = Field(default_factory=list)  # a rollback's: the backups it undid


@dataclass(frozen=True)
class Backup:
    name: str
    folder: str  # on the host
    manifest: Manifest

    @property
    def time(self) -> dt.datetime:
        time = stamp_time(self.name)
        assert time is not None  # only names that parse are read as backups
        return time

    @property
    def undoable(self) -> bool:
        """An apply's (or csr's) backup; a rollback's is undone only by naming it (``--to``)."""
        return self.manifest.operation != "rollback"


def stamp_time(name: str) -> dt.datetime | None:
    """The moment a backup folder's name records, or None for a name provision never makes."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    try:
        return dt.datetime.strptime(match.group(1), STAMP_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class History:
    """A host's backups, oldest first, and what the rollbacks among them undid."""

    backups: tuple[Backup, ...]

    def undone_by(self) -> dict[str, str]:
        """Each backup undone by a rollback still in effect -> that rollback's backup.

        Newest first: a rollback later undone itself (``--to`` its backup) no longer counts,
        so what it had undone is in effect again. A rollback only undoes older backups, so one
        pass decides each backup before it is reached."""
        undone: dict[str, str] = {}
        for backup in reversed(self.backups):
            if backup.name in undone:
                continue
            for name in backup.manifest.undoes:
                undone.setdefault(name, backup.name)
        return undone

    def next_to_undo(self) -> Backup | None:
        """What a rollback without ``--to`` undoes: the newest apply not undone yet."""
        undone = self.undone_by()
        for backup in reversed(self.backups):
            if backup.undoable and backup.name not in undone:
                return backup
        return None

    def since(self, name: str) -> list[Backup]:
        return [b for b in self.backups if b.name >= name]


async def read_history(target: Target) -> History:
    """Every backup on the host with its manifest, checked (see the module's docstring)."""
    root = target.backup_dir
    transport = target.transport
    # Hidden names are partial folders of a killed run, never a backup.
    names = sorted(n for n in await transport.list_dir(root) if not n.startswith("."))
    for name in names:
        if stamp_time(name) is None:
            where = target.paths.join(root, name)
            raise _refuse(f"{where} is not a backup provision made (its name is no time)")

    async def one(name: str) -> Backup:
        folder = target.paths.join(root, name)
        state = await transport.read(folder)
        if state.kind != "directory":
            raise _refuse(f"backup {folder} is {state.described}, not a folder")
        where = target.paths.join(folder, BACKUP_MANIFEST)
        manifest = _parse((await transport.read(where)).content)
        if manifest is None:
            raise _refuse(f"backup {name}: its manifest {where} is not readable")
        problem = _problem(manifest, name, folder, target.may_replace, target.paths.dirname)
        if problem is not None:
            raise _refuse(f"backup {name}: its manifest {where} {problem}")
        return Backup(name, folder, manifest)

    return History(tuple(await asyncio.gather(*(one(name) for name in names))))


def _parse(content: bytes | None) -> Manifest | None:
    if content is None:
        return None
    try:
        return Manifest.model_validate_json(content)
    except ValidationError:
        return None


def _problem(
    manifest: Manifest,
    name: str,
    folder: str,
    may_replace: Callable[[str], bool],
    dirname: Callable[[str], str],
) -> str | None:
    """What a manifest asks that it may not: anything but restoring or removing files this
    playbook manages, from copies in the backup's own folder; a rollback's record of undoing
    anything but older backups."""
    for entry in manifest.files:
        if not may_replace(entry.path):
            return f"names {entry.path!r}, which this playbook does not manage"
        if dirname(entry.backup) != folder:
            return f"keeps {entry.path} in {entry.backup!r}, outside the backup's folder"
        if entry.mode is not None and not 0 <= entry.mode <= 0o777:
            return f"gives {entry.path} the mode {entry.mode:#o}"
    for path in manifest.created:
        if not may_replace(path):
            return f"would remove {path!r}, which this playbook does not manage"
    for undone in manifest.undoes:
        if stamp_time(undone) is None or undone >= name:
            return f"says it undid {undone!r}, which is no older backup's name"
    return None


def _refuse(problem: str) -> BackupError:
    return BackupError(f"{problem}; nothing was changed and it was left in place for inspection")


async def take(
    target: Target,
    facts: HostFacts,
    paths: Sequence[str],
    now: dt.datetime,
    operation: Operation,
    undoes: Sequence[str] = (),
) -> str | None:
    """Copy every file at ``paths`` that exists into a new backup folder, and list the ones
    that do not (they are about to be created), so a rollback can bring back the set as it
    was. A rollback's backup is taken even when it copies nothing: it is the record of what
    that rollback undid. Returns the folder, or None when there was nothing to record."""
    replaced = [p for p in paths if facts.file(p).kind == "file"]
    created = sorted(p for p in paths if facts.file(p).kind == "missing")
    if not replaced and not created and not undoes:
        return None
    root = target.backup_dir
    transport = target.transport
    existing = set(await transport.list_dir(root))
    stamp = now.strftime(STAMP_FORMAT)
    name = stamp
    serial = 1
    while name in existing or f".{name}{PARTIAL_SUFFIX}" in existing:
        serial += 1
        name = f"{stamp}-{serial}"
    folder = target.paths.join(root, name)
    # Filled under a hidden name and renamed when complete: a run killed meanwhile leaves a
    # hidden partial folder (removed by the next run), never a backup without its manifest.
    partial = target.paths.join(root, f".{name}{PARTIAL_SUFFIX}")
    entries = []
    copies: list[tuple[str, bytes, int]] = []
    for index, path in enumerate(replaced):
        state = facts.file(path)
        stored = f"{index:03d}-{target.paths.basename(path)}"
        copies.append(
            (target.paths.join(partial, stored), state.content or b"", state.mode or 0o600)
        )
        entries.append(Entry(path=path, backup=target.paths.join(folder, stored), mode=state.mode))
    manifest = Manifest(files=entries, created=created, operation=operation, undoes=list(undoes))
    copies.append(
        (
            target.paths.join(partial, BACKUP_MANIFEST),
            manifest.model_dump_json(indent=2).encode() + b"\n",
            0o600,
        )
    )
    # All at once where the transport is pipelined: the requests to a host travel together.
    await together(
        transport,
        (transport.write(path, data, mode, durable=False) for path, data, mode in copies),
    )
    await transport.flush()  # the backup's files are on disk before it is complete
    # Durable now, before the journal can be: a journal on disk with its backup still under
    # the partial name would see that backup removed as a leftover by the next run.
    await transport.commit(partial, folder)
    return folder


async def discard(target: Target, folder: str) -> None:
    """Remove a backup whose write was undone (the files it copied are back in place): it
    records no change, so a rollback must not find it and undo nothing."""
    for entry in await target.transport.list_dir(folder):
        await target.transport.remove(target.paths.join(folder, entry))
    await target.transport.remove_dir(folder)


async def prune(target: Target) -> None:
    """Keep the backups of the last ``backups:`` applies, the oldest backup, and the
    rollbacks' backups that undid one of those; remove the rest.

    Only folders provision made are looked at: a name that is not a backup's time, or a
    symlink, is never followed nor removed (a planted link to /etc would empty /etc)."""
    keep = target.playbook.backups
    root = target.backup_dir
    transport = target.transport
    names = sorted(
        n for n in await transport.list_dir(root) if not n.startswith(".") and stamp_time(n)
    )
    if len(names) <= keep + 1:
        return  # fewer than can be pruned: no manifest need be read

    async def manifest_of(name: str) -> tuple[str, Manifest | None] | None:
        folder = target.paths.join(root, name)
        if (await transport.read(folder)).kind != "directory":
            return None
        state = await transport.read(target.paths.join(folder, BACKUP_MANIFEST))
        return name, _parse(state.content)

    found = [r for r in await asyncio.gather(*(manifest_of(n) for n in names)) if r is not None]
    for name in sorted({n for n, _ in found} - kept(found, keep)):
        await discard(target, target.paths.join(root, name))


def kept(backups: Sequence[tuple[str, Manifest | None]], keep: int) -> set[str]:
    """Which of ``backups`` (oldest first; None: a manifest that does not parse, pruned by
    age like an apply's) pruning keeps."""
    if not backups:
        return set()
    undoable = [n for n, m in backups if m is None or m.operation != "rollback"]
    result = {backups[0][0], *undoable[-keep:]}
    for name, manifest in backups:  # oldest first: what a rollback undid is decided before it
        undid = manifest.undoes if manifest is not None else []
        if result.intersection(undid):  # (only a rollback's manifest lists any)
            result.add(name)
    return result


__all__ = [
    "Backup",
    "BackupError",
    "History",
    "Manifest",
    "Operation",
    "discard",
    "kept",
    "prune",
    "read_history",
    "stamp_time",
    "take",
]
