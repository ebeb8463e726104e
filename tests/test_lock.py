"""One apply at a time per host (issue 8, item 2).

Each host's certificates directory gets ``.provision.lock`` (pid, controller host name,
start time) while a run works on it. A second run waits up to ``--lock-timeout`` and then
fails that host naming the holder; a lock whose pid is gone on this controller, or that
cannot be read, is stale and taken over; a lock from another controller is never judged by
its pid.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet import LOCK, Fleet, check_settled, scratch

from provision.apply.lock import HostLock, LockError
from provision.layout import TAKEOVER_SUFFIX
from provision.transport.base import FileState
from provision.transport.local import LocalTransport

LOCKED = re.compile(r"locked by pid (\d+) on (\S+), since (\S+) \(waited ([\d.]+) s")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with scratch(tmp_path) as folder:
        yield Fleet(folder, 5)


@functools.cache
def cli_has_lock_timeout() -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "provision", "apply", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    return "--lock-timeout" in result.stdout


def needs_lock_timeout_option() -> None:
    if not cli_has_lock_timeout():
        pytest.xfail("`provision apply` has no --lock-timeout option yet")


def hand_lock(
    fleet: Fleet, host: str, pid: int, on: str | None = None, started: str = "2024-05-01T12:00:00Z"
) -> bytes:
    """Write a lock as another run would have (its pid, a host name, a start time)."""
    folder = fleet.certs(host)
    folder.mkdir(parents=True, exist_ok=True)
    content = (
        json.dumps({"pid": pid, "host": on or socket.gethostname(), "started": started}).encode()
        + b"\n"
    )
    (folder / LOCK).write_bytes(content)
    return content


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


def statuses(report: Any) -> dict[str, tuple[str, str | None]]:
    return {h.host: (h.status, h.error) for h in report.hosts}


def assert_consistent(fleet: Fleet) -> None:
    assert fleet.converged(), fleet.api_plan()
    assert check_settled(fleet, fleet.hosts) == []
    assert fleet.locked() == []
    assert fleet.leftovers() == []


# -- two runs at once ------------------------------------------------------------------------


def two_applies(fleet: Fleet, *extra: str) -> list[tuple[int, dict[str, Any], str, int]]:
    """Start two applies together; each one's exit code, JSON report by host, stderr, pid."""
    processes = [
        fleet.start("apply", "--format", "json", *extra, log=f"twin-{i}") for i in range(2)
    ]
    results = []
    for index, process in enumerate(processes):
        code = process.wait(timeout=180)
        out = (fleet.folder / f"twin-{index}.out").read_text()
        err = (fleet.folder / f"twin-{index}.err").read_text()
        assert out.startswith("{"), f"exit {code}: {out[-2000:]}{err[-2000:]}"
        results.append((code, json.loads(out)["hosts"], err, process.pid))
    return results


def test_two_applies_at_once_wait_for_each_other(tmp_path: Path) -> None:
    with scratch(tmp_path) as folder:
        fleet = Fleet(folder, 30)
        results = two_applies(fleet)
        for code, hosts, err, _pid in results:
            assert code == 0, (hosts, err[-2000:])
        # Each host was written once: by whichever run got it first; the other found it done.
        for host in fleet.hosts:
            assert sorted(r[1][host]["status"] for r in results) == ["changed", "ok"], host
        assert_consistent(fleet)
        # Both again, with something to change: a reissue on every host.
        fleet.reconfigure(names_variant=1)
        results = two_applies(fleet)
        assert [r[0] for r in results] == [0, 0]
        for host in fleet.hosts:
            assert sorted(r[1][host]["status"] for r in results) == ["changed", "ok"], host
        assert_consistent(fleet)


def test_two_applies_at_once_without_waiting_fail_cleanly(tmp_path: Path) -> None:
    needs_lock_timeout_option()
    with scratch(tmp_path) as folder:
        fleet = Fleet(folder, 30)
        results = two_applies(fleet, "--lock-timeout", "0")
        for (code, hosts, err, _pid), (_, other, _, other_pid) in zip(
            results, results[::-1], strict=True
        ):
            failed = {h: r for h, r in hosts.items() if r["status"] == "failed"}
            assert code == (1 if failed else 0), (code, err[-2000:])
            for host, report in failed.items():
                # Cleanly: named the other run, which wrote the host.
                match = LOCKED.search(report["error"])
                assert match, (host, report["error"])
                assert (int(match.group(1)), match.group(2)) == (other_pid, socket.gethostname())
                assert other[host]["status"] == "changed", (host, other[host])
        for host in fleet.hosts:
            assert {r[1][host]["status"] for r in results} & {"changed", "ok"}, host
        assert_consistent(fleet)


