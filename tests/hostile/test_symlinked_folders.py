"""A symlink planted in a folder on the way to a managed file (issue 14, item 2): the
`.backup` folder, a sub-folder of the certificates directory, a backup's own folder, the
host's folder above the certificates directory, the site config's folder. None is followed:
the host fails with one paragraph naming the link, nothing is written, removed or printed
where it points, and the files the playbook manages are left as they were."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot

PLAYBOOK = "playbooks/callmanager-https.yml"
INVENTORY = "inventory/example.yml"
SECRET = "TOP SECRET CONTENT"


def _host(project: Path) -> Path:
    return project / ".provision" / "fleet" / "cm-pub-01"


def _applied(project: Path, cli: Any, *extra: str) -> Path:
    result = cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01", *extra)
    assert result.exit_code == 0, result.stdout + result.stderr
    return _host(project) / "certificates"


def _outside(project: Path) -> Path:
    """A folder nothing manages, looking like what a link would stand for: a certificates
    directory with a key, and backup folders (which pruning would delete)."""
    outside = project / "outside"
    outside.mkdir()
    (outside / "httpscert.key").write_text(f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n")
    (outside / "httpscert.key").chmod(0o600)
    (outside / "notes.txt").write_text("keep me\n")
    for index in range(12):
        backup = outside / f"2020010{index % 10}T00000{index:02d}000000Z"
        backup.mkdir()
        (backup / "manifest.json").write_text('{"files": [], "created": []}\n')
    return outside


def _refused(result: Any, *fragments: str, rule: str = "never follows a symlink") -> str:
    output = result.stdout + result.stderr
    assert result.exit_code == 1, output
    assert "Traceback" not in output
    assert SECRET not in output
    for fragment in ("is a symlink", rule, *fragments):
        assert fragment in output, output
    return output


def _swap_for_link(folder: Path, target: Path) -> None:
    """``folder`` replaced by a symlink to ``target`` (its content moved there first, so
    that following the link would find just what the tool expects)."""
    for entry in folder.iterdir():
        os.replace(entry, target / entry.name)
    folder.rmdir()
    folder.symlink_to(target)


def _a_change(certificates: Path) -> None:
    (certificates / "httpscert.pem").unlink()  # to be written again: a backup is taken


@pytest.mark.parametrize("command", ["apply", "rollback"])
def test_a_backup_folder_that_is_a_symlink_is_not_followed(
    project: Path, cli: Any, command: str
) -> None:
    certificates = _applied(project, cli)
    outside = _outside(project)
    _swap_for_link(certificates / ".backup", outside)
    _a_change(certificates)
    before, before_outside = snapshot(project / ".provision"), snapshot(outside)
    listing = sorted(p.name for p in outside.iterdir())
    _refused(cli(command, PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01"), ".backup")
    assert snapshot(outside) == before_outside
    assert sorted(p.name for p in outside.iterdir()) == listing  # nothing pruned there
    assert snapshot(project / ".provision") == before


def test_a_backup_of_its_own_that_is_a_symlink_is_not_rolled_back(project: Path, cli: Any) -> None:
    certificates = _applied(project, cli)
    _a_change(certificates)
    assert cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01").exit_code == 0
    outside = _outside(project)
    backup = max((certificates / ".backup").iterdir())  # the one rollback would restore
    _swap_for_link(backup, outside)
    before, before_outside = snapshot(project / ".provision"), snapshot(outside)
    # (Found so by reading the backups, before any path through it: the backups' own words.)
    result = cli("rollback", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01")
    _refused(result, backup.name, rule="left in place for inspection")
    assert snapshot(outside) == before_outside
    assert snapshot(project / ".provision") == before


def _with_sub_folder_output(project: Path) -> None:
    playbook = project / PLAYBOOK
    text = playbook.read_text()
    extra = "      - {file: pem/httpscert.pem, format: pem, content: fullchain}\n"
    anchor = "      - {file: httpscert.key, format: pem, content: key}\n"
    playbook.write_text(text.replace(anchor, anchor + extra))


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_an_output_under_a_symlinked_sub_folder_is_not_written(
    project: Path, cli: Any, command: str
) -> None:
    _with_sub_folder_output(project)
    certificates = _applied(project, cli)
    outside = _outside(project)
    _swap_for_link(certificates / "pem", outside)
    _a_change(certificates)
    before, before_outside = snapshot(project / ".provision"), snapshot(outside)
    _refused(cli(command, PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01"), "certificates/pem")
    assert snapshot(outside) == before_outside
    assert snapshot(project / ".provision") == before


def test_a_new_sub_folder_planted_as_a_symlink_before_the_first_apply(
    project: Path, cli: Any
) -> None:
    _with_sub_folder_output(project)
    outside = _outside(project)
    certificates = _host(project) / "certificates"
    certificates.mkdir(parents=True)
    (certificates / "pem").symlink_to(outside)
    before_outside = snapshot(outside)
    _refused(cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01"), "certificates/pem")
    assert snapshot(outside) == before_outside
    assert not [p for p in outside.iterdir() if "httpscert.pem" in p.name]


@pytest.mark.parametrize("command", ["plan", "apply", "status"])
def test_the_host_folder_above_the_certificates_directory_as_a_symlink(
    project: Path, cli: Any, command: str
) -> None:
    _applied(project, cli)
    outside = _outside(project)
    _swap_for_link(_host(project), outside)
    before_outside = snapshot(outside)
    result = cli(command, PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01")
    _refused(result, "fleet/cm-pub-01")
    assert snapshot(outside) == before_outside


def test_the_site_config_folder_as_a_symlink(project: Path, cli: Any) -> None:
    certificates = _applied(project, cli)
    outside = _outside(project)
    _swap_for_link(certificates.parent / "nginx", outside)
    (outside / "default-web-site.conf").write_text("# an old config, to be replaced\n")
    before, before_outside = snapshot(project / ".provision"), snapshot(outside)
    _refused(cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01"), "nginx")
    assert snapshot(outside) == before_outside
    assert snapshot(project / ".provision") == before


def test_no_local_operation_goes_through_a_symlinked_folder(tmp_path: Path) -> None:
    """Each operation of the local transport, below a folder that is a symlink: refused,
    and nothing happens where it points (reads included: nothing is read through it)."""
    import asyncio

    from provision.transport.base import SymlinkInPath
    from provision.transport.local import LocalTransport

    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "victim").write_text(f"{SECRET}\n")
    (tmp_path / "certs").mkdir()
    link = tmp_path / "certs" / "link"
    link.symlink_to(outside)
    transport = LocalTransport("here", str(tmp_path))
    before = snapshot(outside)

    async def scenario() -> None:
        operations = {
            "read": transport.read(str(link / "victim")),
            "write": transport.write(str(link / "victim"), b"x", 0o644),
            "write-below": transport.write(str(link / "new" / "x"), b"x", 0o644),
            "create": transport.create_exclusive(str(link / "lock"), b"x", 0o644),
            "remove": transport.remove(str(link / "victim")),
            "remove-dir": transport.remove_dir(str(link / "sub")),
            "list": transport.list_dir(str(link)),
            "list-below": transport.list_dir(str(link / "sub")),
        }
        for name, operation in operations.items():
            with pytest.raises(SymlinkInPath, match=f"{link} is a symlink") as caught:
                await operation
            assert SECRET not in str(caught.value), name
            assert snapshot(outside) == before, name
            assert sorted(p.name for p in outside.iterdir()) == ["sub", "victim"], name
        # A file where a folder should be is no symlink: reading below it finds nothing.
        assert (await transport.read(str(outside / "victim" / "x"))).kind == "missing"

    asyncio.run(scenario())


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_a_file_where_the_certificates_directory_should_be(
    project: Path, cli: Any, command: str
) -> None:
    certificates = _host(project) / "certificates"
    certificates.parent.mkdir(parents=True)
    certificates.write_text("not a folder\n")
    before = snapshot(project / ".provision")
    result = cli(command, PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01")
    output = result.stdout + result.stderr
    assert result.exit_code == 1, output
    assert "Traceback" not in output
    assert f"{certificates} is a file, not a folder" in output, output
    assert snapshot(project / ".provision") == before
