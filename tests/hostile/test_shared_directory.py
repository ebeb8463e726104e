"""One certificates directory, one owner (issue 14): two playbooks writing one folder used to
delete each other's certificates on every apply (each took the other's outputs for ones it
had dropped). The state file now names its owner; a second playbook is refused with both
names unless both say `shared_with:` and their outputs do not overlap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import snapshot

PLAYBOOK = "playbooks/callmanager-https.yml"
INVENTORY = "inventory/example.yml"
HOSTS = "hosts: callmanager\n"
SHARE_WITH_OTHER = "shared_with: [Phone services]\n"


def _other(project: Path, *, shared: bool, overlap: bool = False) -> str:
    """A second playbook on the same certificates directories: its own certificate, files."""
    text = (project / PLAYBOOK).read_text().replace(SHARE_WITH_OTHER, "")
    text = text.replace("name: CallManager HTTPS", "name: Phone services")
    text = text.replace("- name: httpscert", "- name: tomcat")
    if not overlap:
        for suffix in ("cer", "pem", "key"):
            text = text.replace(f"file: httpscert.{suffix}", f"file: tomcat.{suffix}")
    text = text.replace("certificate: httpscert", "certificate: tomcat")
    text = text.replace("default-web-site.conf", "phone-services.conf")
    if shared:
        text = text.replace(
            "hosts: callmanager\n", "hosts: callmanager\nshared_with: [CallManager HTTPS]\n"
        )
    (project / "playbooks" / "other.yml").write_text(text)
    return "playbooks/other.yml"


def _share_first(project: Path) -> None:
    path = project / PLAYBOOK
    path.write_text(
        path.read_text().replace(
            "hosts: callmanager\n", "hosts: callmanager\nshared_with: [Phone services]\n"
        )
    )


def _folder(project: Path) -> Path:
    return project / ".provision" / "fleet" / "cm-pub-01" / "certificates"


def _apply(cli: Any, playbook: str, *args: str) -> Any:
    return cli("apply", playbook, "-i", INVENTORY, "-l", "cm-pub-01", *args)


def test_a_second_playbook_is_refused_with_both_names(project: Path, cli: Any) -> None:
    assert _apply(cli, PLAYBOOK).exit_code == 0
    before = snapshot(project / ".provision")
    other = _other(project, shared=False)
    for command in ("plan", "apply"):
        result = cli(command, other, "-i", INVENTORY, "-l", "cm-pub-01")
        output = result.stdout + result.stderr
        assert result.exit_code == 1, output
        assert "Traceback" not in output
        assert "is managed by playbook 'CallManager HTTPS'; playbook 'Phone services'" in output
    assert snapshot(project / ".provision") == before


def test_playbooks_that_share_keep_each_others_files(project: Path, cli: Any) -> None:
    _share_first(project)
    other = _other(project, shared=True)
    assert _apply(cli, PLAYBOOK).exit_code == 0
    assert _apply(cli, other).exit_code == 0
    folder = _folder(project)
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    assert {"httpscert.pem", "httpscert.key", "tomcat.pem", "tomcat.key"} <= names
    # Each apply again: nothing to do, and nobody's files deleted (the old bug).
    for playbook in (PLAYBOOK, other, PLAYBOOK):
        again = _apply(cli, playbook, "--full")
        assert "changed 0" in again.stdout, again.stdout
    assert names == {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    state = json.loads((folder / ".provision-state.json").read_text())
    assert set(state["owners"]) == {"CallManager HTTPS", "Phone services"}


def test_sharing_playbooks_may_not_write_the_same_file(project: Path, cli: Any) -> None:
    _share_first(project)
    assert _apply(cli, PLAYBOOK).exit_code == 0
    before = snapshot(project / ".provision")
    result = _apply(cli, _other(project, shared=True, overlap=True))
    assert result.exit_code == 1
    assert "is shared with playbook 'CallManager HTTPS', which writes httpscert.cer" in (
        result.stdout + result.stderr
    )
    assert snapshot(project / ".provision") == before


def test_a_damaged_state_file_fails_the_host_and_is_left_for_inspection(
    project: Path, cli: Any
) -> None:
    assert _apply(cli, PLAYBOOK).exit_code == 0
    state = _folder(project) / ".provision-state.json"
    state.write_text('{"owners": {"x": {"outputs": {"c": "../../etc/passwd"}}}}')
    before = snapshot(project / ".provision")
    result = _apply(cli, PLAYBOOK)
    output = result.stdout + result.stderr
    assert result.exit_code == 1, output
    assert "is damaged (not the state provision writes)" in output
    assert snapshot(project / ".provision") == before


def test_a_state_file_of_the_first_format_is_adopted(project: Path, cli: Any) -> None:
    assert _apply(cli, PLAYBOOK).exit_code == 0
    state = _folder(project) / ".provision-state.json"
    outputs = {"httpscert": ["httpscert.cer", "httpscert.key", "httpscert.old", "httpscert.pem"]}
    state.write_text(json.dumps({"outputs": outputs}))
    (_folder(project) / "httpscert.old").write_text("an output the playbook dropped")
    result = _apply(cli, PLAYBOOK)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert not (_folder(project) / "httpscert.old").exists()
    assert set(json.loads(state.read_text())["owners"]) == {"CallManager HTTPS"}
