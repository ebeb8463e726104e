"""The journal of a replacement in progress, so an interrupted one can be finished.

The executor stages every new file (complete and fsynced) before it renames any, then writes
the journal: which staged file goes where and which files go away. Only then does it rename.
A run killed among the renames leaves the journal; the next run rolls it forward (every
staged file that is still there is renamed into place) before it reads the host, and `plan`
shows the repair. Rolling forward, not back, is what makes it safe: the staged set was
already complete when the first rename happened.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from provision.errors import ProvisionError
from provision.facts import HostFacts
from provision.layout import JOURNAL_FILE, LOCK_FILE, PARTIAL_SUFFIX, TEMPORARY_SUFFIX
from provision.transport.base import FileState, PathFlavour, Transport, together


@dataclass(frozen=True)
class Journal:
    renames: tuple[tuple[str, str], ...]  # (staged, target)
    removals: tuple[str, ...]
    operation: str = "apply"  # or "rollback": finishing one must not be followed by another

    def dumps(self) -> bytes:
        return (
            json.dumps(
                {
                    "operation": self.operation,
                    "renames": [list(pair) for pair in self.renames],
                    "removals": list(self.removals),
                },
                indent=2,
            ).encode()
            + b"\n"
        )

    @staticmethod
    def parse(content: bytes) -> Journal | None:
        try:
            data = json.loads(content)
            renames = tuple((str(a), str(b)) for a, b in data["renames"])
            removals = tuple(str(p) for p in data["removals"])
            operation = str(data.get("operation", "apply"))
        except (ValueError, KeyError, TypeError):
            return None
        return Journal(renames, removals, operation)


@dataclass(frozen=True)
class Finished:
    """What rolling a journal forward did."""

    moved: int = 0
    operation: str | None = None  # the interrupted run's operation, if there was one


def journal_path(certificates_dir: str, paths: PathFlavour) -> str:
    return paths.join(certificates_dir, JOURNAL_FILE)


async def read_journal(transport: Transport, certificates_dir: str) -> Journal | None:
    state = await transport.read(journal_path(certificates_dir, transport.paths))
    return Journal.parse(state.content) if state.content is not None else None


class JournalError(ProvisionError):
    """A journal on the host names something provision would never have written."""


def check(
    journal: Journal, path: str, may_replace: Callable[[str], bool], paths: PathFlavour
) -> None:
    """A journal is read from the host, so it is input: every file it would rename must be
    staged beside its target under the name the transports give staged files, and every
    target and removal must be a file this playbook manages (``may_replace``). Anything
    else fails the host and the journal is left in place for inspection."""
    for staged, target in journal.renames:
        folder, name = paths.split(target)
        staged_folder, staged_name = paths.split(staged)
        beside = staged_folder == folder and staged_name.startswith(f".{name}.")
        if not (beside and staged_name.endswith(TEMPORARY_SUFFIX) and may_replace(target)):
            raise JournalError(_foreign(path, f"a rename of {staged} onto {target}"))
    for removal in journal.removals:
        if not may_replace(removal):
            raise JournalError(_foreign(path, f"the removal of {removal}"))


def _foreign(path: str, what: str) -> str:
    return (
        f"{path} asks for {what}, which is not a file this playbook manages; nothing was "
        "changed and the journal was left in place for inspection (a planted or foreign "
        "journal: remove it once you know where it came from)"
    )


async def overlay(
    transport: Transport, journal: Journal, facts: HostFacts
) -> tuple[HostFacts, int]:
    """The host as it will be once the journal is rolled forward (for an honest plan), and
    how many files that still moves. The journal must have passed ``check``."""
    files = dict(facts.files)
    pending = 0
    for staged, target in journal.renames:
        state = await transport.read(staged)
        if state.kind == "file":
            files[target] = FileState(target, "file", state.content, state.mode)
            pending += 1
    for path in journal.removals:
        if facts.file(path).kind == "file":
            pending += 1
        files[path] = FileState(path, "missing")
    return HostFacts(files), pending


async def roll_forward(
    transport: Transport, certificates_dir: str, may_replace: Callable[[str], bool]
) -> Finished:
    """Finish an interrupted replacement (of files ``may_replace`` accepts: see ``check``)."""
    path = journal_path(certificates_dir, transport.paths)
    state = await transport.read(path)
    if state.content is None:
        return Finished()
    journal = Journal.parse(state.content)
    if journal is None:
        await transport.remove(path)  # an unreadable journal was cut while being written
        return Finished()
    check(journal, path, may_replace, transport.paths)
    moved = 0
    staged = await together(transport, (transport.read(s) for s, _ in journal.renames))
    for (source, target), found in zip(journal.renames, staged, strict=True):
        if found.kind == "file":
            await transport.commit(source, target)
            moved += 1
    for removal in journal.removals:
        if (await transport.read(removal)).kind == "file":
            await transport.remove(removal)
            moved += 1
    await transport.remove(path)
    return Finished(moved, journal.operation)


@dataclass(frozen=True)
class Leftovers:
    """What a run that died before its journal existed left behind."""

    files: tuple[str, ...] = ()  # staged files, and the files of unfinished backups
    folders: tuple[str, ...] = ()  # unfinished backup folders, emptied by removing ``files``


async def find_leftovers(transport: Transport, paths: Iterable[str], backup_root: str) -> Leftovers:
    """Files a killed run staged (never renamed, harmless, but not to be left behind) and
    backup folders it did not finish. Only files staged for the paths this playbook manages
    are taken: a folder such as /etc/nginx/conf.d is shared with other software. Only reads
    (every folder listed at once), so it can run beside the journal's roll-forward: a staged
    file found here and renamed by it is simply gone when its removal comes."""
    by_folder: dict[str, set[str]] = {}
    for path in paths:
        folder, name = transport.paths.split(path)
        by_folder.setdefault(folder, set()).add(name)
    folders = sorted(by_folder)
    *listings, backups = await together(
        transport, (transport.list_dir(folder) for folder in [*folders, backup_root])
    )
    files: list[str] = []
    for folder, entries in zip(folders, listings, strict=True):
        for entry in entries:
            if not entry.endswith(TEMPORARY_SUFFIX) or entry.startswith(f".{LOCK_FILE}"):
                continue  # (another run staging its lock, outside any lock, is not ours)
            if any(entry.startswith(f".{name}.") for name in by_folder[folder]):
                files.append(transport.paths.join(folder, entry))
    hidden = [
        transport.paths.join(backup_root, entry)
        for entry in backups
        if entry.startswith(".") and entry.endswith(PARTIAL_SUFFIX)
    ]
    states = await together(transport, (transport.read(path) for path in hidden))
    partial = [
        path for path, state in zip(hidden, states, strict=True) if state.kind == "directory"
    ]
    # A backup a killed run did not finish: the files it would have backed up were never
    # replaced, so nothing in it is needed.
    inside = await together(transport, (transport.list_dir(path) for path in partial))
    for folder, names in zip(partial, inside, strict=True):
        files += [transport.paths.join(folder, name) for name in names]
    return Leftovers(tuple(files), tuple(partial))


async def remove_found(transport: Transport, found: Leftovers) -> None:
    """Remove what ``find_leftovers`` found. Only called while holding the host's lock."""
    await together(transport, (transport.remove(path, durable=False) for path in found.files))
    for folder in found.folders:
        await transport.remove_dir(folder)


async def remove_leftovers(transport: Transport, paths: Iterable[str], backup_root: str) -> None:
    """``find_leftovers``, then ``remove_found``. Only called while holding the host's lock."""
    await remove_found(transport, await find_leftovers(transport, paths, backup_root))
