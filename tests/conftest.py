"""Shared fixtures: a temporary copy of the project, the CLI, and real tools.

Integration tests need real programs (nginx, apache2ctl, haproxy, sshd, openssl). Locally a missing
program skips the test; in CI (``CI=true``) it fails, so a server that is not installed can
never turn into a green run that tested nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in SBIN:
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    return None


def require_tool(name: str) -> str:
    """The tool's path; skip without it locally, fail without it in CI."""
    path = find_tool(name)
    if path is None:
        message = f"{name} is not installed (apt-get install it; .ci/run does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(autouse=True)
def converged_records(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test its own folder of converged records (never the user's ~/.cache), so a
    record one test made never answers another's run."""
    folder = tmp_path_factory.mktemp("records")
    monkeypatch.setenv("PROVISION_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def openssl() -> str:
    return require_tool("openssl")


def run_openssl(*args: str, input: bytes | None = None) -> str:
    result = subprocess.run(["openssl", *args], input=input, capture_output=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed: {result.stderr.decode()}")
    return result.stdout.decode(errors="replace")


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


class Cli:
    """Runs `provision` in-process, as a user would type it, from the project folder."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        from provision.cli import _mount_subcommands, app

        _mount_subcommands()
        runner = CliRunner()
        old = Path.cwd()
        os.chdir(self.cwd)
        try:
            result = runner.invoke(app, list(args), env=env, catch_exceptions=False)
        finally:
            os.chdir(old)
        return Result(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A copy of the project's playbooks, inventory and templates in a temporary folder."""
    # Not the CA folders or retry files a local run may have left beside the playbooks.
    ignore = shutil.ignore_patterns("pki", "*.retry")
    for folder in ("playbooks", "inventory", "templates"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=ignore)
    yield tmp_path


@pytest.fixture
def cli(project: Path) -> Cli:
    return Cli(project)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file below ``folder``: content, mode and mtime (to prove nothing changed)."""
    if not folder.exists():
        return {}
    result = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            info = path.stat()
            result[str(path.relative_to(folder))] = (
                path.read_bytes(),
                info.st_mode,
                info.st_mtime_ns,
            )
    return result
