""".pre-commit-hooks.yaml: its hooks are what pre-commit accepts, and each `entry`, run as
pre-commit runs it (the entry, the hook's args, then the matching files), works on the
example playbooks: the real `provision` command in a subprocess, in a copy of the project."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT

HOOKS_FILE = ROOT / ".pre-commit-hooks.yaml"
# The keys pre-commit's manifest schema knows (pre_commit/clientlib.py, MANIFEST_HOOK_DICT).
MANIFEST_KEYS = {
    "id",
    "name",
    "entry",
    "language",
    "alias",
    "files",
    "exclude",
    "types",
    "types_or",
    "exclude_types",
    "additional_dependencies",
    "args",
    "always_run",
    "fail_fast",
    "pass_filenames",
    "description",
    "language_version",
    "log_file",
    "minimum_pre_commit_version",
    "require_serial",
    "stages",
    "verbose",
}
# What a user's .pre-commit-config.yaml adds to every hook (docs/ci.md).
USER_ARGS = ["-i", "inventory/example.yml"]
EXAMPLES = ["playbooks/callmanager-https.yml", "playbooks/callmanager-https-ca.yml"]


def hooks() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(HOOKS_FILE.read_text())
    assert isinstance(data, list)
    return {hook["id"]: hook for hook in data}


def run_hook(project: Path, hook_id: str, files: list[str]) -> subprocess.CompletedProcess[str]:
    """The hook's command line as pre-commit builds it, run in ``project``."""
    hook = hooks()[hook_id]
    command = [*shlex.split(hook["entry"]), *hook.get("args", []), *USER_ARGS, *files]
    # pre-commit puts its environment's bin first on PATH; ours is this interpreter's.
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "PFX_PASSWORD": "x"}
    return subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_manifest_is_what_pre_commit_accepts() -> None:
    found = hooks()
    assert sorted(found) == ["provision-lint", "provision-validate"]
    for hook in found.values():
        assert {"id", "name", "entry", "language"} <= set(hook)
        assert set(hook) <= MANIFEST_KEYS, set(hook) - MANIFEST_KEYS
        assert hook["language"] == "python"  # pre-commit pip-installs this repository
        assert shlex.split(hook["entry"])[0] == "provision"  # [project.scripts]
        assert hook.get("pass_filenames", True)


@pytest.mark.parametrize("hook_id", ["provision-validate", "provision-lint"])
def test_files_match_playbooks_only(hook_id: str) -> None:
    pattern = re.compile(hooks()[hook_id]["files"])
    for path in [*EXAMPLES, "deploy/playbooks/site.yaml"]:
        assert pattern.search(path), path
    for path in ["inventory/example.yml", "playbooks/pki/voice-root/x.yml", "README.md"]:
        assert not pattern.search(path), path
    # Every playbook in the repository is one the hooks check.
    for path in (ROOT / "playbooks").glob("*.yml"):
        assert pattern.search(str(path.relative_to(ROOT)))


def test_validate_hook_on_the_example_playbooks(project: Path) -> None:
    result = run_hook(project, "provision-validate", EXAMPLES)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{playbook}: valid for 3 hosts" for playbook in EXAMPLES]


def test_validate_hook_reports_every_file_and_fails_on_a_broken_one(project: Path) -> None:
    broken = "playbooks/broken.yml"
    (project / broken).write_text("name: broken\ncertificates_dir: x\nsites: 5\n")
    result = run_hook(project, "provision-validate", [broken, EXAMPLES[0]])
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {broken}:3: sites: ")
    assert result.stdout == f"{EXAMPLES[0]}: valid for 3 hosts\n"  # the next file still checked


def test_lint_hook_fails_on_findings(project: Path) -> None:
    result = run_hook(project, "provision-lint", EXAMPLES)
    assert result.returncode == 1, result.stderr
    assert f"{EXAMPLES[0]}: 3 findings for 3 hosts (--strict: failing)" in result.stdout
    assert f"{EXAMPLES[1]}: 2 findings for 3 hosts (--strict: failing)" in result.stdout
    assert "[path-case]" in result.stdout


def test_lint_hook_passes_a_clean_playbook(project: Path) -> None:
    book = yaml.safe_load((project / EXAMPLES[0]).read_text())
    book["certificates"][0]["key"] = {"type": "ecdsa", "curve": "p256"}
    book["certificates"][0]["validity_days"] = 397
    book["sites"][0]["case_insensitive_paths"] = True
    (project / "playbooks" / "clean.yml").write_text(yaml.safe_dump(book, sort_keys=False))
    result = run_hook(project, "provision-lint", ["playbooks/clean.yml"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "playbooks/clean.yml: no findings for 3 hosts\n"
