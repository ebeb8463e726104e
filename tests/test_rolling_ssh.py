"""Rolling runs over SSH (issue 6): ``serial`` batches, ``max_fail_percentage`` stopping a run
after the first batch that fails too much, and the retry file for ``--limit @FILE``.

Five real sshd instances on loopback ports (see tests/sshd.py) stand for five hosts, in
inventory order host1..host5. A dead host is an sshd that was stopped: its port is closed, so
connecting is refused at once. Everything goes through the CLI, as a user would run it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Cli, Result, snapshot
from sshd import SshdFleet, SshServer, sshd_fleet
from test_ssh import assert_landed, host_root, isolated_home, known_hosts_for, write_project

__all__ = ["isolated_home", "sshd_fleet"]  # fixtures, imported to be found

pytestmark = pytest.mark.integration

PLAYBOOK = "playbooks/ssh.yml"
INVENTORY = "playbooks/ssh-inventory.yml"
RETRY = "playbooks/ssh.retry"


def rolling(
    project: Path,
    fleet: SshdFleet,
    servers: list[SshServer],
    *,
    serial: Any = None,
    max_fail: float | None = None,
) -> Path:
    """The SSH playbook and inventory in ``project/playbooks``, with the rolling settings."""
    playbook, _inventory = write_project(project / "playbooks", fleet, servers)
    book = yaml.safe_load(playbook.read_text())
    extra: dict[str, Any] = {}
    if serial is not None:
        extra["serial"] = serial
    if max_fail is not None:
        extra["max_fail_percentage"] = max_fail
    # The rolling settings right after `hosts:`, where a reader looks for them.
    ordered = {k: v for k, v in book.items() if k in ("name", "hosts")}
    playbook.write_text(yaml.safe_dump({**ordered, **extra, **book}, sort_keys=False))
    return known_hosts_for(project / "known_hosts", servers)


def apply(cli: Cli, known: Path, *extra: str) -> tuple[Result, dict[str, Any]]:
    result = cli(
        "apply",
        PLAYBOOK,
        "-i",
        INVENTORY,
        "--known-hosts",
        str(known),
        "--connect-timeout",
        "5",
        "--format",
        "json",
        *extra,
    )
    assert "Traceback" not in result.stdout + result.stderr
    try:
        document = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON:\n{result.stdout}\n{result.stderr}") from None
    return result, document


def statuses(document: dict[str, Any]) -> dict[str, str]:
    return {name: host["status"] for name, host in document["hosts"].items()}


def untouched(server: SshServer) -> bool:
    """Nothing was written for the host: not even its certificates folder or a lock."""
    return not host_root(server).exists()


def refused(server: SshServer) -> str:
    return f"127.0.0.1:{server.port}: cannot connect: connection refused"


# --- serial: 1, max_fail_percentage: 0 -------------------------------------------------------


def test_first_host_dead_stops_the_run_and_the_retry_file_reruns_the_rest(
    sshd_fleet: SshdFleet, project: Path, cli: Cli
) -> None:
    servers = sshd_fleet.start(5)
    names = [s.name for s in servers]
    servers[0].stop()  # host1: a dead host on a closed port
    known = rolling(project, sshd_fleet, servers, serial=1, max_fail=0)

    result, document = apply(cli, known)
    assert result.exit_code == 1
    assert list(document["hosts"]) == names  # inventory order
    assert statuses(document) == {"host1": "failed", **{n: "skipped" for n in names[1:]}}
    assert document["hosts"]["host1"]["error"] == refused(servers[0])
    for name in names[1:]:
        host = document["hosts"][name]
        assert host["changes"] == [] and host["unchanged"] == []
        assert host["error"] == (
            "the previous batch had 1 of 1 hosts failed, more than max_fail_percentage 0%"
        )
    assert document["summary"] == {"ok": 0, "changed": 0, "failed": 1, "skipped": 4}
    for server in servers:
        assert untouched(server), server.name
    # The progress shows one batch, then the run stops: no later batch line.
    assert "batch 1/5: 1 host" in result.stderr
    assert "batch 2/5" not in result.stderr

    # The retry file beside the playbook: the failed host and the skipped ones, in order.
    retry = project / RETRY
    assert retry.read_text() == "".join(f"{n}\n" for n in names)
    assert f"--limit @{RETRY}" in result.stderr

    # The text recap says the same for a person.
    text = cli("apply", PLAYBOOK, "-i", INVENTORY, "--known-hosts", str(known))
    assert text.exit_code == 1
    assert f"host1: failed: {refused(servers[0])}" in text.stdout
    assert (
        "host2: skipped: the previous batch had 1 of 1 hosts failed, more than "
        "max_fail_percentage 0%"
    ) in text.stdout
    assert "Recap: ok 0, changed 0, failed 1, skipped 4" in text.stdout
    assert all(untouched(s) for s in servers)

    # host1 comes back (a new sshd for it: the inventory gets the new port), and the retry
    # file reruns exactly the hosts it lists.
    [revived] = sshd_fleet.start(1)
    inventory = yaml.safe_load((project / INVENTORY).read_text())
    entry = inventory["all"]["children"]["fleet"]["hosts"]["host1"]
    entry["ansible_port"] = revived.port
    (project / INVENTORY).write_text(yaml.safe_dump(inventory, sort_keys=False))
    known.write_text(known.read_text() + revived.known_hosts_line())

    again, document = apply(cli, known, "--limit", f"@{RETRY}")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert statuses(document) == {n: "changed" for n in names}
    assert document["summary"] == {"ok": 0, "changed": 5, "failed": 0, "skipped": 0}
    for server in servers[1:]:
        assert_landed(server)
    # host1's files land in the folder its inventory entry names, through the new sshd.
    reloaded = (host_root(servers[0]) / "reloaded").read_text().split()
    assert reloaded[0] == "0" and str(revived.port) in reloaded
    assert not any((host_root(s) / "certificates" / ".provision.lock").exists() for s in servers)


# --- serial: [1, "50%"] -----------------------------------------------------------------------


def test_a_batch_over_max_fail_percentage_stops_the_run(
    sshd_fleet: SshdFleet, project: Path, cli: Cli
) -> None:
    servers = sshd_fleet.start(5)
    names = [s.name for s in servers]
    servers[2].stop()  # host3, in the second batch
    # Batches: [host1], then 50% of 5 = 2 hosts: [host2, host3], [host4, host5].
    known = rolling(project, sshd_fleet, servers, serial=[1, "50%"], max_fail=40)

    result, document = apply(cli, known)
    assert result.exit_code == 1
    assert list(document["hosts"]) == names
    assert statuses(document) == {
        "host1": "changed",
        "host2": "changed",
        "host3": "failed",
        "host4": "skipped",
        "host5": "skipped",
    }
    assert document["hosts"]["host3"]["error"] == refused(servers[2])
    for name in ("host4", "host5"):
        assert document["hosts"][name]["error"] == (
            "the previous batch had 1 of 2 hosts failed, more than max_fail_percentage 40%"
        )
    assert document["summary"] == {"ok": 0, "changed": 2, "failed": 1, "skipped": 2}
    assert "batch 1/3: 1 host" in result.stderr and "batch 2/3: 2 hosts" in result.stderr
    assert "batch 3/3" not in result.stderr
    for server in servers[:2]:
        assert_landed(server)
    for server in servers[2:]:
        assert untouched(server), server.name
    assert (project / RETRY).read_text() == "host3\nhost4\nhost5\n"

    # host3 is back: the retry file reruns host3..host5 only; host1 and host2 are not read.
    servers[2].start()  # same port and host key
    before = {s.name: snapshot(host_root(s)) for s in servers[:2]}
    servers[0].stop()  # were host1 contacted, it would fail now
    again, document = apply(cli, known, "--limit", f"@{RETRY}")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert statuses(document) == {"host3": "changed", "host4": "changed", "host5": "changed"}
    for server in servers[2:]:
        assert_landed(server)
    assert {s.name: snapshot(host_root(s)) for s in servers[:2]} == before


def test_a_batch_exactly_at_max_fail_percentage_does_not_stop(
    sshd_fleet: SshdFleet, project: Path, cli: Cli
) -> None:
    """The rule is "more than": 1 of 2 failed is 50%, which does not exceed 50."""
    servers = sshd_fleet.start(5)
    servers[2].stop()
    known = rolling(project, sshd_fleet, servers, serial=[1, "50%"], max_fail=50)

    result, document = apply(cli, known)
    assert result.exit_code == 1
    assert statuses(document) == {
        "host1": "changed",
        "host2": "changed",
        "host3": "failed",
        "host4": "changed",
        "host5": "changed",
    }
    assert document["summary"]["skipped"] == 0
    assert (project / RETRY).read_text() == "host3\n"


# --- without max_fail_percentage -----------------------------------------------------------


@pytest.mark.parametrize("serial", [1, None], ids=["serial-1", "no-serial"])
def test_without_max_fail_percentage_a_dead_host_never_stops_the_others(
    sshd_fleet: SshdFleet, project: Path, cli: Cli, serial: int | None
) -> None:
    servers = sshd_fleet.start(5)
    servers[0].stop()
    known = rolling(project, sshd_fleet, servers, serial=serial)

    result, document = apply(cli, known)
    assert result.exit_code == 1
    assert statuses(document) == {"host1": "failed", **{s.name: "changed" for s in servers[1:]}}
    assert document["summary"] == {"ok": 0, "changed": 4, "failed": 1, "skipped": 0}
    assert document["hosts"]["host1"]["error"] == refused(servers[0])
    for server in servers[1:]:
        assert_landed(server)
    assert untouched(servers[0])
    assert (project / RETRY).read_text() == "host1\n"


# --- patterns and limits that match nothing ---------------------------------------------------


def test_a_pattern_or_limit_matching_no_host_exits_1(
    sshd_fleet: SshdFleet, project: Path, cli: Cli
) -> None:
    servers = sshd_fleet.start(1)
    known = rolling(project, sshd_fleet, servers, serial=1, max_fail=0)
    base = ["apply", PLAYBOOK, "-i", INVENTORY, "--known-hosts", str(known)]

    for limit, message in [
        ("no-such-host", "hosts 'fleet' limited to 'no-such-host' matched no host"),
        ("web*", "hosts 'fleet' limited to 'web*' matched no host"),
        ("!host1", "hosts 'fleet' limited to '!host1' matched no host"),
        ("@playbooks/missing.retry", "cannot read the limit file playbooks/missing.retry"),
    ]:
        result = cli(*base, "--limit", limit)
        assert result.exit_code == 1, (limit, result.stdout)
        assert message in result.stderr, (limit, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr

    (project / "playbooks" / "empty.retry").write_text("\n")
    empty = cli(*base, "--limit", "@playbooks/empty.retry")
    assert empty.exit_code == 1
    assert "the limit file playbooks/empty.retry names no host" in empty.stderr

    # The playbook's own `hosts:` pattern matching nothing.
    playbook = project / PLAYBOOK
    playbook.write_text(playbook.read_text().replace("hosts: fleet", "hosts: nowhere"))
    nowhere = cli(*base)
    assert nowhere.exit_code == 1
    assert "hosts 'nowhere' matched no host" in nowhere.stderr
    assert untouched(servers[0])
    assert not (project / RETRY).exists()  # no run, so no retry file
