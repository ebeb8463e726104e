"""`provision plan --format markdown`: the plan as a pull-request comment.

The example playbook's plan in a fresh project is compared with the reviewed golden file
tests/golden/plan/example.md. The temporary project's path is replaced by PROJECT. After an
intended change to the report, regenerate it and review the diff:

    UPDATE_GOLDEN=1 python -m pytest tests/test_plan_markdown.py
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

from conftest import Cli

PLAYBOOK = "playbooks/callmanager-https.yml"
INVENTORY = "inventory/example.yml"
HOSTS = ("cm-pub-01", "cm-sub-01", "cm-sub-02")
GOLDEN = Path(__file__).parent / "golden" / "plan" / "example.md"
PLACEHOLDER = "PROJECT"
UPDATE = os.environ.get("UPDATE_GOLDEN", "") not in ("", "0")


def markdown(cli: Cli, *extra: str) -> str:
    result = cli("plan", PLAYBOOK, "-i", INVENTORY, "--format", "markdown", *extra)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stderr == ""
    return result.stdout


def normalised(project: Path, text: str) -> str:
    for path in {str(project.resolve()), str(project)}:
        text = text.replace(path, PLACEHOLDER)
    return text


def sections(text: str) -> dict[str, str]:
    """Each `## host` section's text, by host, in order."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_markdown_plan_matches_golden_file(project: Path, cli: Cli) -> None:
    text = normalised(project, markdown(cli))
    assert str(project) not in text and "/tmp/" not in text
    if UPDATE:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert GOLDEN.is_file(), "golden file missing (UPDATE_GOLDEN=1)"
    golden = GOLDEN.read_text(encoding="utf-8")
    if text != golden:
        diff = "".join(
            difflib.unified_diff(
                golden.splitlines(keepends=True),
                text.splitlines(keepends=True),
                "golden/plan/example.md",
                "plan --format markdown",
            )
        )
        raise AssertionError(
            f"markdown plan differs from the golden file (UPDATE_GOLDEN=1 after review):\n{diff}"
        )


def test_markdown_plan_structure(project: Path, cli: Cli) -> None:
    text = markdown(cli)
    lines = text.split("\n")
    assert lines[0] == "# provision plan"
    assert text.endswith("\n") and not text.endswith("\n\n")
    # The summary table comes first, before any host's section: one row per host.
    first_section = text.index("\n## ")
    summary = text[:first_section]
    assert "| host | status | changes |\n|---|---|---|\n" in summary
    for host in HOSTS:
        assert f"| {host} | changes | 5 |" in summary
    assert "**3 hosts, 3 to change, 0 failed.**" in summary
    # One `## host` section per host, in inventory order.
    headers = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headers == list(HOSTS)
    for host, body in sections(text).items():
        assert "| action | resource | reason |" in body
        assert "| create | certificate httpscert | missing |" in body
        assert "| create | site Default Web Site | missing |" in body
        # The rendered config's diff, in a ```diff fenced block inside <details>.
        fences = re.findall(r"^```.*$", body, flags=re.MULTILINE)
        assert fences == ["```diff", "```"], fences
        block = body.split("```diff\n", 1)[1].split("\n```", 1)[0]
        config = f"{project}/.provision/fleet/{host}/nginx/default-web-site.conf"
        assert block.startswith(f"--- {config} (on host)\n+++ {config} (rendered)\n@@ ")
        assert all(line[:1] in ("+", "-", " ", "@") for line in block.split("\n")), block
        assert f"+# Rendered by provision from callmanager-https.yml for host {host}" in block
        assert (
            body.index("<details><summary>site Default Web Site: diff</summary>")
            < body.index("```diff")
            < body.index("</details>")
        )
    # Plans carry no key material, so neither does their Markdown.
    assert "PRIVATE KEY" not in text


def test_markdown_plan_is_deterministic(project: Path, cli: Cli) -> None:
    first = markdown(cli)
    second = markdown(cli)
    assert first == second


def test_markdown_plan_after_apply_shows_only_the_drift(project: Path, cli: Cli) -> None:
    applied = cli("apply", PLAYBOOK, "-i", INVENTORY)
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    config = project / ".provision" / "fleet" / "cm-sub-01" / "nginx" / "default-web-site.conf"
    with config.open("a", encoding="utf-8") as handle:
        handle.write("# a local | edit\n")
    text = markdown(cli)
    assert "| cm-pub-01 | no changes | 0 |" in text
    assert "| cm-sub-01 | changes | 1 |" in text
    assert "| cm-sub-02 | no changes | 0 |" in text
    assert "**3 hosts, 1 to change, 0 failed.**" in text
    by_host = sections(text)
    assert list(by_host) == list(HOSTS)
    assert by_host["cm-pub-01"].strip() == "No changes."
    assert by_host["cm-sub-02"].strip() == "No changes."
    body = by_host["cm-sub-01"]
    assert "| update | site Default Web Site | rendered config differs |" in body
    block = body.split("```diff\n", 1)[1].split("\n```", 1)[0]
    assert "\n-# a local | edit" in block
    assert not any(
        line.startswith("+") and not line.startswith("+++") for line in block.split("\n")
    ), block
