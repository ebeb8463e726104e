"""The SSH transport: one asyncssh connection per host per run, SFTP for files.

Transports are built synchronously while the run is loaded, before the event loop runs, so the
connection is opened lazily by the first operation inside the loop and reused by every later
one (one SFTP client too); ``close()`` ends it. Everything a person can get wrong (address,
port, user, key, host key) ends in a one-line ``TransportError`` naming ``address:port``.

Without ``become`` files are written over SFTP as the login user: a temporary
``.NAME.RANDOM.tmp`` beside the target, created with its final mode (a key is never readable
by others), fsynced when the server offers ``fsync@openssh.com``, then renamed onto the target
with ``posix-rename@openssh.com`` (an atomic ``rename(2)``). The target is ``lstat``-ed first
and a symlink is never replaced. The renamed-into directories are fsynced once, when the
transport closes (SFTP cannot fsync a directory).

With ``become: true`` the login user needs passwordless sudo; see ``docs/ssh.md`` for the
privileged write path (upload to a private temporary directory, ``sudo -n install`` to a
temporary name in the target directory, ``sudo -n mv`` onto the target).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import fcntl
import getpass
import ipaddress
import os
import posixpath
import secrets
import shlex
import stat
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass, field

import asyncssh
from asyncssh.public_key import get_default_public_key_algs

from provision.errors import TransportError
from provision.model.inventory import Host
from provision.transport.base import CommandResult, ConnectOptions, FileKind, FileState, Transport

# sshd allows 10 sessions per connection (MaxSessions); SFTP holds one, commands share the rest.
EXEC_CHANNELS = 8
KEEPALIVE_INTERVAL = 15.0
CLOSE_WAIT = 5.0  # seconds to wait for sshd to close the channel of a finished command
DIRECTORY_MODE = 0o750  # as provision.fsutil: directories we create may hold keys
TEMP_ROOT = "/tmp"  # where `become` uploads go, in a private 0700 directory per run

_KINDS: dict[int, FileKind] = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "directory",
    stat.S_IFLNK: "symlink",
}


def user_known_hosts() -> str:
    return os.path.expanduser("~/.ssh/known_hosts")


def known_hosts_name(address: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: ``[host]:port`` for a non-standard port."""
    return address if port == 22 else f"[{address}]:{port}"


# --- host keys ------------------------------------------------------------------------------


