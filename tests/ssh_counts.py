"""What an SSH run asks of each host: channels opened, exec requests, SFTP requests and rounds.

The real asyncssh, talking to a real sshd, with two of its methods wrapped for the time of a
``with counting() as counts:`` block (nothing is replaced: each call goes on as it would):

- ``SSHClientChannel.create`` opens every session channel, and sends on it either an
  ``exec`` request (a command: sshd starts the login shell for it) or a ``subsystem`` one
  (SFTP);
- ``SFTPClientHandler._send_request`` sends every SFTP request.

A *round* is a wait for the server: a request sent while none is outstanding on that SFTP
session starts one. Requests sent together (pipelined) share their round, so a chain of
``lstat`` -> ``open`` -> ``read`` is three rounds however many files are read side by side.

Counts are kept per host, by the server's port (each test host is its own sshd).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from asyncssh import sftp
from asyncssh.channel import SSHClientChannel
from asyncssh.sftp import SFTPClientHandler

# SFTP packet types by number, for reading: 17 -> "open", ...
_NAMES = {
    getattr(sftp, name): name.removeprefix("FXP_").lower()
    for name in dir(sftp)
    if name.startswith("FXP_") and isinstance(getattr(sftp, name), int)
}


@dataclass
class HostCounts:
    channels: int = 0
    execs: int = 0
    commands: list[str] = field(default_factory=list)
    subsystems: int = 0
    sftp_requests: int = 0
    sftp_rounds: int = 0
    requests: list[str] = field(default_factory=list)  # SFTP request types, in order
    rounds: list[list[str]] = field(default_factory=list)  # the same, by round


@dataclass
class Counts:
    hosts: dict[int, HostCounts] = field(default_factory=dict)

    def at(self, port: int) -> HostCounts:
        return self.hosts.setdefault(port, HostCounts())

    def reset(self) -> None:
        self.hosts.clear()


def _port(conn: Any) -> int:
    peer = conn.get_extra_info("peername")
    return int(peer[1]) if peer else 0


@contextlib.contextmanager
def counting() -> Iterator[Counts]:
    counts = Counts()
    create = SSHClientChannel.create
    send = SFTPClientHandler._send_request
    outstanding: dict[int, int] = {}

    async def counted_create(
        self: Any, session_factory: Any, command: Any, subsystem: Any, *a: Any
    ) -> Any:
        host = counts.at(_port(self._conn))
        host.channels += 1
        if command:
            host.execs += 1
            host.commands.append(str(command))
        elif subsystem:
            host.subsystems += 1
        return await create(self, session_factory, command, subsystem, *a)

    def counted_send(self: Any, pkttype: Any, args: Any, waiter: Any) -> None:
        host = counts.at(_port(self._writer))
        key = id(self)
        host.sftp_requests += 1
        host.requests.append(
            pkttype.decode() if isinstance(pkttype, bytes) else _NAMES.get(pkttype, str(pkttype))
        )
        if not outstanding.get(key):
            host.sftp_rounds += 1
            host.rounds.append([])
        host.rounds[-1].append(host.requests[-1])
        outstanding[key] = outstanding.get(key, 0) + 1

        def done(_: Any) -> None:
            outstanding[key] -= 1

        waiter.add_done_callback(done)
        send(self, pkttype, args, waiter)

    SSHClientChannel.create = counted_create  # type: ignore[method-assign]
    SFTPClientHandler._send_request = counted_send  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        SSHClientChannel.create = create  # type: ignore[method-assign]
        SFTPClientHandler._send_request = send  # type: ignore[method-assign]