# -- a lock held by someone else ---------------------------------------------------------------


def test_a_held_lock_fails_only_its_host_naming_the_holder(fleet: Fleet, live_pid: int) -> None:
    held = fleet.hosts[1]
    content = hand_lock(fleet, held, live_pid)
    started = time.monotonic()
    _plan, report = fleet.api_run(apply=True, lock_timeout=0.5)
    assert time.monotonic() - started >= 0.5
    assert report.failed
    result = statuses(report)
    status, error = result.pop(held)
    assert status == "failed"
    assert error is not None
    assert (
        f"locked by pid {live_pid} on {socket.gethostname()}, since 2024-05-01T12:00:00Z" in error
    ), error
    assert "waited 0.5 s" in error
    assert {s for s, _ in result.values()} == {"changed"}
    # The holder's lock is untouched and nothing was written under it.
    assert (fleet.certs(held) / LOCK).read_bytes() == content
    assert sorted(p.name for p in fleet.certs(held).iterdir()) == [LOCK]
    assert check_settled(fleet, fleet.hosts) == []


def test_a_held_lock_through_the_cli_exits_1(fleet: Fleet, live_pid: int) -> None:
    needs_lock_timeout_option()
    held = fleet.hosts[2]
    hand_lock(fleet, held, live_pid, started="2024-06-02T03:04:05Z")
    result = fleet.run("apply", "--lock-timeout", "0.5")
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith(f"{held}:"))
    assert line.startswith(
        f"{held}: failed: locked by pid {live_pid} on "
        f"{socket.gethostname()}, since 2024-06-02T03:04:05Z"
    ), line
    assert "Recap: ok 0, changed 4, failed 1" in result.stdout
    assert f"--limit @{fleet.playbook.with_suffix('.retry').name}" in result.stderr


def test_the_held_lock_is_taken_over_once_its_process_is_gone(fleet: Fleet) -> None:
    holder = subprocess.Popen(["sleep", "60"])
    try:
        hand_lock(fleet, fleet.hosts[0], holder.pid)
        _plan, report = fleet.api_run(apply=True, lock_timeout=0.2)
        assert statuses(report)[fleet.hosts[0]][0] == "failed"
    finally:
        holder.kill()
        holder.wait()
    report = fleet.api_apply(lock_timeout=0.2)
    assert statuses(report)[fleet.hosts[0]][0] == "changed"
    assert_consistent(fleet)


def test_a_lock_from_another_controller_is_never_taken_over(fleet: Fleet) -> None:
    """Its pid means nothing here, even one that is dead on this machine."""
    host = fleet.hosts[3]
    content = hand_lock(fleet, host, dead_pid(), on="controller-elsewhere.example.com")
    _plan, report = fleet.api_run(apply=True, lock_timeout=0.3)
    status, error = statuses(report)[host]
    assert status == "failed"
    assert error is not None and "on controller-elsewhere.example.com" in error, error
    assert (fleet.certs(host) / LOCK).read_bytes() == content


# -- stale locks ----------------------------------------------------------------------------------


def test_a_stale_lock_of_a_dead_process_is_taken_over(fleet: Fleet) -> None:
    for host in fleet.hosts[:2]:
        hand_lock(fleet, host, dead_pid())
    report = fleet.api_apply(lock_timeout=0.5)
    assert {s for s, _ in statuses(report).values()} == {"changed"}
    assert_consistent(fleet)


