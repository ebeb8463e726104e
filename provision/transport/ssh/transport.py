"""The SSH transport: one asyncssh connection per host per run, SFTP for files.

Transports are built synchronously while the run is loaded, before the event loop runs, so the
connection is opened lazily, by ``start()`` or the first operation inside the loop, and reused
by every later one (one SFTP client too); ``close()`` ends it. The parts live beside this
module: ``connection`` (connecting, errors, commands), ``host_keys``, ``sftp`` (file
operations as the login user) and ``sudo`` (the scripts ``become`` runs as root).

Relative paths are relative to the login's home directory as the server reports it
(``realpath('.')`` over SFTP, learnt by ``start()``), or to the host variable ``workdir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import posixpath
import secrets
import shlex
from collections.abc import Awaitable
from contextlib import AbstractContextManager

import asyncssh

import provision.transport.ssh.sftp as files
import provision.transport.ssh.sudo as sudo
from provision.errors import TransportError
from provision.model.inventory import Host
from provision.transport.base import (
    POSIX,
    CommandResult,
    ConnectOptions,
    FileKind,
    FileState,
    SymlinkInPath,
    Transport,
    folders_above,
)
from provision.transport.ssh.connection import Endpoint, Session, connect, errors, run_command

# What a path relative to the login's home is before the server has said where that is:
# kept in this form (only load-time checks and lint see it), never sent to the host.
UNKNOWN_HOME = "~"


class SSHTransport(Transport):
    paths = POSIX

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
        """Connect, and learn the login's home from the server."""
        sftp = await self._sftp()
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
        async with session.lock:
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
        conn = await self._connection()
        session = self._current()
        if session.sftp is None:
            async with session.lock:
                if session.sftp is None:
                    with self._errors("cannot start SFTP"):
                        session.sftp = await conn.start_sftp_client()
        return session.sftp

    def _errors(self, what: str, missing_ok: bool = False) -> AbstractContextManager[None]:
        return errors(what, self.where, missing_ok)

    async def _exec(self, command: str, timeout: float | None = None) -> tuple[int, bytes, bytes]:
        """Run a command on the connection; (exit status, stdout, stderr), 124 on timeout."""
        conn = await self._connection()
        limit = self.options.command_timeout if timeout is None else timeout
        return await run_command(conn, self._current(), command, limit, self.where)

    async def _sudo(self, script: str, *args: str, what: str) -> bytes:
        """Run a shell script as root with ``sudo -n``; its stdout, or a TransportError."""
        status, out, err = await self._exec(sudo.command(script, *args))
        if status != 0:
            raise TransportError(f"{what}: {sudo.problem(err, status)}")
        return out

    def _renamed_into(self, path: str) -> None:
        self._current().synced_dirs.add(posixpath.dirname(path))

    # --- files ----------------------------------------------------------------------------

    async def _plain_folders(
        self, sftp: asyncssh.SFTPClient, path: str, itself: bool = False
    ) -> None:
        """Refuse ``path`` when a folder on the way to it (or ``itself``) is a symlink.

        SFTP has no ``openat``, so this is an ``lstat`` of each folder (all sent at once, and
        each folder looked at once per run), not the race-free walk of the local transport:
        see docs/architecture.md, "Host paths and symlinks".
        """
        session = self._current()
        folders = folders_above(self.paths, path) + ([path] if itself else [])
        checks = []
        for folder in folders:
            check = session.folders.get(folder)
            if check is None or (check.done() and not _a_folder(check)):
                check = session.folders[folder] = asyncio.ensure_future(files.kind(sftp, folder))
            checks.append(check)
        for folder, kind in zip(folders, await asyncio.gather(*checks), strict=True):
            if kind == "symlink":
                target = None
                with contextlib.suppress(asyncssh.SFTPError):
                    target = await sftp.readlink(folder)
                raise SymlinkInPath(folder, target)
            if kind != "directory":
                return  # missing, or a file: nothing below it, nothing there to follow

    async def read(self, path: str) -> FileState:
        if self.become:
            return await self._read_sudo(path)
        sftp = await self._sftp()
        with self._errors(f"cannot read {path}", missing_ok=True):
            await self._plain_folders(sftp, path)
            return await files.read(sftp, path)
        return FileState(path, "missing")

    async def _read_sudo(self, path: str) -> FileState:
        """Reads as root, batched: every read asked for in the same turn of the event loop
        (``facts.gather`` asks for all of a host's files at once) shares one ``sudo`` command.
        """
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
                    status, out, err = await self._exec(sudo.command(sudo.READ, *paths))
                    if status != 0:
                        raise TransportError(sudo.problem(err, status))
                except TransportError as exc:
                    for path, future in batch:
                        if not future.done():
                            future.set_exception(TransportError(f"cannot read {path}: {exc}"))
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
        if self.become:
            return await self._stage_sudo(path, data, mode)
        sftp = await self._sftp()
        with self._errors(f"cannot write {path}"):
            await self._plain_folders(sftp, path)
            temporary = await files.stage(sftp, path, data, mode)
        self._renamed_into(path)
        return temporary

    async def _stage_sudo(self, path: str, data: bytes, mode: int) -> str:
        sftp = await self._sftp()
        upload_dir = await self._temp_dir(sftp)
        token = secrets.token_hex(8)
        upload = posixpath.join(upload_dir, f"{posixpath.basename(path)}.{token}")
        temporary = files.temporary_name(path, token)
        with self._errors(f"cannot upload {path}"):
            await files.upload(sftp, upload, data)
        await self._sudo(
            sudo.STAGE,
            upload,
            posixpath.dirname(path),
            f"{mode:o}",
            temporary,
            what=f"cannot write {path}",
        )
        self._renamed_into(path)
        return temporary

    async def _temp_dir(self, sftp: asyncssh.SFTPClient) -> str:
        session = self._current()
        async with session.lock:
            if session.temp_dir is None:
                candidate = posixpath.join(sudo.TEMP_ROOT, f"provision.{secrets.token_hex(12)}")
                with self._errors(f"cannot create an upload directory on {self.where}"):
                    await files.make_private_dir(sftp, candidate)
                session.temp_dir = candidate
            return session.temp_dir

    async def flush(self) -> None:
        """SFTP cannot fsync a directory: one ``sync`` of every folder renamed into."""
        session = self._session
        if session is None or session.conn is None or not session.synced_dirs:
            return
        folders, session.synced_dirs = sorted(session.synced_dirs), set()
        status, _, err = await self._exec(sudo.sync_command(folders, self.become))
        if self.become and status != 0:
            # (Not sync itself, whose failures are ignored: sudo or the shell.) The renames
            # that wait for this point must not go ahead as if their folders were durable.
            session.synced_dirs.update(folders)
            raise TransportError(f"cannot flush {folders[0]}: {sudo.problem(err, status)}")

    async def commit(self, staged: str, path: str, *, durable: bool = True) -> None:
        if self.become:
            # Not durable: the folder is synced with the others at the next flush, once.
            try:
                await self._sudo(
                    sudo.commit_script(durable), staged, path, what=f"cannot write {path}"
                )
            except TransportError as exc:
                if exc.message.endswith(": symlink"):
                    raise TransportError(f"refusing to replace {path}: it is a symlink") from None
                raise
            if not durable:
                self._renamed_into(path)
            return
        sftp = await self._sftp()
        with self._errors(f"cannot write {path}"):
            await self._plain_folders(sftp, path)
            if not await files.rename_over(sftp, staged, path):
                status, _, err = await self._exec(shlex.join(["mv", "-f", "--", staged, path]))
                if status != 0:
                    raise TransportError(
                        f"cannot write {path}: {err.decode(errors='replace').strip()}"
                    ) from None
        self._renamed_into(path)
        if durable:
            await self.flush()

    async def create_exclusive(self, path: str, data: bytes, mode: int) -> bool:
        """Create ``path`` only if nothing is there, never visible half-written.

        The content is staged (fsynced, with its mode) beside ``path`` and hard-linked onto
        it: ``link(2)`` fails when anything, even a dangling symlink, holds the name, and the
        file appears with all its bytes at once. Without the ``hardlink@openssh.com``
        extension, an O_CREAT|O_EXCL open over SFTP is used instead.
        """
        staged = await self.stage(path, data, mode)
        if self.become:
            status, _, err = await self._exec(sudo.command(sudo.CREATE_EXCLUSIVE, staged, path))
            if status == 3:
                return False
            if status != 0:
                raise TransportError(
                    f"cannot create {path}: {err.decode(errors='replace').strip()}"
                )
            return True
        sftp = await self._sftp()
        with self._errors(f"cannot create {path}"):
            return await files.link_exclusive(sftp, staged, path, data, mode)
        return False  # pragma: no cover - the block above returns or raises

    async def remove(self, path: str, *, durable: bool = True) -> None:
        if self.become:
            await self._sudo(sudo.remove_script(durable), path, what=f"cannot remove {path}")
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
            await self._sudo(sudo.REMOVE_DIR, path, what=f"cannot remove {path}")
            return
        sftp = await self._sftp()
        with self._errors(f"cannot remove {path}", missing_ok=True):
            await self._plain_folders(sftp, path)
            await sftp.rmdir(path)

    async def set_folder_mode(self, path: str, mode: int) -> None:
        if self.become:
            await self._sudo(
                sudo.SET_FOLDER_MODE, path, f"{mode:o}", what=f"cannot set the mode of {path}"
            )
            return
        sftp = await self._sftp()
        with self._errors(f"cannot set the mode of {path}"):
            # (SFTP's setstat follows a symlink: the folder was just found to be no symlink.)
            await self._plain_folders(sftp, path, itself=True)
            await sftp.chmod(path, mode)

    async def list_dir(self, path: str) -> list[str]:
        if self.become:
            out = await self._sudo(sudo.LIST, path, what=f"cannot list {path}")
            return sorted(
                name.decode(errors="surrogateescape") for name in out.split(b"\0") if name
            )
        sftp = await self._sftp()
        with self._errors(f"cannot list {path}", missing_ok=True):
            await self._plain_folders(sftp, path, itself=True)
            return await files.list_dir(sftp, path)
        return []

    # --- commands -------------------------------------------------------------------------

    async def run(self, command: str, timeout: float | None = None) -> CommandResult:
        """Run ``command`` in the work directory (as root with ``become``)."""
        await self.start()  # the work directory may be relative to the home
        script = command
        if self.workdir != self.home:
            script = f"cd -- {shlex.quote(self.workdir)} || exit 1\n{command}"
        if self.become:
            wrapped = shlex.join(["sudo", "-n", "--", "sh", "-c", script])
        elif script is command:
            wrapped = command
        else:
            wrapped = shlex.join(["sh", "-c", script])
        status, out, err = await self._exec(wrapped, timeout)
        return CommandResult(
            command, status, out.decode(errors="replace"), err.decode(errors="replace")
        )

    async def close(self) -> None:
        """Remove the upload directory, fsync renamed-into directories, close the connection."""
        session = self._session
        self._session = None
        if session is None or session.conn is None:
            return
        try:
            if session.loop is asyncio.get_running_loop():
                await asyncio.wait_for(self._tidy(session), self.options.connect_timeout)
        except (TransportError, asyncssh.Error, OSError, TimeoutError):
            pass
        finally:
            if session.sftp is not None:
                session.sftp.exit()
            session.conn.close()
            with contextlib.suppress(Exception):
                await session.conn.wait_closed()
            for task in list(session.background):
                task.cancel()

    async def _tidy(self, session: Session) -> None:
        conn = session.conn
        assert conn is not None
        jobs: list[Awaitable[object]] = []
        if session.temp_dir is not None and session.sftp is not None:
            jobs.append(files.remove_tree(session.sftp, session.temp_dir))
        if session.synced_dirs:
            jobs.append(
                conn.run(
                    sudo.sync_command(sorted(session.synced_dirs), self.become),
                    stdin=asyncssh.DEVNULL,
                )
            )
        await asyncio.gather(*jobs, return_exceptions=True)


def _a_folder(check: asyncio.Future[FileKind]) -> bool:
    """Whether a finished lookup found a folder (a failed one is asked again)."""
    return not check.cancelled() and check.exception() is None and check.result() == "directory"
