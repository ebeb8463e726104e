"""Records provision keeps on a host, planted by someone with write access to the
certificates directory (issue 14): a journal or a backup manifest naming files outside what
the playbook manages. Each is refused: the host fails with one clear paragraph, the record is
left in place for inspection, and no file anywhere changes (nor is printed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot

PLAYBOOK = "playbooks/callmanager-https.yml"
INVENTORY = "inventory/example.yml"


def _folder(project: Path) -> Path:
    return project / ".provision" / "fleet" / "cm-pub-01" / "certificates"


def _applied(project: Path, cli: Any) -> Path:
    assert cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01").exit_code == 0
    return _folder(project)


def _victims(project: Path) -> Path:
    """Files outside anything the playbook manages: one secret (0600), one ordinary."""
    outside = project / "outside"
    outside.mkdir()
    (outside / "secret.key").write_text("TOP SECRET CONTENT\n")
    (outside / "secret.key").chmod(0o600)
    (outside / "notes.txt").write_text("keep me\n")
    return outside


def _journal(folder: Path, renames: list[list[str]], removals: list[str]) -> None:
    record = {"operation": "apply", "renames": renames, "removals": removals}
    (folder / ".provision-journal.json").write_text(json.dumps(record))


def _refused(result: Any, *fragments: str) -> str:
    output = result.stdout + result.stderr
    assert result.exit_code == 1, output
    assert "Traceback" not in output
    assert "TOP SECRET" not in output
    for fragment in fragments:
        assert fragment in output, output
    return output


JOURNALS = {
    # A staged file of the journal's choosing renamed onto a file outside.
    "rename-onto-outside": lambda f, o: ([[str(f / ".x.tmp"), str(o / "notes.txt")]], []),
    # A secret elsewhere shown as if it were about to become the site's config.
    "secret-as-staged-config": lambda f, o: (
        [[str(o / "secret.key"), str(f.parent.parent / "nginx" / "default-web-site.conf")]],
        [],
    ),
    # A removal of a file outside.
    "remove-outside": lambda f, o: ([], [str(o / "notes.txt")]),
    # A removal reaching out with '..'.
    "remove-dotdot": lambda f, o: ([], [str(f) + "/../../../../outside/notes.txt"]),
    # A removal of provision's own backups.
    "remove-backup": lambda f, o: ([], [str(f / ".backup")]),
}


@pytest.mark.parametrize("command", ["plan", "apply"])
@pytest.mark.parametrize("case", sorted(JOURNALS))
def test_a_planted_journal_is_refused_and_left(
    project: Path, cli: Any, case: str, command: str
) -> None:
    folder = _applied(project, cli)
    outside = _victims(project)
    (folder / ".x.tmp").write_text("planted content\n")
    renames, removals = JOURNALS[case](folder, outside)
    _journal(folder, renames, removals)
    before, before_outside = snapshot(project / ".provision"), snapshot(outside)
    result = cli(command, PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01")
    _refused(result, "which is not a file this playbook manages", "left in place")
    assert snapshot(outside) == before_outside
    assert snapshot(project / ".provision") == before


def _files(path: Path, backup: str, mode: int) -> dict[str, Any]:
    return {"files": [{"path": str(path), "backup": backup, "mode": mode}]}


MANIFESTS = {
    "restore-outside": (
        lambda f, o: {
            "files": [{"path": str(o / "notes.txt"), "backup": "{b}/000-x", "mode": 420}]
        },
        "which this playbook does not manage",
    ),
    "copy-a-secret-in": (
        lambda f, o: {
            "files": [
                {"path": str(f / "httpscert.pem"), "backup": str(o / "secret.key"), "mode": 420}
            ]
        },
        "outside the backup's folder",
    ),
    "setuid-mode": (
        lambda f, o: {
            "files": [{"path": str(f / "httpscert.pem"), "backup": "{b}/000-x", "mode": 0o4755}]
        },
        "gives",
    ),
    "remove-outside": (
        lambda f, o: {"files": [], "created": [str(o / "notes.txt")]},
        "would remove",
    ),
    "not-a-list": (lambda f, o: {"files": {"a": 1}}, "is not readable"),
    # A rollback record (issue 15) is input too: it may only say it undid older backups...
    "undoes-a-newer-backup": (
        lambda f, o: {"operation": "rollback", "undoes": ["99991231T000000000000Z"]},
        "says it undid '99991231T000000000000Z', which is no older backup's name",
    ),
    "undoes-a-path": (
        lambda f, o: {"operation": "rollback", "undoes": ["../../../outside"]},
        "says it undid '../../../outside'",
    ),
    # ... and be taken by something provision does.
    "unknown-operation": (lambda f, o: {"operation": "format"}, "is not readable"),
}


@pytest.mark.parametrize("listing", [False, True], ids=["rollback", "list"])
@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_a_planted_backup_manifest_is_refused_by_rollback(
    project: Path, cli: Any, case: str, listing: bool
) -> None:
    folder = _applied(project, cli)
    outside = _victims(project)
    backup = folder / ".backup" / "29991231T000000000000Z"
    backup.mkdir(parents=True)
    (backup / "000-x").write_text("planted\n")
    make, fragment = MANIFESTS[case]
    manifest = json.loads(json.dumps(make(folder, outside)).replace("{b}", str(backup)))
    (backup / "manifest.json").write_text(json.dumps(manifest))
    before, before_outside = snapshot(project / ".provision"), snapshot(outside)
    extra = ["--list"] if listing else []
    result = cli("rollback", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01", *extra)
    output = _refused(result, "its manifest", fragment, "left in place for inspection")
    assert f"{backup / 'manifest.json'}" in output  # the file at fault, named
    assert snapshot(outside) == before_outside
    assert snapshot(project / ".provision") == before


def _symlinked_backup(project: Path, folder: Path) -> tuple[Path, Path]:
    """A backup folder that is a symlink to a folder outside, named as the oldest backup,
    holding what a backup holds: a manifest and a copy."""
    outside = _victims(project)
    copy = outside / "000-httpscert.pem"
    copy.write_text("planted\n")
    link = folder / ".backup" / "20000101T000000000000Z"
    entry = {"path": str(folder / "httpscert.pem"), "backup": str(link / copy.name), "mode": 420}
    (outside / "manifest.json").write_text(json.dumps({"files": [entry], "created": []}))
    link.symlink_to(outside, target_is_directory=True)
    return link, outside


@pytest.mark.parametrize("listing", [False, True], ids=["rollback", "list"])
def test_a_symlinked_backup_folder_is_refused(project: Path, cli: Any, listing: bool) -> None:
    folder = _applied(project, cli)
    link, outside = _symlinked_backup(project, folder)
    before, before_outside = snapshot(project / ".provision"), snapshot(outside)
    extra = ["--list"] if listing else ["--to", link.name]
    result = cli("rollback", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01", *extra)
    _refused(result, f"backup {link} is a symlink, not a folder", "left in place")
    assert snapshot(outside) == before_outside
    assert snapshot(project / ".provision") == before
    assert link.is_symlink()


def test_pruning_never_follows_a_symlinked_backup_folder(project: Path, cli: Any) -> None:
    """A link named as the oldest backup: pruning (one backup kept) once emptied the folder
    it points to. Now it is no backup of provision's: never followed, never removed."""
    book = project / "playbooks" / "one-backup.yml"
    original = (project / PLAYBOOK).read_text() + "backups: 1\n"
    folder = _folder(project)
    folder.mkdir(parents=True)
    (folder / ".backup").mkdir()
    link, outside = _symlinked_backup(project, folder)
    before_outside = snapshot(outside)
    for days in (825, 397, 90, 60):  # each apply reissues: a backup each
        book.write_text(original.replace("validity_days: 825", f"validity_days: {days}"))
        result = cli("apply", str(book), "-i", INVENTORY, "-l", "cm-pub-01")
        assert result.exit_code == 0, result.stdout + result.stderr
        assert "certificate httpscert" in result.stdout
    assert snapshot(outside) == before_outside
    assert link.is_symlink()
    # Besides the link: the oldest backup and the last one (backups: 1).
    assert len(list((folder / ".backup").iterdir())) == 3


@pytest.mark.parametrize("kind", ["symlink", "missing"])
def test_a_backup_copy_replaced_by_a_symlink_or_gone_is_refused(
    project: Path, cli: Any, kind: str
) -> None:
    """A real backup whose copy of the key was swapped for a link to a secret elsewhere (or
    removed): the rollback restores nothing, rather than the secret or half the set."""
    folder = _applied(project, cli)
    book = project / PLAYBOOK
    book.write_text(book.read_text().replace("validity_days: 825", "validity_days: 397"))
    assert cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01").exit_code == 0  # new key
    [*_, latest] = sorted((folder / ".backup").iterdir())
    manifest = json.loads((latest / "manifest.json").read_text())
    [copy] = [Path(e["backup"]) for e in manifest["files"] if e["path"].endswith(".key")]
    outside = _victims(project)
    copy.unlink()
    if kind == "symlink":
        copy.symlink_to(outside / "secret.key")
    before, before_outside = snapshot(project / ".provision"), snapshot(outside)
    result = cli("rollback", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01")
    found = "a symlink" if kind == "symlink" else "gone"
    _refused(result, f"backup {latest} lost {copy} (it is {found})", "left in place")
    assert snapshot(outside) == before_outside
    assert snapshot(project / ".provision") == before
