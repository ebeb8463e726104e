"""Roll a host back to the set of files it had before an apply, from the backups.

Rolling back to a backup restores the files as they were when it was taken: that apply and
every later backup are undone (newer backups are applied first, so the oldest word wins).
Without ``--to``, a rollback undoes the newest apply not undone yet, as an editor's undo
does: running it again goes one further back, and once every apply kept is undone there is
nothing more to roll back. Each rollback is itself an apply (backed up, journaled, then the
sites are tested and reloaded) whose backup records what it undid (apply/backups.py); naming
that backup with ``--to`` undoes the rollback.
"""

from __future__ import annotations

from provision.apply.backups import Backup, History, read_history
from provision.errors import ProvisionError
from provision.inputs.targets import Target
from provision.plan.model import Change, HostPlan
from provision.report.outcome import BackupSummary, HostBackups


class RollbackError(ProvisionError):
    pass


def chosen(history: History, to: str | None) -> list[Backup]:
    """The backups a rollback undoes, oldest first: the one ``to`` names (or the newest apply
    not undone yet) and every later one."""
    if not history.backups:
        raise RollbackError("no backups to roll back to")
    if to is None:
        target = history.next_to_undo()
        if target is None:
            raise RollbackError(
                "nothing more to roll back: every apply kept in the backups is undone, the "
                f"oldest ({history.backups[0].name}) too; `rollback --list` shows them, and "
                "`rollback --to STAMP` with a rollback's STAMP undoes that rollback"
            )
        return history.since(target.name)
    names = [b.name for b in history.backups]
    matching = [n for n in names if n.startswith(to)]
    if not matching:
        raise RollbackError(f"no backup matches {to!r} (have: {', '.join(names)})")
    return history.since(matching[0])


async def rollback_plan(
    target: Target, to: str | None
) -> tuple[HostPlan, list[str], tuple[str, ...]]:
    """The changes that bring back the files as they were before backup ``to`` (default: the
    newest apply not undone yet), the paths they touch, and the backups they undo."""
    name = target.host.name
    undone = chosen(await read_history(target), to)
    restore: dict[str, tuple[bytes, int]] = {}
    remove: set[str] = set()
    for backup in reversed(undone):  # newest first; older backups overwrite
        for entry in backup.manifest.files:
            stored = await target.transport.read(entry.backup)
            if stored.kind != "file":  # (a symlink is never read through)
                found = "gone" if stored.kind == "missing" else stored.described
                raise RollbackError(
                    f"backup {backup.folder} lost {entry.backup} (it is {found}); nothing was "
                    "restored and the backup was left in place for inspection"
                )
            restore[entry.path] = (stored.content or b"", entry.mode or 0o600)
            remove.discard(entry.path)
        for path in backup.manifest.created:
            remove.add(path)
            restore.pop(path, None)
    first = undone[0].name
    # Full paths: two sites' `site.conf` in two folders are two files.
    changes = [
        Change(
            f"file {path}",
            "update",
            f"restore from backup {first}",
            path=path,
            mode=mode,
            content=content,
        )
        for path, (content, mode) in sorted(restore.items())
    ]
    changes += [
        Change(f"file {path}", "delete", f"did not exist before backup {first}", path=path)
        for path in sorted(remove)
    ]
    # Every site is tested and reloaded: the restored files are what it must serve now.
    changes += [
        Change(f"site {site.name}", "update", "reload after rollback", site=site.name)
        for site in target.playbook.sites
        if site.reload
    ]
    return HostPlan(name, tuple(changes)), [*restore, *remove], tuple(b.name for b in undone)


async def list_backups(target: Target) -> HostBackups:
    """`rollback --list`: the host's backups, what undoing each would restore and remove,
    which rollback undid it, and what a rollback without ``--to`` would undo next."""
    history = await read_history(target)
    undone = history.undone_by()
    following = history.next_to_undo()
    oldest = history.backups[0].name if history.backups else None
    return HostBackups(
        target.host.name,
        [
            BackupSummary(
                name=b.name,
                time=b.time,
                folder=b.folder,
                operation=b.manifest.operation,
                restores=tuple(sorted(e.path for e in b.manifest.files)),
                removes=tuple(sorted(b.manifest.created)),
                undoes=tuple(b.manifest.undoes),
                undone_by=undone.get(b.name),
                always_kept=b.name == oldest,
            )
            for b in history.backups
        ],
        next=following.name if following is not None else None,
    )
