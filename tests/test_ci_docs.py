"""docs/ci.md works as written: its provision steps, taken from the document's own YAML, run
in a copy of the project against the example playbook (the real `provision` command, in bash,
as the CI runner would run them). Steps that need the network (pip, gh, curl) are left out,
by name, so a step added to the document cannot be skipped without this test saying so."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT
from test_precommit_hooks import hooks

DOC = ROOT / "docs" / "ci.md"
NETWORK = re.compile(r"\b(pip|gh|curl)\b|~/\.ssh")


def yaml_blocks() -> list[Any]:
    text = DOC.read_text()
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def block_with(key: str) -> dict[str, Any]:
    (found,) = [b for b in yaml_blocks() if isinstance(b, dict) and key in b]
    return found


def bash(project: Path, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)  # where `provision` is installed
    full_env = {**os.environ, **env, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    assert "${{" not in script, "a run script must read expressions through env:"
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=project,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def runnable_steps(job: dict[str, Any]) -> dict[str, str]:
    """A GitHub job's run steps that work offline, by name."""
    return {
        step["name"]: step["run"]
        for step in job["steps"]
        if "run" in step and not NETWORK.search(step["run"])
    }


def converged(project: Path) -> bool:
    result = bash(
        project, 'provision plan "$PLAYBOOK" -i "$INVENTORY" --detailed-exitcode', github_env()
    )
    assert result.returncode in (0, 2), result.stderr
    return result.returncode == 0


def github_env() -> dict[str, str]:
    return {k: str(v) for k, v in block_with("jobs")["env"].items()}


def test_the_document_has_its_three_configurations() -> None:
    workflow = block_with("jobs")
    assert sorted(workflow["jobs"]) == ["apply", "plan"]
    assert workflow["env"] == {
        "PLAYBOOK": "playbooks/callmanager-https.yml",
        "INVENTORY": "inventory/example.yml",
    }
    gitlab = block_with("default")
    assert {"plan", "apply"} <= set(gitlab)
    assert block_with("repos")


def test_github_pull_request_plan_step(project: Path, tmp_path: Path) -> None:
    job = block_with("jobs")["jobs"]["plan"]
    steps = runnable_steps(job)
    assert sorted(steps) == ["Plan"]
    summary = tmp_path / "summary.md"
    result = bash(project, steps["Plan"], {**github_env(), "GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 0, result.stdout + result.stderr
    plan = (project / "plan.md").read_text()
    assert plan.startswith("# provision plan\n")
    assert "**3 hosts, 3 to change, 0 failed.**" in plan
    assert (project / "comment.md").read_text() == plan  # short enough for one comment
    assert summary.read_text() == plan
    assert "[path-case]" in result.stdout  # lint's findings in the job's log
    (comment,) = [s for s in job["steps"] if s.get("name") == "Comment on the pull request"]
    assert "--body-file comment.md" in comment["run"]


def test_github_plan_comment_is_cut_to_what_a_comment_holds(project: Path, tmp_path: Path) -> None:
    hosts = {
        f"cm-{n:02}": {"address": f"10.10.1.{n}", "fqdn": f"cm-{n:02}.voice.example.com"}
        for n in range(1, 31)
    }
    inventory = yaml.safe_load((project / "inventory" / "example.yml").read_text())
    inventory["all"]["children"]["callmanager"]["hosts"] = hosts
    (project / "inventory" / "large.yml").write_text(yaml.safe_dump(inventory))
    steps = runnable_steps(block_with("jobs")["jobs"]["plan"])
    summary = tmp_path / "summary.md"
    env = {**github_env(), "INVENTORY": "inventory/large.yml", "GITHUB_STEP_SUMMARY": str(summary)}
    result = bash(project, steps["Plan"], env)
    assert result.returncode == 0, result.stderr
    plan = (project / "plan.md").read_text()
    comment = (project / "comment.md").read_text()
    assert len(plan) > 65536
    assert len(comment) < 65536
    assert comment.startswith(plan[:60000])
    assert comment.endswith("(cut short: the whole plan is in the summary of this workflow run)\n")
    assert summary.read_text() == plan


def test_github_apply_after_merge(project: Path, tmp_path: Path) -> None:
    steps = runnable_steps(block_with("jobs")["jobs"]["apply"])
    assert sorted(steps) == ["Plan and apply"]
    env = {**github_env(), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    assert not converged(project)
    result = bash(project, steps["Plan and apply"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed 3" in result.stdout or "3 changed" in result.stdout, result.stdout
    saved = (project / "plan.json").read_text()
    assert '"format": "provision-plan/' in saved
    assert converged(project)
    # Merged again with nothing to change: planned, and nothing applied.
    again = bash(project, steps["Plan and apply"], env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == "nothing to change"


def test_github_apply_refuses_a_plan_whose_inputs_changed(project: Path, tmp_path: Path) -> None:
    """What `apply plan.json` promises the document: nothing that was not planned."""
    env = {**github_env(), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    planned = bash(project, 'provision plan "$PLAYBOOK" -i "$INVENTORY" --out plan.json', env)
    assert planned.returncode == 0, planned.stderr
    playbook = project / "playbooks" / "callmanager-https.yml"
    playbook.write_text(playbook.read_text().replace("validity_days: 825", "validity_days: 397"))
    refused = bash(project, "provision apply plan.json", env)
    assert refused.returncode == 1
    assert not (project / ".provision").exists()


def test_gitlab_jobs(project: Path) -> None:
    gitlab = block_with("default")
    env = {k: str(v) for k, v in gitlab["variables"].items()}
    plan = [line for line in gitlab["plan"]["script"] if not NETWORK.search(line)]
    assert len(plan) == len(gitlab["plan"]["script"]) - 1  # only the note is posted online
    result = bash(project, "\n".join(plan), env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "plan.md").read_text().startswith("# provision plan\n")
    (apply_script,) = gitlab["apply"]["script"]
    result = bash(project, apply_script, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "plan.json").exists()
    assert converged(project)
    assert bash(project, apply_script, env).stdout.strip().endswith("nothing to change")


@pytest.mark.parametrize("hook_id", ["provision-validate", "provision-lint"])
def test_pre_commit_config(project: Path, hook_id: str) -> None:
    """The document's .pre-commit-config.yaml names the repository's hooks; each, as
    pre-commit runs it with the configured args, checks the example playbook."""
    (repo,) = block_with("repos")["repos"]
    configured = {hook["id"]: hook for hook in repo["hooks"]}
    assert set(configured) == set(hooks())
    hook = hooks()[hook_id]
    command = f"{hook['entry']} {' '.join(configured[hook_id]['args'])} {GITHUB_PLAYBOOK}"
    result = bash(project, command, {})
    expected = 0 if hook_id == "provision-validate" else 1  # the example has lint findings
    assert result.returncode == expected, result.stdout + result.stderr
    assert result.stdout.startswith(GITHUB_PLAYBOOK)


GITHUB_PLAYBOOK = "playbooks/callmanager-https.yml"
