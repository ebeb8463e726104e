"""One shell on the host for the whole run: every command of a host on one exec channel.

sshd starts the login user's shell, with its start-up files, for each exec request: on real
servers that costs more than the work (a ``.bashrc`` of 50 ms to a second). So a host gets at
most one: ``sh -s`` (``sudo -n -- sh -s`` with ``become``, the one ``sudo`` of the host),
started when the first command is needed and fed requests on its standard input. Requests
are written as soon as they are made, so requests made together travel together (one round
trip), and the shell runs them one after the other, in the order written.

A request is a script and its arguments. It runs in a subshell (``( ... )``: its ``exit`` and
``cd`` end there), with standard input from ``/dev/null`` (a command reading its input would
eat the requests after it), and its arguments set as ``$1``, ``$2``, ... with ``set --``,
each quoted, never pasted into the script. After it, the shell prints the exit status and a
marker on standard output and the marker on standard error; the marker holds a secret made
for the run and the request's number, so what a command prints can neither end a reply early
nor be taken for another's.

A request can also be made conditional (``after_success``): it runs only if the request
before it in the same ``chain`` succeeded, so a config test and the reload behind it go out
together and the reload is still never run after a failed test.

A request that times out is answered with status 124 and ends the shell (it is busy with the
command, and a root shell cannot be signalled from here): the channel is closed, the requests
after it are not answered, and the next request starts a new shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import asyncssh

from provision.errors import TransportError

# Printed where a conditional request did not run because the one before it failed.
SKIPPED = -1
TIMED_OUT = 124  # the status of a request that did not end in time, as timeout(1) has it


@dataclass(frozen=True)
class Reply:
    status: int  # SKIPPED when a conditional request did not run
    stdout: bytes
    stderr: bytes


class ShellEnded(TransportError):
    """The shell is gone (sudo refused, the connection dropped, a timeout ended it)."""


@dataclass(frozen=True)
class Request:
    script: str
    args: Sequence[str] = ()
    after_success: bool = False  # only if the request written just before succeeded


class HostShell:
    """``sh -s`` on one exec channel of ``conn`` (through ``sudo -n`` when ``become``)."""

    def __init__(self, conn: asyncssh.SSHClientConnection, become: bool) -> None:
        self._conn = conn
        self.command = "sudo -n -- sh -s" if become else "sh -s"
        self._token = secrets.token_hex(16)
        self._sequence = 0
        # Every reply ends with a marker: one pattern for them all, compiled once per shell
        # (asyncssh compiles a literal separator into a pattern on every read, and a
        # marker is never the same twice), and its longest match for asyncssh's search.
        self._marker = re.compile(rb"\n" + self._token.encode() + rb"-([0-9]+)\n")
        self._marker_length = len(self._token) + 24
        self._starting: asyncio.Future[asyncssh.SSHClientProcess[bytes]] | None = None
        # Replies come back in the order requests were written: one reader takes them in
        # turn, so a caller that gave up waiting never leaves its reply to the next one.
        self._waiting: asyncio.Queue[tuple[int, asyncio.Future[Reply]]] = asyncio.Queue()
        self._reader: asyncio.Future[None] | None = None
        self.ended: ShellEnded | None = None

    def start(self) -> asyncio.Future[asyncssh.SSHClientProcess[bytes]]:
        """Open the channel (once, at the first request, or earlier to overlap its start-up
        with other work)."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(
                self._conn.create_process(self.command, encoding=None)
            )
        return self._starting

    async def call(self, script: str, args: Sequence[str] = (), *, timeout: float) -> Reply:
        """Run ``script`` with ``args``: its exit status and output."""
        [reply] = await self.chain([Request(script, args)], timeout=timeout)
        return reply

    async def chain(self, requests: Sequence[Request], *, timeout: float) -> list[Reply]:
        """Write ``requests`` together, and wait for their replies (each within
        ``timeout``): fewer replies than requests when one timed out (the last reply, with
        status ``TIMED_OUT``)."""
        if self.ended is not None:
            raise self.ended
        try:
            process = await self.start()
        except (asyncssh.Error, OSError) as exc:
            self.ended = ShellEnded(f"cannot start a shell: {exc}")
            raise self.ended from None
        if self.ended is not None:
            raise self.ended
        replies = [self._write(process, request) for request in requests]
        if self._reader is None:
            self._reader = asyncio.ensure_future(self._read(process))
        results = []
        for reply in replies:
            try:
                results.append(await asyncio.wait_for(asyncio.shield(reply), timeout))
            except TimeoutError:
                why = f"timed out after {timeout:g} s"
                self._end(process, ShellEnded(why))
                results.append(Reply(TIMED_OUT, b"", why.encode()))
                break
        return results

    def _write(
        self, process: asyncssh.SSHClientProcess[bytes], request: Request
    ) -> asyncio.Future[Reply]:
        self._sequence += 1
        marker = f"{self._token}-{self._sequence}"
        condition = '[ "$provision_status" = 0 ]' if request.after_success else ":"
        text = (
            f"if {condition}; then\n"
            f"( set -- {shlex.join(request.args)}\n{request.script}\n) </dev/null\n"
            f"provision_status=$?\n"
            f"else provision_status={SKIPPED}; fi\n"
            f"printf '\\n%s\\n%s\\n' \"$provision_status\" {marker}\n"
            f"printf '\\n%s\\n' {marker} >&2\n"
        )
        process.stdin.write(text.encode())
        reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        # (A reply whose caller gave up may fail later, unread: not worth a warning.)
        reply.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._waiting.put_nowait((self._sequence, reply))
        return reply

    async def _read(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        """Take the replies in turn, for as long as the shell lives."""
        while True:
            sequence, reply = await self._waiting.get()
            out, err = await asyncio.gather(
                process.stdout.readuntil(self._marker, self._marker_length),
                process.stderr.readuntil(self._marker, self._marker_length),
                return_exceptions=True,
            )
            if isinstance(out, BaseException) or isinstance(err, BaseException):
                said = err.partial if isinstance(err, asyncio.IncompleteReadError) else b""
                self._fail(reply, await self._gone(process, said))
                return
            out_body, out_end = self._split(out, sequence)
            err_body, err_end = self._split(err, sequence)
            body, _, status = out_body.rpartition(b"\n")
            try:
                code = int(status)
            except ValueError:
                code = None
            if code is None or not (out_end and err_end):
                self._end(process, ShellEnded("unexpected answer from the host's shell"))
                self._fail(reply, self.ended)
                return
            if not reply.done():
                reply.set_result(Reply(code, body, err_body))

    def _split(self, data: bytes, sequence: int) -> tuple[bytes, bool]:
        """``data`` without its closing marker, and whether that marker is the one of request
        ``sequence`` (replies come in the order written: any other is a broken answer)."""
        found = self._marker.search(data, max(0, len(data) - self._marker_length))
        if found is None or found.end() != len(data):
            return data, False
        return data[: found.start()], int(found.group(1)) == sequence

    def _fail(self, reply: asyncio.Future[Reply], why: ShellEnded | None) -> None:
        """Fail ``reply`` and every request still waiting: the shell is gone."""
        assert why is not None
        for future in [reply, *self._drain()]:
            if not future.done():
                future.set_exception(why)

    def _drain(self) -> list[asyncio.Future[Reply]]:
        futures = []
        while not self._waiting.empty():
            futures.append(self._waiting.get_nowait()[1])
        return futures

    async def _gone(self, process: asyncssh.SSHClientProcess[bytes], err: bytes) -> ShellEnded:
        """The shell ended before answering: why, in its own words (``err``: sudo's, say)."""
        if self.ended is not None:
            return self.ended
        with contextlib.suppress(Exception):
            err += await asyncio.wait_for(process.stderr.read(), 5)
        status = process.exit_status
        text = err.decode(errors="replace").strip()
        line = text.splitlines()[-1] if text else f"the shell ended (exit status {status})"
        if "sudo:" in line and "password" in line:
            line += " (become needs passwordless sudo for the login user)"
        why = ShellEnded(line)
        self._end(process, why)
        return why

    def _end(self, process: asyncssh.SSHClientProcess[bytes], why: ShellEnded) -> None:
        if self.ended is None:
            self.ended = why
        with contextlib.suppress(Exception):
            process.send_signal("KILL")  # (sshd honours it for a non-root login only)
        process.close()
        for future in self._drain():
            if not future.done():
                future.set_exception(self.ended)

    async def close(self) -> None:
        if self._starting is None:
            return
        with contextlib.suppress(Exception):
            process = await self._starting
            process.stdin.write_eof()
            process.close()
        if self._reader is not None:
            self._reader.cancel()
