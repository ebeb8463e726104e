"""Roll a host back to the set of files it had before an apply, from the backups.

Backups are folders ``CERTIFICATES_DIR/.backup/TIMESTAMP/`` with a ``manifest.json``: the
files an apply replaced or deleted (copied there) and the files it created. Rolling back to
a backup undoes that apply and every later one: newer backups are undone first, so the
oldest word wins. The restore is itself an apply (backed up, journaled, then the sites are
tested and reloaded), so a rollback can be rolled back.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from provision.errors import ProvisionError
from provision.inputs.targets import Target
from provision.layout import BACKUP_DIR, BACKUP_MANIFEST
from provision.plan.model import Change, HostPlan


class RollbackError(ProvisionError):
    pass


async def backups(target: Target) -> list[str]:
    root = target.paths.join(target.certificates_dir, BACKUP_DIR)
    # Hidden names are partial folders of a killed run, never a backup.
    return sorted(n for n in await target.transport.list_dir(root) if not n.startswith("."))


async def rollback_plan(target: Target, to: str | None) -> tuple[HostPlan, list[str]]:
    """The changes that bring back the files as they were before backup ``to`` (default: the
    latest apply), and the paths they touch."""
    name = target.host.name
    folders = await backups(target)
    if not folders:
        raise RollbackError("no backups to roll back to")
    if to is None:
        chosen = [folders[-1]]
    else:
        matching = [f for f in folders if f.startswith(to)]
        if not matching:
            raise RollbackError(f"no backup matches {to!r} (have: {', '.join(folders)})")
        chosen = [f for f in folders if f >= matching[0]]
    root = target.paths.join(target.certificates_dir, BACKUP_DIR)
    restore: dict[str, tuple[bytes, int]] = {}
    remove: set[str] = set()
    for folder in reversed(chosen):  # newest first; older backups overwrite
        where = target.paths.join(root, folder)
        manifest_state = await target.transport.read(target.paths.join(where, BACKUP_MANIFEST))
        files, created = _manifest(
            manifest_state.content, folder, where, target.may_replace, target.paths.dirname
        )
        for path, backup, mode in files:
            stored = await target.transport.read(backup)
            if stored.content is None:
                raise RollbackError(f"backup {folder} lost {backup}")
            restore[path] = (stored.content, mode)
            remove.discard(path)
        for path in created:
            remove.add(path)
            restore.pop(path, None)
    changes = [
        Change(
            f"file {target.paths.basename(path)}",
            "update",
            f"restore from backup {chosen[0]}",
            path=path,
            mode=mode,
            content=content,
        )
        for path, (content, mode) in sorted(restore.items())
    ]
    changes += [
        Change(
            f"file {target.paths.basename(path)}",
            "delete",
            f"did not exist before backup {chosen[0]}",
            path=path,
        )
        for path in sorted(remove)
    ]
    # Every site is tested and reloaded: the restored files are what it must serve now.
    changes += [
        Change(f"site {site.name}", "update", "reload after rollback", site=site.name)
        for site in target.playbook.sites
        if site.reload
    ]
    return HostPlan(name, tuple(changes)), [*restore, *remove]


def _manifest(
    content: bytes | None,
    folder: str,
    where: str,
    may_replace: Callable[[str], bool],
    dirname: Callable[[str], str],
) -> tuple[list[tuple[str, str, int]], list[str]]:
    """A backup's manifest, checked as the input it is: every file it restores or removes is
    one this playbook manages, every copy lies in the backup's own folder, modes are plain
    permission bits. Anything else refuses the rollback and leaves the backup as it is."""

    def refuse(problem: str) -> RollbackError:
        return RollbackError(
            f"backup {folder}: its manifest {problem}; nothing was restored and the backup "
            "was left in place for inspection"
        )

    try:
        manifest = json.loads(content or b"")
        entries = manifest.get("files", [])
        created = manifest.get("created", [])
        if not isinstance(entries, list) or not isinstance(created, list):
            raise TypeError
        files = [(e["path"], e["backup"], e.get("mode") or 0o600) for e in entries]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise refuse("is not readable") from None
    for path, backup, mode in files:
        if not isinstance(path, str) or not may_replace(path):
            raise refuse(f"names {path!r}, which this playbook does not manage")
        if not isinstance(backup, str) or dirname(backup) != where:
            raise refuse(f"keeps {path} in {backup!r}, outside the backup's folder")
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o777:
            raise refuse(f"gives {path} the mode {mode!r}")
    for path in created:
        if not isinstance(path, str) or not may_replace(path):
            raise refuse(f"would remove {path!r}, which this playbook does not manage")
    return files, created