@pytest.mark.parametrize(
    "content",
    [b"", b'{"pid": 12', b"garbage\n", b'{"pid": "x"}', b"[]"],
    ids=["empty", "cut", "garbage", "bad-pid", "list"],
)
def test_an_unreadable_lock_is_taken_over(
    fleet: Fleet, content: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import provision.apply.lock

    monkeypatch.setattr(provision.apply.lock, "HALF_WRITTEN_SECONDS", 0.1)
    host = fleet.hosts[4]
    fleet.certs(host).mkdir(parents=True)
    (fleet.certs(host) / LOCK).write_bytes(content)
    report = fleet.api_apply(lock_timeout=0.5)
    assert statuses(report)[host] == ("changed", None)
    assert_consistent(fleet)


def test_a_stale_lock_through_the_cli(fleet: Fleet) -> None:
    hand_lock(fleet, fleet.hosts[0], dead_pid())
    (fleet.certs(fleet.hosts[1])).mkdir(parents=True)
    (fleet.certs(fleet.hosts[1]) / LOCK).write_bytes(b"")
    result = fleet.run("apply")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Recap: ok 0, changed 5, failed 0" in result.stdout
    assert fleet.locked() == []


# -- the lock itself, with a transport whose every call takes time (as SSH's do) -------------


class SlowTransport(LocalTransport):
    """Local files, but reading takes a while, so two runs interleave like over SSH."""

    async def read(self, path: str) -> FileState:
        state = await super().read(path)
        await asyncio.sleep(0.05)
        return state


def test_a_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    async def scenario() -> BaseException | None:
        first = HostLock(SlowTransport("h", str(tmp_path)), str(tmp_path))
        second = HostLock(SlowTransport("h", str(tmp_path)), str(tmp_path))
        now = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
        await first.acquire(0.1, now)
        [outcome] = await asyncio.gather(second.acquire(0.3, now), return_exceptions=True)
        await first.release()
        await second.acquire(0.1, now)  # free again
        await second.release()
        return outcome

    outcome = asyncio.run(scenario())
    assert isinstance(outcome, LockError)
    assert (
        f"locked by pid {os.getpid()} on {socket.gethostname()}, since "
        "2024-05-01T00:00:00Z (waited 0.3 s" in str(outcome)
    )
    assert not (tmp_path / LOCK).exists()


def test_a_lock_being_written_is_not_taken_for_a_stale_one(tmp_path: Path) -> None:
    """Over SFTP without the hardlink extension a lock appears empty, then gets its content: a
    run that sees it empty must wait to see whether it stays so, not take it over."""
    (tmp_path / LOCK).write_bytes(b"")

    async def scenario() -> BaseException | None:
        async def holder_finishes_writing() -> None:
            await asyncio.sleep(0.3)
            (tmp_path / LOCK).write_text(
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                        "started": "2024-05-01T00:00:00Z",
                    }
                )
            )

        lock = HostLock(LocalTransport("h", str(tmp_path)), str(tmp_path))
        now = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
        outcome, _ = await asyncio.gather(
            lock.acquire(1.0, now), holder_finishes_writing(), return_exceptions=True
        )
        return outcome if isinstance(outcome, BaseException) else None

    outcome = asyncio.run(scenario())
    assert isinstance(outcome, LockError), "a lock being written was taken over"
    assert f"locked by pid {os.getpid()}" in str(outcome)
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()


def test_a_half_written_lock_that_stays_so_is_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import provision.apply.lock

    monkeypatch.setattr(provision.apply.lock, "HALF_WRITTEN_SECONDS", 0.3)
    (tmp_path / LOCK).write_bytes(b'{"pid": 12')  # a run killed while writing it

    async def scenario() -> float:
        lock = HostLock(LocalTransport("h", str(tmp_path)), str(tmp_path))
        started = time.monotonic()
        await lock.acquire(2.0, dt.datetime(2024, 5, 1, tzinfo=dt.UTC))
        waited = time.monotonic() - started
        assert lock.took_over is not None and "could not be read" in lock.took_over.describe()
        await lock.release()
        return waited

    assert asyncio.run(scenario()) >= 0.3


class NoHardLinks(LocalTransport):
    """Like an SFTP server without hard links: a new lock appears empty, and its content
    arrives a round trip later; every call takes a little while."""

    async def create_exclusive(self, path: str, data: bytes, mode: int) -> bool:
        await asyncio.sleep(0.01)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            return False
        await asyncio.sleep(0.15)
        os.write(fd, data)
        os.close(fd)
        return True

    async def read(self, path: str) -> FileState:
        await asyncio.sleep(0.01)
        return await super().read(path)


def test_runs_taking_over_a_stale_empty_lock_never_hold_it_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import provision.apply.lock

    # Well above the 0.15 s a new lock stays empty, so a busy machine cannot make a live
    # lock look stale.
    monkeypatch.setattr(provision.apply.lock, "HALF_WRITTEN_SECONDS", 0.5)
    (tmp_path / LOCK).write_bytes(b"")  # left by a run killed while creating it
    held: list[tuple[float, float]] = []

    async def one_run() -> None:
        lock = HostLock(NoHardLinks("h", str(tmp_path)), str(tmp_path))
        await lock.acquire(10.0, dt.datetime(2024, 5, 1, tzinfo=dt.UTC))
        start = time.monotonic()
        await asyncio.sleep(0.3)  # the run's work
        held.append((start, time.monotonic()))
        await lock.release()

    async def scenario() -> None:
        await asyncio.gather(*(one_run() for _ in range(3)))

    asyncio.run(scenario())
    held.sort()
    assert len(held) == 3
    for (_, end), (start, _) in itertools.pairwise(held):
        assert start >= end, f"two runs held the lock at once: {held}"


