"""A killed `provision apply` over SSH never leaves a host broken (issue 16 kept issue 8's rule).

Over SSH the executor's durability points are SFTP requests: staged files fsynced
(``fsync@openssh.com``), then their folders fsynced (each folder opened like a file and
fsynced) before the journal's first rename, and again after the last rename, before the
journal goes. A real ``provision apply`` process is SIGKILLed at an exact point (chosen by
wrapping the transport's operations in that process, as tests/fleet.py's ``CRASH_HOOK``
does locally), against a real sshd; the next run must finish the replacement from the
journal and leave key and certificate matching.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_openssl
from ssh_counts import counting
from sshd import SshdFleet, SshServer, sshd_fleet
from test_ssh import apply, host_root, isolated_home, known_hosts_for, write_project

__all__ = ["isolated_home", "sshd_fleet"]  # fixtures, imported to be found

pytestmark = pytest.mark.integration

JOURNAL = ".provision-journal.json"

HOOK = r"""
import os, signal, sys
from provision.transport.ssh.transport import SSHTransport

EVENT, WANTED = sys.argv[1], int(sys.argv[2])
seen = {}

def hit(name):
    seen[name] = seen.get(name, 0) + 1
    if name == EVENT and seen[name] == WANTED:
        os.kill(os.getpid(), signal.SIGKILL)

commit, remove = SSHTransport.commit, SSHTransport.remove

async def committed(self, staged, path, **options):
    if not path.endswith((".provision-journal.json", ".provision-reload-pending")) and (
        "/.backup/" not in path
    ):
        hit("rename")
    await commit(self, staged, path, **options)

async def removed(self, path, **options):
    if path.endswith(".provision-journal.json"):
        hit("unjournal")
    await remove(self, path, **options)

SSHTransport.commit, SSHTransport.remove = committed, removed
sys.argv = ["provision", *sys.argv[3:]]
from provision.cli import main
main()
"""


def certificates(server: SshServer) -> Path:
    return host_root(server) / "certificates"


def key_matches_certificate(server: SshServer) -> bool:
    folder = certificates(server)
    from_key = run_openssl("pkey", "-in", str(folder / "web.key"), "-pubout")
    from_pem = run_openssl("x509", "-in", str(folder / "web.pem"), "-noout", "-pubkey")
    from_cer = run_openssl(
        "x509", "-inform", "DER", "-in", str(folder / "web.cer"), "-noout", "-pubkey"
    )
    return from_key == from_pem == from_cer


def killed_apply(playbook: Path, inventory: Path, known: Path, event: str, count: int) -> None:
    command = [
        sys.executable,
        "-c",
        HOOK,
        event,
        str(count),
        "apply",
        str(playbook),
        "-i",
        str(inventory),
        "--known-hosts",
        str(known),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.parametrize(("event", "count"), [("rename", 1), ("rename", 3), ("unjournal", 1)])
def test_killed_among_the_renames_is_finished_by_the_next_run(
    sshd_fleet: SshdFleet, tmp_path: Path, event: str, count: int
) -> None:
    [server] = sshd_fleet.start(1)
    playbook, inventory = write_project(tmp_path / "project", sshd_fleet, [server])
    known = known_hosts_for(tmp_path / "known_hosts", [server])
    assert apply(playbook, inventory, known_hosts=str(known))[server.name].status == "changed"
    # A key of another type: every output is replaced.
    playbook.write_text(playbook.read_text().replace("curve: p256", "curve: p384"))

    killed_apply(playbook, inventory, known, event, count)
    assert (certificates(server) / JOURNAL).exists()  # written (and durable) before any rename

    repaired = apply(playbook, inventory, known_hosts=str(known))[server.name]
    assert repaired.status == "changed", repaired.error
    assert repaired.plan.changes[0].resource == "lock"  # the killed run's, taken over
    # Killed before a rename, the journal still had files to move; killed as it was being
    # removed, every rename was done (and durable): only the reload is still owed.
    journaled = any(c.resource == "journal" for c in repaired.plan.changes)
    assert journaled == (event == "rename"), repaired.plan.changes
    assert (host_root(server) / "reloaded").exists()
    assert key_matches_certificate(server)
    assert "ASN1 OID: secp384r1" in run_openssl(
        "pkey", "-in", str(certificates(server) / "web.key"), "-noout", "-text"
    )
    left = [p.name for p in certificates(server).iterdir() if p.name.endswith(".tmp")]
    assert left == [] and not (certificates(server) / JOURNAL).exists()
    assert apply(playbook, inventory, known_hosts=str(known))[server.name].status == "ok"


def test_the_renamed_folders_are_fsynced_before_the_journal_goes(
    sshd_fleet: SshdFleet, tmp_path: Path
) -> None:
    """Durability point 2 over SFTP: after the last rename, the folders renamed into are
    fsynced (a folder handle and fsync@openssh.com) before the journal is removed; point 1:
    the staged files and the journal are fsynced, and their folders, before the first
    rename. No command runs for either."""
    [server] = sshd_fleet.start(1)
    playbook, inventory = write_project(tmp_path / "project", sshd_fleet, [server])
    known = known_hosts_for(tmp_path / "known_hosts", [server])
    with counting() as counts:
        assert apply(playbook, inventory, known_hosts=str(known))[server.name].status == "changed"
    requests = counts.at(server.port).requests
    renames = [i for i, r in enumerate(requests) if r == "posix-rename@openssh.com"]
    # The backup folder's rename, the journal's and the marker's come first; the outputs'
    # renames are the last ones, sent together.
    last = renames[-1]
    after = requests[last + 1 :]
    assert "fsync@openssh.com" in after and "remove" in after
    assert after.index("fsync@openssh.com") < after.index("remove")
    before_outputs = requests[: renames[-3]]
    assert before_outputs.count("fsync@openssh.com") >= 4  # staged files, then folders
    assert counts.at(server.port).commands == ["sh -s"]  # the config test and the reload
