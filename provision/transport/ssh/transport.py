"""The SSH transport: one asyncssh connection per host per run, SFTP for files, one shell.

Transports are built synchronously while the run is loaded, before the event loop runs, so the
connection is opened lazily, by ``start()`` or the first operation inside the loop, and reused
by every later one (one SFTP client, and at most one shell: ``shell.HostShell``); ``close()``
ends it. The parts live beside this module: ``connection`` (connecting, errors), ``host_keys``,
``sftp`` (file operations as the login user), ``shell`` (the host's one shell) and ``sudo``
(the scripts that shell runs, as root under ``become``).

What a host is asked costs what sshd does for it: each exec request starts the login shell
(and its start-up files), so the login user's files and modes go over SFTP only, folders
included (``fsync@openssh.com`` on a folder opened for reading), and the only commands of a
host without ``become`` are its config tests and reloads, sent together. Under ``become``
everything goes through the one root shell. Requests that do not wait for each other are
sent together (SFTP and the shell both take requests before answering earlier ones).

Relative paths are relative to the login's home directory as the server reports it
(``realpath('.')`` over SFTP, learnt by ``start()``), or to the host variable ``workdir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import posixpath
from collections.abc import Sequence
from contextlib import AbstractContextManager

import asyncssh

import provision.transport.ssh.sftp as files
import provision.transport.ssh.sudo as sudo
from provision.errors import TransportError
from provision.layout import FOLDER_MODE
from provision.model.inventory import Host
from provision.transport.base import (
    POSIX,
    CommandResult,
    ConnectOptions,
    FileState,
    SymlinkInPath,
    Transport,
    folders_above,
)
from provision.transport.ssh.connection import Endpoint, Session, connect, errors, start_slot
from provision.transport.ssh.shell import SKIPPED, HostShell, Reply, Request, ShellEnded

# What a path relative to the login's home is before the server has said where that is:
# kept in this form (only load-time checks and lint see it), never sent to the host.
UNKNOWN_HOME = "~"


class SSHTransport(Transport):
    paths = POSIX
    pipelined = True

    def __init__(self, host: Host, options: ConnectOptions | None = None) -> None:
        self.host = host.name
        self.address = host.address
        self.port = host.port
        self.user = host.user or getpass.getuser()
        self.ssh_key = os.path.expanduser(host.ssh_key) if host.ssh_key else None
        self.become = host.become
        self.options = options or ConnectOptions()
        workdir = host.vars.get("workdir")
        self._workdir = str(workdir) if workdir else None
        self.home: str | None = None  # from the server, once connected
        self._session: Session | None = None

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"

    # --- paths ----------------------------------------------------------------------------

    def _tilde(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            return (self.home or UNKNOWN_HOME) + path[1:]
        return path

    @property
    def workdir(self) -> str:
        """Where relative paths start and commands run: ``workdir``, else the login home."""
        home = self.home or UNKNOWN_HOME
        if not self._workdir:
            return home
        return posixpath.normpath(posixpath.join(home, self._tilde(self._workdir)))

    def resolve(self, path: str) -> str:
        """Absolute paths as they are; relative ones from ``workdir``, else the login home
        (``~/...`` until ``start()`` has asked the server where that is)."""
        return posixpath.normpath(posixpath.join(self.workdir, self._tilde(path)))

    async def start(self) -> None:
        """Connect, and learn the login's home from the server. Under ``become`` the root
        shell starts now, its login and ``sudo`` overlapping the SFTP work."""
        sftp = await self._sftp()
        if self.become:
            self._shell_of(self._current()).start()
        if self.home is None:
            with self._errors(f"cannot find the login directory on {self.where}"):
                self.home = await files.home(sftp)

    # --- connection -----------------------------------------------------------------------

    def _current(self) -> Session:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.loop is not loop:
            self._session = Session(loop)
        return self._session

    async def _connection(self) -> asyncssh.SSHClientConnection:
        session = self._current()
        if session.conn is not None:
            return session.conn
        if session.failure is not None:
            raise session.failure
        async with start_slot(session, self.options), session.lock:
            if session.failure is not None:
                raise session.failure
            if session.conn is None:
                try:
                    endpoint = Endpoint(self.address, self.port, self.user, self.ssh_key)
                    session.conn = await connect(endpoint, self.options)
                except TransportError as exc:
                    session.failure = exc
                    raise
        return session.conn

    async def _sftp(self) -> asyncssh.SFTPClient:
        session = self._current()
        if session.sftp is not None:
            return session.sftp
        # The connection and its SFTP start in one start slot: a host that has connected
        # does not queue again behind hosts that have not.
        async with start_slot(session, self.options):
            conn = await self._connection()
            async with session.lock:
                if session.sftp is None:
                    with self._errors("cannot start SFTP"):
                        session.sftp = await conn.start_sftp_client()
        return session.sftp

    def _shell_of(self, session: Session) -> HostShell:
        """The host's one shell (a new one once a timeout or a failure ended the last)."""
        assert session.conn is not None
        if session.shell is None or session.shell.ended is not None:
            session.shell = HostShell(session.conn, self.become)
        return session.shell

    def _errors(self, what: str, missing_ok: bool = False) -> AbstractContextManager[None]:
        return errors(what, self.where, missing_ok)

    async def _chain(
        self, requests: Sequence[Request], timeout: float | None = None
    ) -> list[Reply]:
        """Send ``requests`` to the host's shell together; their replies, in order."""
        await self._connection()
        shell = self._shell_of(self._current())
        limit = self.options.command_timeout if timeout is None else timeout
        return await shell.chain(requests, timeout=limit)

    async def _root(self, script: str, *args: str, what: str) -> bytes:
        """Run a script in the root shell (``become``); its stdout, or a TransportError."""
        try:
            [reply] = await self._chain([Request(script, args)])
        except ShellEnded as exc:
            raise TransportError(f"{what}: {exc.message}") from None
        if reply.status != 0:
            raise TransportError(f"{what}: {_last_line(reply)}")
        return reply.stdout

    def _renamed_into(self, path: str) -> None:
        self._current().synced_dirs.add(posixpath.dirname(path))

    # --- files ----------------------------------------------------------------------------

    def _lookups(
        self, sftp: asyncssh.SFTPClient, paths: Sequence[str]
    ) -> list[asyncio.Future[asyncssh.SFTPAttrs | None]]:
        """An ``lstat`` of each path, all sent at once. A folder's answer is kept for the
        run (each folder is looked at once); any other answer (a file, a missing folder
        that may have been made since) only while it is awaited."""
        session = self._current()
        lookups = []
        for path in paths:
            lookup = session.folders.get(path)
            if lookup is None or (lookup.done() and not _a_folder(lookup)):
                lookup = session.folders[path] = asyncio.ensure_future(files.look(sftp, path))
            lookups.append(lookup)
        return lookups

    async def _plain_folders(
        self, sftp: asyncssh.SFTPClient, path: str, itself: bool = False
    ) -> bool:
        """Refuse ``path`` when a folder on the way to it (or ``itself``) is a symlink; False
        when one is missing or a file (nothing below it, nothing there to follow).

        SFTP has no ``openat``, so this is an ``lstat`` of each folder (all sent at once, and
        each folder looked at once per run), not the race-free walk of the local transport:
        see docs/architecture.md, "Host paths and symlinks".
        """
        folders = folders_above(self.paths, path) + ([path] if itself else [])
        return await self._refuse_links(sftp, folders, self._lookups(sftp, folders))

    async def _refuse_links(
        self,
        sftp: asyncssh.SFTPClient,
        folders: Sequence[str],
        lookups: Sequence[asyncio.Future[asyncssh.SFTPAttrs | None]],
    ) -> bool:
        kinds = [files.kind_of(attrs) for attrs in await asyncio.gather(*lookups)]
        for folder, kind in zip(folders, kinds, strict=True):
            if kind == "symlink":
                target = None
                with contextlib.suppress(asyncssh.SFTPError):
                    target = await sftp.readlink(folder)
                raise SymlinkInPath(folder, target)
            if kind != "directory":
                return False
        return True

    async def _look(self, sftp: asyncssh.SFTPClient, path: str) -> asyncssh.SFTPAttrs | None:
        """``lstat`` of ``path``, sent with those of its folders (one round trip): None when
        it is missing. Its answer is used only once every folder on the way was found to be
        a folder: nothing is opened below a symlinked folder (``SymlinkInPath``)."""
        folders = folders_above(self.paths, path)
        *lookups, own = self._lookups(sftp, [*folders, path])
        try:
            plain = await self._refuse_links(sftp, folders, lookups)
        except BaseException:
            with contextlib.suppress(BaseException):
                await own
            raise
        attrs = await own
        return attrs if plain else None

    async def _make_folders(self, sftp: asyncssh.SFTPClient, folder: str) -> None:
        """Make ``folder`` and the missing folders above it (0750), top down, after the
        ``lstat`` of each: never through a symlink (``SymlinkInPath``)."""
        chain = [*folders_above(self.paths, folder), folder]
        found = await asyncio.gather(*self._lookups(sftp, chain))
        session = self._current()
        for name, kind in zip(chain, map(files.kind_of, found), strict=True):
            if kind == "symlink":
                raise SymlinkInPath(name)
            if kind == "directory":
                continue
            making = session.making.get(name)
            if making is None:  # (stages side by side into one new folder make it once)
                making = session.making[name] = asyncio.ensure_future(
                    files.make_folder(sftp, name, FOLDER_MODE)
                )
            await asyncio.shield(making)
            session.folders.pop(name, None)  # asked again when next needed

    async def read(self, path: str) -> FileState:
        if self.become:
            return await self._read_sudo(path)
        sftp = await self._sftp()
        with self._errors(f"cannot read {path}", missing_ok=True):
            attrs = await self._look(sftp, path)
            return await files.read(sftp, path, attrs, self._current().background)
        return FileState(path, "missing")

    async def _read_sudo(self, path: str) -> FileState:
        """Reads as root, batched: every read asked for in the same turn of the event loop
        (``facts.gather`` asks for all of a host's files at once) shares one request."""
        session = self._current()
        future: asyncio.Future[FileState] = session.loop.create_future()
        session.pending_reads.append((path, future))
        if session.reader is None or session.reader.done():
            session.reader = asyncio.ensure_future(self._read_batches(session))
        return await future

    async def _read_batches(self, session: Session) -> None:
        await asyncio.sleep(0)  # let the reads started in this turn join the batch
        batch: list[tuple[str, asyncio.Future[FileState]]] = []
        try:
            while session.pending_reads:
                batch = session.pending_reads[: sudo.READ_BATCH]
                del session.pending_reads[: sudo.READ_BATCH]
                paths = [path for path, _ in batch]
                try:
                    out = await self._root(sudo.READ, *paths, what="cannot read")
                except TransportError as exc:
                    for path, future in batch:
                        if not future.done():
                            problem = exc.message.removeprefix("cannot read: ")
                            future.set_exception(TransportError(f"cannot read {path}: {problem}"))
                    continue
                for (path, future), state in zip(batch, sudo.parse_reads(out, paths), strict=True):
                    if future.done():
                        continue
                    if isinstance(state, FileState):
                        future.set_result(state)
                    else:
                        future.set_exception(TransportError(f"cannot read {path}: {state}"))
                batch = []
        except BaseException as exc:
            for _, future in [*batch, *session.pending_reads]:
                if not future.done():
                    future.set_exception(TransportError(f"cannot read: {exc!r}"))
            session.pending_reads.clear()
            raise

    async def stage(self, path: str, data: bytes, mode: int) -> str:
        temporary = await self._stage(path, data, mode, durable=True)
        self._renamed_into(path)
        return temporary

    async def _stage(self, path: str, data: bytes, mode: int, *, durable: bool) -> str:
        temporary = files.temporary_name(path)
        if self.become:
            await self._root(
                sudo.STAGE, temporary, f"{mode:o}", sudo.encoded(data), what=f"cannot write {path}"
            )
            return temporary
        sftp = await self._sftp()
        with self._errors(f"cannot write {path}"):
            await self._make_folders(sftp, posixpath.dirname(path))
            return await files.stage(sftp, path, data, mode, durable=durable)
        raise AssertionError("unreachable")  # pragma: no cover - the block returns or raises

    async def flush(self) -> None:
        """Make every folder renamed into durable: an fsync of each over SFTP, all at once;
        as root under ``become`` (the folders may be root's alone), or where the server
        cannot fsync a folder, one ``sync`` of them all in the host's shell."""
        session = self._session
        if session is None or session.conn is None or not session.synced_dirs:
            return
        folders, session.synced_dirs = sorted(session.synced_dirs), set()
        try:
            if not self.become and not session.shell_syncs:
                sftp = await self._sftp()
                with self._errors(f"cannot flush {folders[0]}"):
                    if await files.sync_folders(sftp, folders):
                        return
                session.shell_syncs = True
            await self._root(sudo.SYNC, *folders, what=f"cannot flush {folders[0]}")
        except BaseException:
            # The renames that wait for this point must not go ahead as if their folders
            # were durable; they are still owed their sync.
            session.synced_dirs.update(folders)
            raise

    async def commit(self, staged: str, path: str, *, durable: bool = True) -> None:
        if self.become:
            # Not durable: the folder is synced with the others at the next flush, once.
            try:
                await self._root(
                    sudo.commit_script(durable), staged, path, what=f"cannot write {path}"
                )
            except TransportError as exc:
                if exc.message.endswith(": symlink"):
                    raise TransportError(f"refusing to replace {path}: it is a symlink") from None
                raise
            if not durable:
                self._renamed_into(path)
            return
        # Renames asked for together are sent in the order asked (keys first, say), each
        # after its own lstat: each takes its turn now, and sends its rename only once the
        # one before it has sent its own.
        session = self._current()
        before, turn = session.last_rename, session.loop.create_future()
        session.last_rename = turn
        sftp = await self._sftp()
        try:
            with self._errors(f"cannot write {path}"):
                await self._plain_folders(sftp, path)
                attrs = await files.look(sftp, path)
                if before is not None:
                    await asyncio.shield(before)
                renamed = files.rename_over(sftp, staged, path, attrs)
                turn.set_result(None)
                if not await renamed:
                    await self._root(sudo.MOVE, staged, path, what=f"cannot write {path}")
        finally:
            if not turn.done():
                turn.set_result(None)
        self._renamed_into(path)
        if durable:
            await self.flush()

    async def create_exclusive(self, path: str, data: bytes, mode: int) -> bool:
        """Create ``path`` only if nothing is there, never visible half-written.

        The content is staged (with its mode, not fsynced: a lock may as well be gone after
        a crash) beside ``path`` and hard-linked onto it: ``link(2)`` fails when anything,
        even a dangling symlink, holds the name, and the file appears with all its bytes at
        once. Without the ``hardlink@openssh.com`` extension, an O_CREAT|O_EXCL open over
        SFTP is used instead. Under ``become``, one request to the root shell does it all.
        """
        if self.become:
            try:
                [reply] = await self._chain(
                    [
                        Request(
                            sudo.CREATE_EXCLUSIVE,
                            (files.temporary_name(path), f"{mode:o}", sudo.encoded(data), path),
                        )
                    ]
                )
            except ShellEnded as exc:
                raise TransportError(f"cannot create {path}: {exc.message}") from None
            if reply.status == 3:
                return False
            if reply.status != 0:
                raise TransportError(f"cannot create {path}: {_last_line(reply)}")
            return True
        staged = await self._stage(path, data, mode, durable=False)
        sftp = await self._sftp()
        with self._errors(f"cannot create {path}"):
            return await files.link_exclusive(sftp, staged, path, data, mode)
        return False  # pragma: no cover - the block above returns or raises

    async def remove(self, path: str, *, durable: bool = True) -> None:
        if self.become:
            await self._root(sudo.remove_script(durable), path, what=f"cannot remove {path}")
            if not durable:
                self._renamed_into(path)
            return
        sftp = await self._sftp()
        with self._errors(f"cannot remove {path}", missing_ok=True):
            await self._plain_folders(sftp, path)
            await sftp.remove(path)
        self._renamed_into(path)
        if durable:
            await self.flush()

    async def remove_dir(self, path: str) -> None:
        if self.become:
            await self._root(sudo.REMOVE_DIR, path, what=f"cannot remove {path}")
            return
        sftp = await self._sftp()
        with self._errors(f"cannot remove {path}", missing_ok=True):
            await self._plain_folders(sftp, path)
            await sftp.rmdir(path)
            self._current().folders.pop(path, None)

    async def set_folder_mode(self, path: str, mode: int) -> None:
        if self.become:
            await self._root(
                sudo.SET_FOLDER_MODE, path, f"{mode:o}", what=f"cannot set the mode of {path}"
            )
            return
        sftp = await self._sftp()
        with self._errors(f"cannot set the mode of {path}"):
            # (SFTP's setstat follows a symlink: the folder was just found to be no symlink.)
            await self._plain_folders(sftp, path, itself=True)
            await sftp.chmod(path, mode)
            self._current().folders.pop(path, None)  # its mode is asked again

    async def list_dir(self, path: str) -> list[str]:
        if self.become:
            out = await self._root(sudo.LIST, path, what=f"cannot list {path}")
            return sorted(
                name.decode(errors="surrogateescape") for name in out.split(b"\0") if name
            )
        sftp = await self._sftp()
        with self._errors(f"cannot list {path}", missing_ok=True):
            if not await self._plain_folders(sftp, path, itself=True):
                return []
            return await files.list_dir(sftp, path)
        return []

    # --- commands -------------------------------------------------------------------------

    async def run(self, command: str, timeout: float | None = None) -> CommandResult:
        """Run ``command`` with ``sh`` in the work directory (as root with ``become``), in
        the host's one shell."""
        [result] = await self.run_steps([command], timeout)
        return result

    async def run_steps(
        self, commands: Sequence[str], timeout: float | None = None
    ) -> list[CommandResult]:
        """The commands sent to the host's shell together, each run only if the one before
        it succeeded: one round trip, and no login shell per command."""
        if not commands:
            return []
        await self.start()  # the work directory may be relative to the home
        requests = [
            Request(sudo.RUN, (self.workdir, command), after_success=index > 0)
            for index, command in enumerate(commands)
        ]
        try:
            replies = await self._chain(requests, timeout)
        except ShellEnded as exc:
            return [CommandResult(commands[0], 255, "", exc.message)]
        results = []
        for command, reply in zip(commands, replies, strict=True):
            if reply.status == SKIPPED:
                break
            results.append(
                CommandResult(
                    command,
                    reply.status,
                    reply.stdout.decode(errors="replace"),
                    reply.stderr.decode(errors="replace"),
                )
            )
        return results

    async def close(self) -> None:
        """Close the shell, the SFTP session and the connection."""
        session = self._session
        self._session = None
        if session is None or session.conn is None:
            return
        try:
            if session.shell is not None:
                await session.shell.close()
        finally:
            if session.sftp is not None:
                session.sftp.exit()
            session.conn.close()
            with contextlib.suppress(Exception):
                await session.conn.wait_closed()
            for task in list(session.background):
                task.cancel()


def _a_folder(lookup: asyncio.Future[asyncssh.SFTPAttrs | None]) -> bool:
    """Whether a finished lookup found a folder (a failed one is asked again)."""
    return (
        not lookup.cancelled()
        and lookup.exception() is None
        and files.kind_of(lookup.result()) == "directory"
    )


def _last_line(reply: Reply) -> str:
    """What a failed script says, in one line."""
    text = reply.stderr.decode(errors="replace").strip()
    return text.splitlines()[-1] if text else f"exit status {reply.status}"
