"""An idle run answered from the converged record (issue 14, item 10) says what the full run
would: on a full disk, or where no file may grow, the full apply cannot take the host's lock
and fails the host, so a hit must not say `ok`. A hit proves the lock can be created by
taking it (and releasing it at once); when it cannot, the record is dropped and the full run
answers."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Cli
from test_converged import INVENTORY, PLAYBOOK, converge, evaluations, records

__all__ = ["evaluations"]  # a fixture, imported to be found


@pytest.fixture
def small_disk(project: Path) -> Iterator[Path]:
    """The hosts' folder (.provision) on a 2 MB tmpfs of its own, to fill."""
    folder = project / ".provision"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the fsize test runs")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path) -> Path:
    """Fill the disk with a file in a folder of its own (nothing the run reads)."""
    (folder / "elsewhere").mkdir()
    path = folder / "elsewhere" / "filler"
    with path.open("wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return path


def test_a_full_disk_is_not_answered_ok_from_the_record(
    project: Path,
    cli: Cli,
    small_disk: Path,
    evaluations: list[str],
    converged_records: Path,
) -> None:
    converge(cli, project)
    assert records(converged_records)
    evaluations.clear()
    filler = _fill(small_disk)
    fast = cli("apply", PLAYBOOK, "-i", INVENTORY)
    assert evaluations == [PLAYBOOK]  # the record was not trusted
    full = cli("apply", PLAYBOOK, "-i", INVENTORY, "--full")
    assert full.exit_code == fast.exit_code == 1, fast.stdout
    assert "No space left on device" in fast.stdout, fast.stdout
    assert "Traceback" not in fast.stdout + fast.stderr
    filler.unlink()
    again = cli("apply", PLAYBOOK, "-i", INVENTORY)
    assert again.exit_code == 0 and "changed 0" in again.stdout, again.stdout


# A process that may not grow any file (RLIMIT_FSIZE 0, SIGXFSZ ignored so a write fails
# with EFBIG rather than killing it): the same refusal as a full disk, without a mount.
LIMITED = r"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
sys.argv = ["provision", *sys.argv[1:]]
from provision.cli import main
main()
"""


def test_no_room_to_write_a_lock_is_not_answered_ok_from_the_record(
    project: Path, cli: Cli, converged_records: Path
) -> None:
    converge(cli, project)
    assert records(converged_records)
    env = {**os.environ, "PROVISION_CACHE_DIR": str(converged_records)}
    command = [sys.executable, "-c", LIMITED, "apply", PLAYBOOK, "-i", INVENTORY]
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "File too large" in done.stdout, done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert "Recap: ok 0, changed 0, failed 3" in done.stdout
    # The retry file cannot be written either: the recap is printed all the same, and the
    # hosts to retry are named instead.
    assert "no retry file" in done.stderr and "File too large" in done.stderr, done.stderr
    assert "--limit cm-pub-01,cm-sub-01,cm-sub-02" in done.stderr
