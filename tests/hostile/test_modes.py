"""Modes are managed (issue 14): a site config whose mode drifted (made world-writable by a
careless colleague or an attacker) is brought back and the plan says so; the playbook sets
the mode, and a mode that would let anyone rewrite a config is refused with file:line."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

PLAYBOOK = "playbooks/callmanager-https.yml"
INVENTORY = "inventory/example.yml"
RELOAD = "    reload: false\n"


def _config(project: Path) -> Path:
    return project / ".provision" / "fleet" / "cm-pub-01" / "nginx" / "default-web-site.conf"


def _with_mode(project: Path, mode: str) -> str:
    text = (project / PLAYBOOK).read_text()
    assert RELOAD in text
    (project / "playbooks" / "modes.yml").write_text(
        text.replace(RELOAD, RELOAD + f"    mode: {mode}\n")
    )
    return "playbooks/modes.yml"


def _changes(cli: Any, playbook: str) -> dict[str, str]:
    result = cli("plan", playbook, "-i", INVENTORY, "-l", "cm-pub-01", "--format", "json")
    return {
        c["resource"]: c["reason"]
        for c in json.loads(result.stdout)["hosts"]["cm-pub-01"]["changes"]
    }


def test_a_config_made_world_writable_is_brought_back(project: Path, cli: Any) -> None:
    assert cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01").exit_code == 0
    config = _config(project)
    config.chmod(0o666)
    assert _changes(cli, PLAYBOOK) == {"site Default Web Site": "mode 0666, want 0644"}
    assert cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01").exit_code == 0
    assert stat.S_IMODE(config.stat().st_mode) == 0o644
    assert _changes(cli, PLAYBOOK) == {}


def test_the_playbook_sets_a_configs_mode(project: Path, cli: Any) -> None:
    playbook = _with_mode(project, '"0640"')
    assert cli("apply", playbook, "-i", INVENTORY, "-l", "cm-pub-01").exit_code == 0
    assert stat.S_IMODE(_config(project).stat().st_mode) == 0o640
    assert _changes(cli, playbook) == {}


@pytest.mark.parametrize(
    ("mode", "problem"),
    [
        ('"0666"', "(0666) would let anyone on the host rewrite it"),
        ("644", "must hold permission bits only"),
        ('"rw-r--r--"', "is not a file mode"),
        ('"4755"', "is not a file mode"),
    ],
)
def test_an_unsafe_or_unreadable_mode_is_refused_with_its_line(
    project: Path, cli: Any, mode: str, problem: str
) -> None:
    playbook = _with_mode(project, mode)
    result = cli("validate", playbook, "-i", INVENTORY)
    output = result.stdout + result.stderr
    assert result.exit_code == 1, output
    assert "Traceback" not in output
    assert "playbooks/modes.yml:27: sites[0].mode:" in output, output
    assert problem in output, output


# --- the certificates directory ---------------------------------------------------------------

CERTIFICATES_DIR = 'certificates_dir: "{{ certificates_dir }}"\n'


def _certificates(project: Path) -> Path:
    return _config(project).parent.parent / "certificates"


def _with_folder_mode(project: Path, mode: str) -> str:
    text = (project / PLAYBOOK).read_text()
    assert CERTIFICATES_DIR in text
    (project / "playbooks" / "folder-mode.yml").write_text(
        text.replace(CERTIFICATES_DIR, CERTIFICATES_DIR + f"certificates_dir_mode: {mode}\n")
    )
    return "playbooks/folder-mode.yml"


def test_a_certificates_directory_opened_to_all_is_brought_back(project: Path, cli: Any) -> None:
    assert cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01").exit_code == 0
    folder = _certificates(project)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750  # made so
    folder.chmod(0o777)  # anyone may now plant files and links there
    changes = _changes(cli, PLAYBOOK)
    assert changes == {f"folder {folder}": "mode 0777, want 0750"}
    result = cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01")
    assert result.exit_code == 0 and "changed 1" in result.stdout, result.stdout
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750
    assert _changes(cli, PLAYBOOK) == {}
    # An idle run answered from its record sees a drift too: the folder's mode is stamped.
    assert "changed 0" in cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01").stdout
    folder.chmod(0o770)
    again = cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01")
    assert "changed 1" in again.stdout, again.stdout
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750


def test_the_playbook_sets_the_certificates_directory_mode(project: Path, cli: Any) -> None:
    playbook = _with_folder_mode(project, '"0700"')
    plan = cli("plan", playbook, "-i", INVENTORY, "-l", "cm-pub-01")
    assert "made 0750, want 0700" in plan.stdout, plan.stdout
    assert cli("apply", playbook, "-i", INVENTORY, "-l", "cm-pub-01").exit_code == 0
    assert stat.S_IMODE(_certificates(project).stat().st_mode) == 0o700
    assert _changes(cli, playbook) == {}
    # The saved-plan way gives the same: planned on a new host, applied as planned.
    assert (
        cli("plan", playbook, "-i", INVENTORY, "-l", "cm-sub-01", "--out", "p.json").exit_code == 0
    )
    applied = cli("apply", "p.json")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    sub = project / ".provision" / "fleet" / "cm-sub-01" / "certificates"
    assert stat.S_IMODE(sub.stat().st_mode) == 0o700


def test_a_world_writable_certificates_directory_mode_is_refused(project: Path, cli: Any) -> None:
    playbook = _with_folder_mode(project, '"0777"')
    result = cli("validate", playbook, "-i", INVENTORY)
    output = result.stdout + result.stderr
    assert result.exit_code == 1, output
    assert "Traceback" not in output
    assert "playbooks/folder-mode.yml:7: certificates_dir_mode:" in output, output
    assert "(0777) would let anyone on the host rewrite it" in output, output
