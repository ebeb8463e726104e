"""One SSH connection to a host: opening it, its errors in one line, and running commands.

Everything a person can get wrong (address, port, user, key, host key) ends in a one-line
``TransportError`` naming ``address:port``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Iterator
from dataclasses import dataclass, field

import asyncssh

from provision.errors import TransportError
from provision.transport.base import ConnectOptions, FileKind, FileState
from provision.transport.ssh.host_keys import HostKeyPolicy

# sshd allows 10 sessions per connection (MaxSessions); SFTP holds one, commands share the rest.
EXEC_CHANNELS = 8
KEEPALIVE_INTERVAL = 15.0
CLOSE_WAIT = 5.0  # seconds to wait for sshd to close the channel of a finished command


class _Client(asyncssh.SSHClient):
    def __init__(self, policy: HostKeyPolicy) -> None:
        self.policy = policy

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        return self.policy.validate(host, addr, key)

    def validate_host_ca_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        return self.policy.validate_ca(key)


@dataclass
class Session:
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
    # Folders found to be folders (not symlinks) this run, by the lstat that found it: the
    # reads of one host share one lstat per folder.
    folders: dict[str, asyncio.Future[FileKind]] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    """Whom to reach, and as whom."""

    address: str
    port: int
    user: str
    ssh_key: str | None  # only this key is offered when set (IdentitiesOnly)

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"


async def connect(endpoint: Endpoint, options: ConnectOptions) -> asyncssh.SSHClientConnection:
    policy = HostKeyPolicy.load(endpoint.address, endpoint.port, options)
    keys: dict[str, object] = {}
    if endpoint.ssh_key:
        keys = {"client_keys": [endpoint.ssh_key], "agent_path": None}
    algs = policy.server_host_key_algs()
    if algs is not None:
        keys["server_host_key_algs"] = algs
    where = endpoint.where
    try:
        conn, _ = await asyncssh.create_connection(
            lambda: _Client(policy),
            endpoint.address,
            endpoint.port,
            username=endpoint.user,
            known_hosts=policy.known,
            connect_timeout=options.connect_timeout,
            keepalive_interval=KEEPALIVE_INTERVAL,
            **keys,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        raise TransportError(f"{where}: {policy.problem or reason(exc)}") from None
    except asyncssh.PermissionDenied:
        tried = f"key {endpoint.ssh_key}" if endpoint.ssh_key else "the agent and ~/.ssh keys"
        raise TransportError(
            f"{where}: authentication failed for user {endpoint.user!r} ({tried})"
        ) from None
    except asyncssh.DisconnectError as exc:
        raise TransportError(f"{where}: ssh: {reason(exc)}") from None
    except TimeoutError:
        raise TransportError(
            f"{where}: connection timed out after {options.connect_timeout:g} s"
        ) from None
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
        raise TransportError(f"{where}: cannot load ssh_key {endpoint.ssh_key}: {exc}") from None
    except OSError as exc:
        if exc.filename and exc.filename == endpoint.ssh_key:
            raise TransportError(
                f"{where}: cannot load ssh_key {endpoint.ssh_key}: {exc.strerror}"
            ) from None
        raise TransportError(f"{where}: cannot connect: {_os_reason(exc)}") from None
    except (asyncssh.Error, ValueError) as exc:
        raise TransportError(f"{where}: ssh: {exc}") from None
    return conn


@contextlib.contextmanager
def errors(what: str, where: str, missing_ok: bool = False) -> Iterator[None]:
    """SSH and SFTP failures as one ``TransportError`` saying what was being done."""
    try:
        yield
    except asyncssh.SFTPNoSuchFile:
        if not missing_ok:
            raise TransportError(f"{what}: no such file or directory") from None
    except asyncssh.SFTPError as exc:
        raise TransportError(f"{what}: {reason(exc)}") from None
    except (asyncssh.DisconnectError, asyncssh.ChannelOpenError) as exc:
        raise TransportError(f"{what}: connection to {where} failed: {reason(exc)}") from None
    except (OSError, asyncssh.Error) as exc:
        raise TransportError(f"{what}: {exc}") from None


async def run_command(
    conn: asyncssh.SSHClientConnection,
    session: Session,
    command: str,
    limit: float,
    where: str,
) -> tuple[int, bytes, bytes]:
    """Run a command on the connection; (exit status, stdout, stderr), 124 on timeout.

    Each command holds one of the connection's channel slots until sshd has closed its
    session (sshd counts sessions against MaxSessions until the command has exited). A
    command that times out is sent SIGKILL (sshd honours that for non-root logins only)
    and keeps its slot in the background until it ends; the caller is not held up.
    """
    await session.channels.acquire()
    release = True
    try:
        with errors(f"cannot run a command on {where}", where):
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
                    as_bytes(exc.stdout),
                    (as_bytes(exc.stderr) + f"timed out after {limit:g} s".encode()),
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
    return code, as_bytes(done.stdout), as_bytes(done.stderr)


async def _release_when_closed(
    process: asyncssh.SSHClientProcess[bytes], channels: asyncio.Semaphore
) -> None:
    try:
        await process.wait_closed()
    finally:
        channels.release()


def as_bytes(value: object) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def reason(exc: BaseException) -> str:
    text = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "host unreachable"
    if exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__
