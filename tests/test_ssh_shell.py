"""The one shell per host (transport/ssh/shell.py) against a real sshd: replies split by their
markers however the output looks, in order, with statuses, conditional skips and timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncssh
import pytest
from sshd import SshdFleet, SshServer, sshd_fleet

from provision.transport.ssh.shell import SKIPPED, TIMED_OUT, HostShell, Request

__all__ = ["sshd_fleet"]  # the fixture, imported to be found

pytestmark = pytest.mark.integration

T = TypeVar("T")


def with_shell(
    fleet: SshdFleet,
    tmp_path: Path,
    act: Callable[[HostShell, asyncssh.SSHClientConnection], Awaitable[T]],
) -> T:
    [server] = fleet.start(1)

    async def main() -> T:
        async with _connect(fleet, server, tmp_path) as conn:
            shell = HostShell(conn, become=False)
            try:
                return await act(shell, conn)
            finally:
                await shell.close()

    return asyncio.run(main())


def _connect(
    fleet: SshdFleet, server: SshServer, tmp_path: Path
) -> asyncssh.connection._ConnectionAwaitable:  # type: ignore[name-defined]
    known = tmp_path / "known_hosts"
    known.write_text(server.known_hosts_line())
    return asyncssh.connect(
        "127.0.0.1",
        server.port,
        username="root",
        client_keys=[str(fleet.client_key)],
        known_hosts=str(known),
        config=None,
    )


def test_replies_keep_their_own_output_status_and_errors(
    sshd_fleet: SshdFleet, tmp_path: Path
) -> None:
    big = 300_000  # more than one read's worth: a marker may come split across reads

    async def act(shell: HostShell, conn: asyncssh.SSHClientConnection) -> list[object]:
        return list(
            await shell.chain(
                [
                    Request('printf "one\\ntwo"; echo oops >&2; exit 3'),
                    # Text shaped like a marker, without the run's secret: just output.
                    Request("printf '\\n%s\\n0\\n1234-2\\n' \"$1\"", ["spaced arg; $(x)"]),
                    Request(f"head -c {big} /dev/zero | tr '\\0' x"),
                    Request("printf ''"),
                ],
                timeout=30,
            )
        )

    first, second, third, fourth = with_shell(sshd_fleet, tmp_path, act)
    assert (first.status, first.stdout, first.stderr) == (3, b"one\ntwo", b"oops\n")  # type: ignore[attr-defined]
    assert second.status == 0  # type: ignore[attr-defined]
    assert second.stdout == b"\nspaced arg; $(x)\n0\n1234-2\n"  # type: ignore[attr-defined]
    assert (third.status, third.stdout) == (0, b"x" * big)  # type: ignore[attr-defined]
    assert (fourth.status, fourth.stdout, fourth.stderr) == (0, b"", b"")  # type: ignore[attr-defined]


def test_a_conditional_request_is_skipped_after_a_failure(
    sshd_fleet: SshdFleet, tmp_path: Path
) -> None:
    async def act(shell: HostShell, conn: asyncssh.SSHClientConnection) -> list[int]:
        replies = await shell.chain(
            [
                Request("exit 1"),
                Request("echo ran", after_success=True),
                Request("true"),
                Request("echo ran", after_success=True),
            ],
            timeout=30,
        )
        return [reply.status for reply in replies]

    assert with_shell(sshd_fleet, tmp_path, act) == [1, SKIPPED, 0, 0]


def test_a_timeout_ends_the_shell_and_the_next_request_gets_a_new_one(
    sshd_fleet: SshdFleet, tmp_path: Path
) -> None:
    async def act(
        shell: HostShell, conn: asyncssh.SSHClientConnection
    ) -> tuple[list[int], bool, int, bytes]:
        replies = await shell.chain([Request("sleep 30"), Request("echo never")], timeout=1)
        ended = shell.ended is not None
        # As the transport does (``_shell_of``): an ended shell is replaced by a new one.
        again = HostShell(conn, become=False)
        try:
            after = await again.call("echo again", timeout=30)
        finally:
            await again.close()
        return [reply.status for reply in replies], ended, after.status, after.stdout

    statuses, ended, status, out = with_shell(sshd_fleet, tmp_path, act)
    assert statuses == [TIMED_OUT]  # the request behind it is not answered
    assert ended
    assert (status, out) == (0, b"again\n")
