"""One apply at a time per host: a lock file in the host's certificates directory.

The lock says who holds it (pid, controller host name, start time). A second run waits up to
``timeout`` seconds and then fails that host naming the holder. A lock left by a process that
died on this same controller is stale: it is detected (the pid is gone) and taken over.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import time
from dataclasses import dataclass

from provision.errors import ProvisionError
from provision.layout import LOCK_FILE, TAKEOVER_SUFFIX, lock_content
from provision.transport.base import Transport, together

GUARD_SECONDS = 10.0  # a takeover takes milliseconds; a guard this old was left by a crash
# A lock that cannot be read may be one being written right now (over SFTP without the
# hardlink extension a lock is created empty, then written): stale only once it has stayed
# the same for this long.
HALF_WRITTEN_SECONDS = 2.0
_POLL = 0.1


class LockError(ProvisionError):
    pass


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    started: str

    def describe(self) -> str:
        if self == UNREADABLE:
            return "a run killed while writing it (the lock could not be read)"
        return f"pid {self.pid} on {self.host}, since {self.started}"


UNREADABLE = Holder(0, "", "")  # who held a lock that could not be read


def _parse(content: bytes | None) -> Holder | None:
    try:
        data = json.loads(content or b"")
        return Holder(int(data["pid"]), str(data["host"]), str(data["started"]))
    except (ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _older_than(holder: Holder, now: dt.datetime, seconds: float) -> bool:
    try:
        started = dt.datetime.strptime(holder.started, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return True
    return (now - started).total_seconds() > seconds


def _stale(holder: Holder) -> bool:
    # Only a lock from this controller can be judged by its pid.
    return holder.host == socket.gethostname() and not _alive(holder.pid)


class HostLock:
    def __init__(self, transport: Transport, certificates_dir: str) -> None:
        self.transport = transport
        self.directory = certificates_dir
        self.path = transport.paths.join(certificates_dir, LOCK_FILE)
        self.took_over: Holder | None = None
        self._unreadable_guard: tuple[bytes | None, float] | None = None  # (content, seen)
        self.created: list[str] = []  # folders made to hold the lock, deepest first

    async def acquire(self, timeout: float, now: dt.datetime) -> None:
        # A host that fails before writing anything must be left as it was, so remember
        # which folders the lock itself brings into being.
        # (Every folder up the way is looked at together: one round trip over SSH.)
        folder, paths, chain = self.directory, self.transport.paths, []
        while not paths.is_root(folder):
            chain.append(folder)
            folder = paths.dirname(folder)
        states = await together(self.transport, (self.transport.read(f) for f in chain))
        for folder, state in zip(chain, states, strict=True):
            if state.exists:
                break
            self.created.append(folder)
        deadline = time.monotonic() + timeout
        unreadable: tuple[bytes | None, float] | None = None  # (content, first seen)
        while True:
            if await self.transport.create_exclusive(self.path, lock_content(now), 0o644):
                return
            state = await self.transport.read(self.path)
            holder = _parse(state.content)
            if holder is None and state.exists:
                # Half-written: by a run killed while creating it (stale), or by one creating
                # it right now (not). Only time tells them apart, so even a short
                # --lock-timeout waits that long for it.
                if unreadable is None:  # (once: a lock that keeps changing is not waited on)
                    deadline = max(deadline, time.monotonic() + HALF_WRITTEN_SECONDS + _POLL)
                if unreadable is None or unreadable[0] != state.content:
                    unreadable = (state.content, time.monotonic())
                stale = time.monotonic() - unreadable[1] >= HALF_WRITTEN_SECONDS
            else:
                unreadable = None
                stale = holder is not None and _stale(holder)
            if stale and await self._take_over(state.content, holder or UNREADABLE, now):
                return
            if time.monotonic() >= deadline:
                who = holder.describe() if holder else "another run"
                raise LockError(
                    f"locked by {who} (waited {timeout:g} s; raise --lock-timeout to wait longer)"
                )
            await asyncio.sleep(_POLL)

    async def _take_over(self, seen: bytes | None, holder: Holder, now: dt.datetime) -> bool:
        """Replace the stale lock ``seen`` with ours and return True, unless another run is
        taking it over or already replaced it. Takeovers go one at a time through a guard
        file; without it, two runs that read the same stale lock could each remove the lock
        the other just created. The lock is replaced in one rename, never removed and created
        again: a lock created anew can be visible empty (over SFTP without hard links), and
        an empty lock looks like the stale one to a third run."""
        guard = self.path + TAKEOVER_SUFFIX
        moment = dt.datetime.now(dt.UTC)
        if not await self.transport.create_exclusive(guard, lock_content(moment), 0o644):
            content = (await self.transport.read(guard)).content
            other = _parse(content)
            if other is None:  # half-written, as a lock can be: stale if it stays so
                if self._unreadable_guard is None or self._unreadable_guard[0] != content:
                    self._unreadable_guard = (content, time.monotonic())
                dead = time.monotonic() - self._unreadable_guard[1] >= HALF_WRITTEN_SECONDS
            else:
                dead = _older_than(other, moment, GUARD_SECONDS)
            if dead:
                await self.transport.remove(guard)  # its taker died within milliseconds
            return False
        try:
            if (await self.transport.read(self.path)).content != seen:
                return False
            await self.transport.write(self.path, lock_content(now), 0o644, durable=False)
            self.took_over = holder
            return True
        finally:
            await self.transport.remove(guard, durable=False)

    async def release(self) -> None:
        await self.transport.remove(self.path, durable=False)
        for folder in self.created:
            if await self.transport.list_dir(folder):
                break  # the run wrote something: keep it
            await self.transport.remove_dir(folder)