def test_a_short_lock_timeout_still_waits_out_a_half_written_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import provision.apply.lock

    monkeypatch.setattr(provision.apply.lock, "HALF_WRITTEN_SECONDS", 0.2)
    (tmp_path / LOCK).write_bytes(b"")

    async def scenario() -> None:
        lock = HostLock(LocalTransport("h", str(tmp_path)), str(tmp_path))
        await lock.acquire(0.0, dt.datetime(2024, 5, 1, tzinfo=dt.UTC))  # --lock-timeout 0
        await lock.release()

    asyncio.run(scenario())
    assert not (tmp_path / LOCK).exists()


def test_a_half_written_takeover_guard_is_removed_once_it_stays_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import provision.apply.lock

    monkeypatch.setattr(provision.apply.lock, "HALF_WRITTEN_SECONDS", 0.2)
    dead = dead_pid()
    (tmp_path / LOCK).write_text(
        json.dumps({"pid": dead, "host": socket.gethostname(), "started": "2024-05-01T00:00:00Z"})
    )
    (tmp_path / (LOCK + TAKEOVER_SUFFIX)).write_bytes(b"")  # a taker killed while writing it

    async def scenario() -> None:
        lock = HostLock(LocalTransport("h", str(tmp_path)), str(tmp_path))
        await lock.acquire(5.0, dt.datetime(2024, 5, 1, tzinfo=dt.UTC))
        assert lock.took_over is not None and lock.took_over.pid == dead
        await lock.release()

    asyncio.run(scenario())
    assert not (tmp_path / (LOCK + TAKEOVER_SUFFIX)).exists()


def test_two_runs_racing_for_one_stale_lock_do_not_both_win(tmp_path: Path) -> None:
    (tmp_path / LOCK).write_text(
        json.dumps(
            {"pid": dead_pid(), "host": socket.gethostname(), "started": "2024-05-01T00:00:00Z"}
        )
    )

    async def scenario() -> list[object]:
        now = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
        locks = [HostLock(SlowTransport("h", str(tmp_path)), str(tmp_path)) for _ in range(2)]
        return await asyncio.gather(
            *(lock.acquire(0.5, now) for lock in locks), return_exceptions=True
        )

    outcomes = asyncio.run(scenario())
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(winners) == 1, f"{len(winners)} runs hold the lock at once: {outcomes}"


def test_leftover_cleanup_leaves_another_runs_lock_staging_alone(tmp_path: Path) -> None:
    """The run holding a host cleans staged files a killed run left; a lock file another run
    is staging at that moment (outside any lock) is not one of them."""
    import asyncio

    from provision.apply.journal import remove_leftovers
    from provision.transport.local import LocalTransport

    folder = tmp_path / "certificates"
    folder.mkdir()
    staging_lock = folder / "..provision.lock.abc123.tmp"
    staging_lock.write_text("{}")
    leftover = folder / ".httpscert.pem.xyz789.tmp"
    leftover.write_text("half")
    managed = [str(folder / "httpscert.pem")]
    asyncio.run(remove_leftovers(LocalTransport("h"), managed, str(folder / ".backup")))
    assert staging_lock.exists()
    assert not leftover.exists()


def test_leftover_cleanup_touches_only_files_staged_for_managed_paths(tmp_path: Path) -> None:
    """A config folder is shared with other software: only staged files of the paths this
    playbook writes are removed there."""
    import asyncio

    from provision.apply.journal import remove_leftovers
    from provision.transport.local import LocalTransport

    folder = tmp_path / "conf.d"
    folder.mkdir()
    ours = folder / ".site.conf.abc.tmp"
    theirs = folder / ".other-package.conf.def.tmp"
    ours.write_text("half")
    theirs.write_text("someone else's")
    asyncio.run(
        remove_leftovers(
            LocalTransport("h"), [str(folder / "site.conf")], str(tmp_path / ".backup")
        )
    )
    assert not ours.exists()
    assert theirs.exists()
