"""Hostile command-line inputs (issue 14): limits and input files that are not what they
claim to be. Each case, for `plan` and `apply`: exit status 1, one paragraph starting with
`error:` that names the input, no traceback, and every file in the project as it was.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot

PLAYBOOK = "playbooks/callmanager-https.yml"
INVENTORY = "inventory/example.yml"


def _fifo(project: Path) -> str:
    path = project / "a.fifo"
    os.mkfifo(path)
    return str(path.name)


def _not_utf8(project: Path) -> str:
    path = project / "bad.retry"
    path.write_bytes(b"cm-pub-01\n\xff\xfe\n")
    return path.name


UNREADABLE = "cannot read the limit file "

# name -> (arguments after the command, with {x} filled by the setup; expected fragment)
CASES: dict[str, tuple[list[str], str]] = {
    "limit-empty": (["--limit", ""], "host pattern '' is empty"),
    "limit-only-commas": (["--limit", ",,"], "host pattern ',,' is empty"),
    "limit-bang": (["--limit", "!"], "'!' needs a name after it"),
    "limit-double-bang": (["--limit", "!!"], "'!!' needs a name after it"),
    "limit-ampersand-bang": (["--limit", "cm-pub-01,&!"], "'&!' needs a name after it"),
    "limit-file-fifo": (
        ["--limit", "@{fifo}"],
        UNREADABLE + "a.fifo: is not a regular file",
    ),
    "limit-file-device": (
        ["--limit", "@/dev/zero"],
        UNREADABLE + "/dev/zero: is not a regular file",
    ),
    "limit-file-directory": (
        ["--limit", "@playbooks"],
        UNREADABLE + "playbooks: is a directory",
    ),
    "limit-file-not-utf8": (
        ["--limit", "@{not_utf8}"],
        "the limit file bad.retry is not UTF-8 text",
    ),
    "limit-file-missing": (
        ["--limit", "@nothing.retry"],
        UNREADABLE + "nothing.retry: no such file",
    ),
    "inventory-device": (["-i", "/dev/zero"], "/dev/zero: is not a regular file"),
    "inventory-fifo": (["-i", "{fifo}"], "a.fifo: is not a regular file"),
}
SETUPS = {"fifo": _fifo, "not_utf8": _not_utf8}


def _arguments(project: Path, template: list[str]) -> list[str]:
    made = {
        name: setup(project)
        for name, setup in SETUPS.items()
        if any("{" + name + "}" in part for part in template)
    }
    return [part.format(**made) if "{" in part else part for part in template]


@pytest.mark.parametrize("command", ["plan", "apply"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_command_line_is_refused(case: str, command: str, project: Path, cli: Any) -> None:
    template, fragment = CASES[case]
    arguments = _arguments(project, template)
    if "-i" not in arguments:
        arguments = ["-i", INVENTORY, *arguments]
    before = snapshot(project)
    result = cli(command, PLAYBOOK, *arguments)
    output = (result.stdout + result.stderr).strip()
    assert result.exit_code == 1, output
    assert "Traceback" not in output
    assert output.startswith("error: "), output
    assert "\n\n" not in output, f"more than one paragraph: {output!r}"
    assert fragment in output, output
    assert snapshot(project) == before
    assert not (project / ".provision").exists()


@pytest.mark.parametrize(
    "flags",
    [["-i", "a.yml", "-i", "b"], ["-i", "a.yml", "--inventory=b"], ["-ia.yml", "-i", "b"]],
)
def test_a_repeated_inventory_merges_every_source_never_only_the_last(
    project: Path, flags: list[str]
) -> None:
    """Click keeps only the last of a repeated plain option: -i is a list, so every spelling
    of a second -i adds a source (a.yml's hosts and variables stay)."""
    (project / "a.yml").write_text(
        "all:\n  vars:\n    connection: local\n"
        "    certificates_dir: .provision/c/{{ host.name }}\n    www_root: .provision/w\n"
        "  children:\n    callmanager:\n      hosts:\n"
        "        cm-pub-01: {fqdn: cm-pub-01.example.com}\n"
    )
    (project / "b").write_text("[callmanager]\ncm-sub-01 fqdn=cm-sub-01.example.com\n")
    done = subprocess.run(
        [sys.executable, "-m", "provision", "plan", "playbooks/callmanager-https.yml", *flags],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cm-pub-01" in done.stdout and "cm-sub-01" in done.stdout
    assert done.stdout.endswith("Plan: 2 hosts, 2 to change, 0 failed.\n"), done.stdout