@dataclass
class HostKeyPolicy:
    """Which host keys a host may present, and what to do with one nobody has seen yet.

    Trusted keys come from the user's ``~/.ssh/known_hosts`` and the run's ``--known-hosts``
    file. ``accept_new`` is OpenSSH's ``StrictHostKeyChecking=accept-new``: a host with no
    key on record gets its key appended to ``write_to``; a host whose key differs from the
    recorded one is refused all the same.
    """

    address: str
    port: int
    files: tuple[str, ...]
    write_to: str
    accept_new: bool
    known: asyncssh.SSHKnownHosts = field(default_factory=asyncssh.SSHKnownHosts)
    problem: str | None = None  # why the last key was refused, for the error message

    @classmethod
    def load(cls, address: str, port: int, options: ConnectOptions) -> HostKeyPolicy:
        files = [user_known_hosts()]
        if options.known_hosts:
            files.append(os.path.abspath(os.path.expanduser(options.known_hosts)))
        files = list(dict.fromkeys(files))
        policy = cls(address, port, tuple(files), files[-1], options.accept_new_host_keys)
        policy.known = _read_known_hosts(policy.files)
        return policy

    @property
    def name(self) -> str:
        return known_hosts_name(self.address, self.port)

    def _match(self, host: str, addr: str) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
        port = None if self.port == 22 else self.port
        host_keys, ca_keys, *_ = self.known.match(host, addr, port)
        return list(host_keys), list(ca_keys)

    def anything_known(self) -> bool:
        """Whether known_hosts holds a key or a CA for this host (checked before connecting)."""
        host_keys, ca_keys = self._match(self.address, _ip_or_empty(self.address))
        return bool(host_keys or ca_keys)

    def server_host_key_algs(self) -> list[str] | None:
        """For a host nobody knows, ask for a plain key (not a certificate) so it can be recorded.

        ``None`` keeps asyncssh's choice: the known key's type, or certificates when a CA is
        trusted for the host.
        """
        return (
            None
            if self.anything_known()
            else [alg.decode() for alg in get_default_public_key_algs()]
        )

    def validate(self, host: str, addr: str, key: asyncssh.SSHKey) -> bool:
        """Called by asyncssh only for a key known_hosts does not trust."""
        offered = f"{key.get_algorithm()} key {key.get_fingerprint('sha256')}"
        host_keys, _ = self._match(host, addr)
        if host_keys:
            self.problem = self._changed(offered)
            return False
        if not self.accept_new:
            self.problem = (
                f"host key is not known ({offered}); check the fingerprint, "
                f"then accept it with `ssh-keyscan -p {self.port} {self.address} >> "
                f"{self.write_to}` or run with --accept-new-host-keys"
            )
            return False
        try:
            return self._append(host, addr, key, offered)
        except OSError as exc:
            self.problem = f"cannot record the host key of {self.name} in {self.write_to}: {exc}"
            return False

    def validate_ca(self, key: asyncssh.SSHKey) -> bool:
        self.problem = (
            f"the host certificate is signed by a CA that is not trusted for it "
            f"({key.get_algorithm()} {key.get_fingerprint('sha256')}); add a "
            f"`@cert-authority` line to {self.write_to}"
        )
        return False

    def _changed(self, offered: str) -> str:
        return (
            f"HOST KEY CHANGED: the host offered {offered}, but known_hosts "
            f"({', '.join(self.files)}) holds another key; if the host was reinstalled, remove "
            f"the old key with `ssh-keygen -R '{self.name}' -f FILE`, otherwise someone may be "
            "intercepting the connection"
        )

    def _append(self, host: str, addr: str, key: asyncssh.SSHKey, offered: str) -> bool:
        """Append one line to ``write_to``, under a lock, without rewriting the file.

        Hosts connect in parallel (and other runs may too): each appends a whole line with a
        single O_APPEND write while holding an exclusive ``flock``, after re-reading the file
        under the lock so a key recorded meanwhile is neither duplicated nor overridden.
        """
        line = f"{self.name} {key.get_algorithm()} {base64.b64encode(key.public_data).decode()}"
        folder = os.path.dirname(self.write_to)
        if folder and not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(self.write_to, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with open(self.write_to, "rb") as existing_file:
                existing = existing_file.read()
            try:
                now_known = asyncssh.import_known_hosts(existing.decode(errors="replace"))
            except ValueError as exc:
                raise OSError(f"it has an invalid line: {exc}") from None
            port = None if self.port == 22 else self.port
            recorded, *_ = now_known.match(host, addr, port)
            if recorded:
                if key in recorded:
                    return True  # another run recorded this very key meanwhile
                self.problem = self._changed(offered)
                return False
            data = (line + "\n").encode()
            if existing and not existing.endswith(b"\n"):
                data = b"\n" + data
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write ({written} of {len(data)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock
        self.known.load(line)
        return True


def _read_known_hosts(files: Sequence[str]) -> asyncssh.SSHKnownHosts:
    known = asyncssh.SSHKnownHosts()
    for file in files:
        try:
            with open(file, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise TransportError(f"cannot read known_hosts {file}: {exc.strerror}") from None
        try:
            known.load(text)
        except ValueError as exc:
            raise TransportError(f"known_hosts {file}: {exc}") from None
    return known


def _ip_or_empty(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return ""


class _Client(asyncssh.SSHClient):
    def __init__(self, policy: HostKeyPolicy) -> None:
        self.policy = policy

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        return self.policy.validate(host, addr, key)

    def validate_host_ca_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        return self.policy.validate_ca(key)


# --- the transport --------------------------------------------------------------------------


@dataclass
class _Session:
    """What one run holds open to a host; rebuilt when a new event loop uses the transport."""

    loop: asyncio.AbstractEventLoop
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    channels: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(EXEC_CHANNELS))
    conn: asyncssh.SSHClientConnection | None = None
    sftp: asyncssh.SFTPClient | None = None
    failure: TransportError | None = None  # a failed connect fails every later use alike
    temp_dir: str | None = None  # become: the private upload directory
    synced_dirs: set[str] = field(default_factory=set)  # renamed into; fsynced at close
    background: set[asyncio.Future[None]] = field(default_factory=set)  # timed-out commands
    pending_reads: list[tuple[str, asyncio.Future[FileState]]] = field(default_factory=list)
    reader: asyncio.Future[None] | None = None  # become: the task running batched reads


class SSHTransport(Transport):
    def __init__(self, host: Host, options: ConnectOptions | None = None) -> None:
        self.host = host.name
        self.address = host.address
        self.port = host.port
        self.user = host.user or getpass.getuser()
        self.ssh_key = os.path.expanduser(host.ssh_key) if host.ssh_key else None
        self.become = host.become
        self.options = options or ConnectOptions()
        workdir = host.vars.get("workdir")
        self.home = "/root" if self.user == "root" else f"/home/{self.user}"
        self.workdir = (
            posixpath.normpath(posixpath.join(self.home, self._tilde(str(workdir))))
            if workdir
            else self.home
        )
        self._session: _Session | None = None

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"

    # --- paths ----------------------------------------------------------------------------

    def _tilde(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            return self.home + path[1:]
        return path

    def resolve(self, path: str) -> str:
        """Absolute paths as they are; relative ones from ``workdir``, else the login home."""
        return posixpath.normpath(posixpath.join(self.workdir, self._tilde(path)))

    # --- connection -----------------------------------------------------------------------

    def _current(self) -> _Session:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.loop is not loop:
            self._session = _Session(loop)
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
                    session.conn = await self._connect()
                except TransportError as exc:
                    session.failure = exc
                    raise
        return session.conn

    async def _connect(self) -> asyncssh.SSHClientConnection:
        policy = HostKeyPolicy.load(self.address, self.port, self.options)
        keys: dict[str, object] = {}
        if self.ssh_key:
            keys = {"client_keys": [self.ssh_key], "agent_path": None}
        algs = policy.server_host_key_algs()
        if algs is not None:
            keys["server_host_key_algs"] = algs
        try:
            conn, _ = await asyncssh.create_connection(
                lambda: _Client(policy),
                self.address,
                self.port,
                username=self.user,
                known_hosts=policy.known,
                connect_timeout=self.options.connect_timeout,
                keepalive_interval=KEEPALIVE_INTERVAL,
                **keys,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise TransportError(f"{self.where}: {policy.problem or _reason(exc)}") from None
        except asyncssh.PermissionDenied:
            tried = f"key {self.ssh_key}" if self.ssh_key else "the agent and ~/.ssh keys"
            raise TransportError(
                f"{self.where}: authentication failed for user {self.user!r} ({tried})"
            ) from None
        except asyncssh.DisconnectError as exc:
            raise TransportError(f"{self.where}: ssh: {_reason(exc)}") from None
        except TimeoutError:
            raise TransportError(
                f"{self.where}: connection timed out after {self.options.connect_timeout:g} s"
            ) from None
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            raise TransportError(
                f"{self.where}: cannot load ssh_key {self.ssh_key}: {exc}"
            ) from None
        except OSError as exc:
            if exc.filename and exc.filename == self.ssh_key:
                raise TransportError(
                    f"{self.where}: cannot load ssh_key {self.ssh_key}: {exc.strerror}"
                ) from None
            raise TransportError(f"{self.where}: cannot connect: {_os_reason(exc)}") from None
        except (asyncssh.Error, ValueError) as exc:
            raise TransportError(f"{self.where}: ssh: {exc}") from None
        return conn

    async def _sftp(self) -> asyncssh.SFTPClient:
        conn = await self._connection()
        session = self._current()
        if session.sftp is None:
            async with session.lock:
                if session.sftp is None:
                    with self._errors("cannot start SFTP"):
                        session.sftp = await conn.start_sftp_client()
        return session.sftp

    @contextlib.contextmanager
    def _errors(self, what: str, missing_ok: bool = False) -> Iterator[None]:
        try:
            yield
        except asyncssh.SFTPNoSuchFile:
            if not missing_ok:
                raise TransportError(f"{what}: no such file or directory") from None
        except asyncssh.SFTPError as exc:
            raise TransportError(f"{what}: {_reason(exc)}") from None
        except (asyncssh.DisconnectError, asyncssh.ChannelOpenError) as exc:
            raise TransportError(
                f"{what}: connection to {self.where} failed: {_reason(exc)}"
            ) from None
        except (OSError, asyncssh.Error) as exc:
            raise TransportError(f"{what}: {exc}") from None

    async def _exec(self, command: str, timeout: float | None = None) -> tuple[int, bytes, bytes]:
        """Run a command on the connection; (exit status, stdout, stderr), 124 on timeout.

        Each command holds one of the connection's channel slots until sshd has closed its
        session (sshd counts sessions against MaxSessions until the command has exited). A
        command that times out is sent SIGKILL (sshd honours that for non-root logins only)
        and keeps its slot in the background until it ends; the caller is not held up.
        """
        conn = await self._connection()
        session = self._current()
        limit = self.options.command_timeout if timeout is None else timeout
        await session.channels.acquire()
        release = True
        try:
            with self._errors(f"cannot run a command on {self.where}"):
                process = await conn.create_process(command, encoding=None, stdin=asyncssh.DEVNULL)
                try:
                    done = await process.wait(timeout=limit)
                except asyncssh.TimeoutError as exc:
                    with contextlib.suppress(Exception):
                        process.send_signal("KILL")
                    process.close()
                    release = False
                    task = asyncio.ensure_future(_release_when_closed(process, session.channels))
                    session.background.add(task)
                    task.add_done_callback(session.background.discard)
                    return (
                        124,
                        _bytes(exc.stdout),
                        (_bytes(exc.stderr) + f"timed out after {limit:g} s".encode()),
                    )
                process.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(process.wait_closed(), CLOSE_WAIT)
        finally:
            if release:
                session.channels.release()
        code = done.returncode if done.returncode is not None else -1
        if code < 0 and done.exit_signal:
            code = 128 - code  # killed by a signal, as a shell reports it
        return code, _bytes(done.stdout), _bytes(done.stderr)

    async def _sudo(self, script: str, *args: str, what: str) -> bytes:
        """Run a shell script as root with ``sudo -n``; its stdout, or a TransportError."""
        command = shlex.join(["sudo", "-n", "--", "sh", "-c", script, "sh", *args])
        status, out, err = await self._exec(command)
        if status != 0:
            raise TransportError(f"{what}: {_sudo_problem(err, status)}")
        return out

    # --- files ----------------------------------------------------------------------------

    async def read(self, path: str) -> FileState:
        if self.become:
            return await self._read_sudo(path)
        sftp = await self._sftp()
        with self._errors(f"cannot read {path}", missing_ok=True):
            try:
                attrs = await sftp.lstat(path)  # sftp-server maps ENOTDIR to "no such file" too
            except asyncssh.SFTPNoSuchFile:
                return FileState(path, "missing")
            mode = attrs.permissions or 0
            kind = _KINDS.get(stat.S_IFMT(mode), "other")
            if kind != "file":
                return FileState(path, kind, mode=stat.S_IMODE(mode))
            size = attrs.size or 0
            async with await sftp.open(path, "rb") as handle:
                content = await _read_all(handle, size)
            return FileState(path, "file", content, stat.S_IMODE(mode))
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

    async def _read_batches(self, session: _Session) -> None:
        await asyncio.sleep(0)  # let the reads started in this turn join the batch
        batch: list[tuple[str, asyncio.Future[FileState]]] = []
        try:
            while session.pending_reads:
                batch = session.pending_reads[:READ_BATCH]
                del session.pending_reads[:READ_BATCH]
                paths = [path for path, _ in batch]
                command = shlex.join(["sudo", "-n", "--", "sh", "-c", _READ_SCRIPT, "sh", *paths])
                try:
                    status, out, err = await self._exec(command)
                    if status != 0:
                        raise TransportError(_sudo_problem(err, status))
                except TransportError as exc:
                    for path, future in batch:
                        if not future.done():
                            future.set_exception(TransportError(f"cannot read {path}: {exc}"))
                    continue
                for (path, future), state in zip(batch, _parse_reads(out, paths), strict=True):
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
        directory, name = posixpath.split(path)
        temporary = posixpath.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
        with self._errors(f"cannot write {path}"):
            try:
                handle = await self._create(sftp, temporary, mode)
            except asyncssh.SFTPNoSuchFile:
                await sftp.makedirs(
                    directory, attrs=asyncssh.SFTPAttrs(permissions=DIRECTORY_MODE), exist_ok=True
                )
                handle = await self._create(sftp, temporary, mode)
            try:
                # Set the mode exactly before any byte of content is written: a server may
                # apply its umask to, or ignore, the mode given at open (a key must be 0600).
                await handle.chmod(mode)
                await handle.write(data)
                with contextlib.suppress(asyncssh.SFTPOpUnsupported):
                    await handle.fsync()
            except BaseException:
                with contextlib.suppress(Exception):
                    await handle.close()
                    await sftp.remove(temporary)
                raise
            await handle.close()
        self._current().synced_dirs.add(directory)
        return temporary

    @staticmethod
    async def _create(sftp: asyncssh.SFTPClient, path: str, mode: int) -> asyncssh.SFTPClientFile:
        # 'x': O_EXCL, so an existing file (or symlink) at the temporary name is never reused.
        return await sftp.open(path, "xb", attrs=asyncssh.SFTPAttrs(permissions=mode))

    async def _stage_sudo(self, path: str, data: bytes, mode: int) -> str:
        sftp = await self._sftp()
        upload_dir = await self._temp_dir(sftp)
        directory, name = posixpath.split(path)
        token = secrets.token_hex(8)
        upload = posixpath.join(upload_dir, f"{name}.{token}")
        temporary = posixpath.join(directory, f".{name}.{token}.tmp")
        with self._errors(f"cannot upload {path}"):
            handle = await sftp.open(upload, "xb", attrs=asyncssh.SFTPAttrs(permissions=0o600))
            try:
                await handle.write(data)
            finally:
                await handle.close()
        # install(1) creates the copy 0600 and sets the mode before we rename it anywhere; the
        # copy lands beside the target, so the final step is a rename within that directory.
        script = (
            "umask 027\n"
            'mkdir -p -- "$2" || exit 1\n'
            'install -m "$3" -- "$1" "$4" || { rm -f -- "$1"; exit 1; }\n'
            'rm -f -- "$1"\n'
            'sync -- "$4" 2>/dev/null || :\n'
        )
        await self._sudo(
            script, upload, directory, f"{mode:o}", temporary, what=f"cannot write {path}"
        )
        self._current().synced_dirs.add(directory)
        return temporary

    async def _temp_dir(self, sftp: asyncssh.SFTPClient) -> str:
        session = self._current()
        async with session.lock:
            if session.temp_dir is None:
                candidate = posixpath.join(TEMP_ROOT, f"provision.{secrets.token_hex(12)}")
                with self._errors(f"cannot create an upload directory on {self.where}"):
                    # mkdir fails if anything exists there, so the directory is ours, 0700.
                    await sftp.mkdir(candidate, asyncssh.SFTPAttrs(permissions=0o700))
                session.temp_dir = candidate
            return session.temp_dir

    async def flush(self) -> None:
        """SFTP cannot fsync a directory: one ``sync`` of every folder renamed into."""
        session = self._session
        if session is None or session.conn is None or not session.synced_dirs:
            return
        folders, session.synced_dirs = sorted(session.synced_dirs), set()
        status, _, err = await self._exec(self._sync_command(folders))
        if self.become and status != 0:
            # (Not sync itself, whose failures are ignored: sudo or the shell.) The renames
            # that wait for this point must not go ahead as if their folders were durable.
            session.synced_dirs.update(folders)
            raise TransportError(f"cannot flush {folders[0]}: {_sudo_problem(err, status)}")

    def _sync_command(self, folders: list[str]) -> str:
        """``sync`` of the folders (their entries made durable); through sudo under become,
        since the folders may be readable by root alone. Failures are ignored: ``sync`` of a
        folder is best effort on filesystems that do not support it."""
        sync = shlex.join(["sync", "--", *folders]) + " 2>/dev/null"
        if self.become:
            return shlex.join(["sudo", "-n", "--", "sh", "-c", sync + " || :"])
        return sync

    async def commit(self, staged: str, path: str, *, durable: bool = True) -> None:
        if self.become:
            # Not durable: the folder is synced with the others at the next flush, once.
            sync = 'sync -- "$(dirname -- "$2")" 2>/dev/null || :\n' if durable else ""
            script = (
                'if [ -L "$2" ]; then rm -f -- "$1"; echo "symlink" >&2; exit 3; fi\n'
                'if [ -d "$2" ]; then rm -f -- "$1"; echo "is a directory" >&2; exit 4; fi\n'
                'mv -f -- "$1" "$2" || exit 1\n' + sync
            )
            try:
                await self._sudo(script, staged, path, what=f"cannot write {path}")
            except TransportError as exc:
                if exc.message.endswith(": symlink"):
                    raise TransportError(f"refusing to replace {path}: it is a symlink") from None
                raise
            if not durable:
                self._current().synced_dirs.add(posixpath.dirname(path))
            return
        sftp = await self._sftp()
        with self._errors(f"cannot write {path}"):
            try:
                attrs = await sftp.lstat(path)
            except asyncssh.SFTPNoSuchFile:
                pass
            else:
                if stat.S_ISLNK(attrs.permissions or 0):
                    with contextlib.suppress(asyncssh.SFTPError):
                        await sftp.remove(staged)
                    raise TransportError(f"refusing to replace {path}: it is a symlink")
            try:
                await sftp.posix_rename(staged, path)
            except asyncssh.SFTPOpUnsupported:
                status, _, err = await self._exec(shlex.join(["mv", "-f", "--", staged, path]))
                if status != 0:
                    raise TransportError(
                        f"cannot write {path}: {err.decode(errors='replace').strip()}"
                    ) from None
        self._current().synced_dirs.add(posixpath.dirname(path))
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
            script = (
                'if [ -e "$2" ] || [ -L "$2" ]; then rm -f -- "$1"; exit 3; fi\n'
                'ln -T -- "$1" "$2" 2>/dev/null; s=$?\n'
                'rm -f -- "$1"\n'
                '[ "$s" -eq 0 ] && exit 0\n'
                'if [ -e "$2" ] || [ -L "$2" ]; then exit 3; fi\n'
                'echo "cannot link" >&2; exit 1\n'
            )
            command = shlex.join(["sudo", "-n", "--", "sh", "-c", script, "sh", staged, path])
            status, _, err = await self._exec(command)
            if status == 3:
                return False
            if status != 0:
                raise TransportError(
                    f"cannot create {path}: {err.decode(errors='replace').strip()}"
                )
            return True
        sftp = await self._sftp()
        with self._errors(f"cannot create {path}"):
            try:
                await sftp.link(staged, path)
            except asyncssh.SFTPOpUnsupported:
                await sftp.remove(staged)
                return await self._create_excl(sftp, path, data, mode)
            except asyncssh.SFTPError:
                with contextlib.suppress(asyncssh.SFTPError):
                    await sftp.remove(staged)
                if await self._exists(sftp, path):
                    return False
                raise
            await sftp.remove(staged)
        return True

    async def _create_excl(
        self, sftp: asyncssh.SFTPClient, path: str, data: bytes, mode: int
    ) -> bool:
        try:
            handle = await self._create(sftp, path, mode)
        except asyncssh.SFTPError:
            if await self._exists(sftp, path):
                return False
            raise
        try:
            if mode & 0o077:
                await handle.chmod(mode)
            await handle.write(data)
        finally:
            await handle.close()
        return True

    @staticmethod
    async def _exists(sftp: asyncssh.SFTPClient, path: str) -> bool:
        try:
            await sftp.lstat(path)
        except asyncssh.SFTPNoSuchFile:
            return False
        return True

    async def remove(self, path: str, *, durable: bool = True) -> None:
        if self.become:
            flush = ' && { sync -- "$(dirname -- "$1")" 2>/dev/null || :; }' if durable else ""
            await self._sudo(f'rm -f -- "$1"{flush}', path, what=f"cannot remove {path}")
            if not durable:
                self._current().synced_dirs.add(posixpath.dirname(path))
            return
        sftp = await self._sftp()
        with self._errors(f"cannot remove {path}", missing_ok=True):
            await sftp.remove(path)
        self._current().synced_dirs.add(posixpath.dirname(path))
        if durable:
            await self.flush()

    async def remove_dir(self, path: str) -> None:
        if self.become:
            await self._sudo(
                '[ -e "$1" ] || [ -L "$1" ] || exit 0\nrmdir -- "$1"',
                path,
                what=f"cannot remove {path}",
            )
            return
        sftp = await self._sftp()
        with self._errors(f"cannot remove {path}", missing_ok=True):
            await sftp.rmdir(path)

    async def list_dir(self, path: str) -> list[str]:
        if self.become:
            script = (
                '[ -d "$1" ] || exit 0\n'
                'cd -- "$1" || exit 1\n'
                "for f in * .*; do\n"
                "  case $f in .|..) continue;; esac\n"
                '  [ -e "$f" ] || [ -L "$f" ] || continue\n'
                "  printf '%s\\0' \"$f\"\n"
                "done\n"
            )
            out = await self._sudo(script, path, what=f"cannot list {path}")
            return sorted(
                name.decode(errors="surrogateescape") for name in out.split(b"\0") if name
            )
        sftp = await self._sftp()
        with self._errors(f"cannot list {path}", missing_ok=True):
            try:
                names = await sftp.listdir(path)
            except asyncssh.SFTPFailure:
                return []  # not a directory
            return sorted(n for n in names if n not in (".", ".."))
        return []

    # --- commands -------------------------------------------------------------------------

    async def run(self, command: str, timeout: float | None = None) -> CommandResult:
        """Run ``command`` in the work directory (as root with ``become``)."""
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

    async def _tidy(self, session: _Session) -> None:
        conn = session.conn
        assert conn is not None
        jobs: list[Awaitable[object]] = []
        if session.temp_dir is not None and session.sftp is not None:
            jobs.append(_remove_tree(session.sftp, session.temp_dir))
        if session.synced_dirs:
            jobs.append(
                conn.run(self._sync_command(sorted(session.synced_dirs)), stdin=asyncssh.DEVNULL)
            )
        await asyncio.gather(*jobs, return_exceptions=True)


async def _remove_tree(sftp: asyncssh.SFTPClient, folder: str) -> None:
    """The upload folder: normally empty already (each upload is deleted once installed)."""
    for name in await sftp.listdir(folder):
        if name not in (".", ".."):
            with contextlib.suppress(asyncssh.SFTPError):
                await sftp.remove(posixpath.join(folder, name))
    await sftp.rmdir(folder)


async def _release_when_closed(
    process: asyncssh.SSHClientProcess[bytes], channels: asyncio.Semaphore
) -> None:
    try:
        await process.wait_closed()
    finally:
        channels.release()


async def _read_all(handle: asyncssh.SFTPClientFile, size: int) -> bytes:
    """Read to the end: the size from lstat, then more until a short read (the file grew)."""
    chunks: list[bytes] = []
    want = max(size, 0) + 1  # one byte more than expected shows EOF without another request
    while True:
        chunk = await handle.read(want)
        assert isinstance(chunk, bytes)
        chunks.append(chunk)
        if len(chunk) < want:
            return b"".join(chunks)
        want = 65536


# For each path: "missing", or "!problem", or the lstat mode in hex; then, for a regular file,
# its content in base64 (whose alphabet has no "."), and a "." line to close the record.
_READ_SCRIPT = """\
for p in "$@"; do
  if [ ! -e "$p" ] && [ ! -L "$p" ]; then echo missing; continue; fi
  m=$(stat -c %f -- "$p" 2>/dev/null) || { echo '!cannot stat it'; continue; }
  echo "$m"
  if [ -f "$p" ] && [ ! -L "$p" ]; then
    base64 -- "$p" 2>/dev/null || { echo '!cannot read it'; continue; }
  fi
  echo .
done
"""
READ_BATCH = 200  # paths per command, well inside any command-line limit


def _parse_reads(out: bytes, paths: Sequence[str]) -> list[FileState | str]:
    """The states ``_READ_SCRIPT`` printed, in order; a string for a path it could not read."""
    lines = iter(out.split(b"\n"))
    results: list[FileState | str] = []
    for path in paths:
        head = next(lines, None)
        if head is None:
            results.append("no answer from the host")
            continue
        if head == b"missing":
            results.append(FileState(path, "missing"))
            continue
        if head.startswith(b"!"):
            results.append(head[1:].decode(errors="replace"))
            continue
        try:
            raw = int(head, 16)
        except ValueError:
            results.extend(["unexpected answer from the host"] * (len(paths) - len(results)))
            return results
        body: list[bytes] = []
        problem = None
        for line in lines:
            if line == b".":
                break
            if line.startswith(b"!"):
                problem = line[1:].decode(errors="replace")
                break
            body.append(line)
        kind = _KINDS.get(stat.S_IFMT(raw), "other")
        if problem is not None:
            results.append(problem)
        elif kind != "file":
            results.append(FileState(path, kind, mode=stat.S_IMODE(raw)))
        else:
            try:
                content = base64.b64decode(b"".join(body), validate=True)
            except ValueError:
                results.append("unexpected answer from the host")
                continue
            results.append(FileState(path, "file", content, stat.S_IMODE(raw)))
    return results


def _sudo_problem(err: bytes, status: int) -> str:
    text = err.decode(errors="replace").strip()
    line = text.splitlines()[-1] if text else f"exit status {status}"
    if "sudo:" in line and "password" in line:
        line += " (become needs passwordless sudo for the login user)"
    return line


def _bytes(value: object) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return " ".join(str(reason).split())


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "host unreachable"
    if exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__
