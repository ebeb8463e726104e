"""How much each host is asked over SSH, counted against real sshd instances (issue 16).

A run's cost per host is set by the shells it starts (sshd runs the login shell, and its
start-up files, for every exec request) and by the round trips it waits for, not by the work:
so these are asserted as counts, never as timings. ``ssh_counts.counting`` wraps the real
asyncssh client to count them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from ssh_counts import Counts, HostCounts, counting
from sshd import SshdFleet, SshServer, become_user, sshd_fleet
from test_ssh import (
    BECOME_USER,
    apply,
    assert_landed,
    host_root,
    isolated_home,
    known_hosts_for,
    write_project,
)

from provision.api import load, run
from provision.transport.factory import ConnectOptions

__all__ = ["become_user", "isolated_home", "sshd_fleet"]  # fixtures, imported to be found

pytestmark = pytest.mark.integration


def plan(playbook: Path, inventory: Path, **options: object) -> dict[str, str]:
    loaded = load(playbook, inventory, connect=ConnectOptions(**options))  # type: ignore[arg-type]
    _plan, report = run(loaded, apply=False)
    return {h.host: h.status for h in report.hosts}


def counted(servers: list[SshServer], act: Callable[[], dict[str, object]]) -> list[HostCounts]:
    with counting() as counts:
        act()
    return [_of(counts, server) for server in servers]


def _of(counts: Counts, server: SshServer) -> HostCounts:
    return counts.at(server.port)


def statuses(result: dict[str, object]) -> set[str]:
    return {getattr(r, "status", r) for r in result.values()}  # type: ignore[misc]


def test_a_host_with_nothing_to_do_starts_no_shell(sshd_fleet: SshdFleet, tmp_path: Path) -> None:
    """First apply: one exec per host, the shell that runs the config test and the reload
    (files, modes, renames and folder fsyncs all over SFTP). Then a plan and a no-change
    apply: SFTP alone, no exec at all (not even a sync for the lock)."""
    servers = sshd_fleet.start(2)
    playbook, inventory = write_project(tmp_path / "project", sshd_fleet, servers)
    known = str(known_hosts_for(tmp_path / "known_hosts", servers))
    results: dict[str, dict[str, object]] = {}

    def step(label: str, act: Callable[[], dict[str, object]]) -> list[HostCounts]:
        def done() -> dict[str, object]:
            results[label] = act()
            return results[label]

        return counted(servers, done)

    first = step("first", lambda: apply(playbook, inventory, known_hosts=known))
    assert statuses(results["first"]) == {"changed"}
    for server in servers:
        assert_landed(server)  # the test ran, and the reload
    idle = step("idle", lambda: apply(playbook, inventory, known_hosts=known))
    assert statuses(results["idle"]) == {"ok"}
    planned = step("plan", lambda: plan(playbook, inventory, known_hosts=known))
    assert statuses(results["plan"]) == {"ok"}

    for counts in first:
        assert counts.execs == 1 and counts.commands == ["sh -s"], counts
        assert counts.subsystems == 1 and counts.channels == 2
        assert "rename" not in counts.requests  # posix-rename@openssh.com only
    for counts in (*idle, *planned):
        assert counts.execs == 0 and counts.channels == 1, counts
    # SFTP requests that do not wait for each other go together: a bound, not a timing,
    # so that a change that sends them one by one again is seen.
    assert max(c.sftp_rounds for c in idle) <= 10, idle
    assert max(c.sftp_rounds for c in planned) <= 8, planned
    # (57 when issue 16 landed; pruning backups by what each undid, issue 15, lists the
    # backups again once the files are in place.)
    assert max(c.sftp_rounds for c in first) <= 64, first


def test_under_become_one_sudo_per_host(
    sshd_fleet: SshdFleet, become_user: str, tmp_path: Path
) -> None:
    """Under become every privileged step goes through one root shell per host: one exec
    (one ``sudo``) for a first apply, reload included, and one for a no-change apply."""
    servers = sshd_fleet.start(2)
    roots = {s.name: Path(sshd_fleet.shared) / f"become-{s.name}" for s in servers}
    playbook, inventory = write_project(
        tmp_path / "project", sshd_fleet, servers, user=BECOME_USER, become=True, roots=roots
    )
    known = str(known_hosts_for(tmp_path / "known_hosts", servers))

    first = counted(servers, lambda: apply(playbook, inventory, known_hosts=known))
    for server in servers:
        assert (roots[server.name] / "reloaded").read_text() == f"0 sudo by {become_user}"
    idle = counted(servers, lambda: apply(playbook, inventory, known_hosts=known))
    for counts in (*first, *idle):
        assert counts.commands == ["sudo -n -- sh -s"], counts
        assert counts.channels == 2
    assert {host_root(s).exists() for s in servers} == {False}  # (written where roots say)


TRUST = """\
trust:
  - name: fleet
    roots: [{{file: root.pem}}]
    stores:
      - type: debian
        dir: "{{{{ certificates_dir }}}}/../trust/local"
        update_command: >-
          mkdir -p {{{{ certificates_dir }}}}/../trust/etc {{{{ certificates_dir }}}}/../trust/hooks
          {{{{ certificates_dir }}}}/../trust/certs && : > {{{{ certificates_dir }}}}/../trust/conf
          && {tool} --certsconf {{{{ certificates_dir }}}}/../trust/conf
          --certsdir {{{{ certificates_dir }}}}/../trust/certs
          --localcertsdir {{{{ certificates_dir }}}}/../trust/local
          --etccertsdir {{{{ certificates_dir }}}}/../trust/etc
          --hooksdir {{{{ certificates_dir }}}}/../trust/hooks
"""


def test_a_trust_store_update_is_one_step_of_the_host_script(
    sshd_fleet: SshdFleet, tmp_path: Path
) -> None:
    """A trust store's update command runs in the host's one shell with the config test and
    the reload: one exec for the first apply, none when nothing changed, one when a root is
    added."""
    from conftest import require_tool
    from test_trust_stores import make_root

    tool = require_tool("update-ca-certificates")
    servers = sshd_fleet.start(1)
    playbook, inventory = write_project(tmp_path / "project", sshd_fleet, servers)
    playbook.write_text(playbook.read_text() + TRUST.format(tool=tool))
    make_root(playbook.parent / "root.pem", "SSH Fleet Root")
    known = str(known_hosts_for(tmp_path / "known_hosts", servers))

    (first,) = counted(servers, lambda: apply(playbook, inventory, known_hosts=known))
    (idle,) = counted(servers, lambda: apply(playbook, inventory, known_hosts=known))
    bundle = host_root(servers[0]) / "trust" / "etc" / "ca-certificates.crt"
    assert bundle.read_bytes().count(b"BEGIN CERTIFICATE") == 1
    other = make_root(tmp_path / "other.pem", "SSH Fleet Other Root")
    with (playbook.parent / "root.pem").open("ab") as handle:
        handle.write((tmp_path / "other.pem").read_bytes())
    (added,) = counted(servers, lambda: apply(playbook, inventory, known_hosts=known))
    assert bundle.read_bytes().count(b"BEGIN CERTIFICATE") == 2, other
    assert first.execs == 1 and first.commands == ["sh -s"], first
    assert idle.execs == 0, idle
    assert added.execs == 1 and added.commands == ["sh -s"], added
