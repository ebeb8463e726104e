"""One SSH connection to a host: opening it, its errors in one line, and running commands.

Everything a person can get wrong (address, port, user, key, host key) ends in a one-line
``TransportError`` naming ``address:port``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncssh
from asyncssh.encryption import get_default_encryption_algs
from asyncssh.public_key import load_default_keypairs

from provision.errors import TransportError
from provision.transport.base import ConnectOptions, FileState
from provision.transport.ssh.host_keys import HostKeyPolicy
from provision.transport.ssh.shell import HostShell

KEEPALIVE_INTERVAL = 15.0


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
    conn: asyncssh.SSHClientConnection | None = None
    sftp: asyncssh.SFTPClient | None = None
    shell: HostShell | None = None  # the host's one shell, once a command needs it
    failure: TransportError | None = None  # a failed connect fails every later use alike
    synced_dirs: set[str] = field(default_factory=set)  # renamed into; fsynced at the flush
    shell_syncs: bool = False  # the server cannot fsync a folder over SFTP: `sync` does
    background: set[asyncio.Future[None]] = field(default_factory=set)  # unawaited closes
    last_rename: asyncio.Future[None] | None = None  # renames keep the order asked (commit)
    making: dict[str, asyncio.Future[None]] = field(default_factory=dict)  # folders (mkdir)
    pending_reads: list[tuple[str, asyncio.Future[FileState]]] = field(default_factory=list)
    reader: asyncio.Future[None] | None = None  # become: the task running batched reads
    starting: bool = False  # this host's start holds a start slot (``start_slot``)
    # The lstat of each path looked at: kept for the run when it found a folder (the reads of
    # one host share one lstat per folder), else only while it is awaited.
    folders: dict[str, asyncio.Future[asyncssh.SFTPAttrs | None]] = field(default_factory=dict)


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


def ciphers() -> list[str]:
    """asyncssh's ciphers with AES-GCM first: with AES-NI it costs the client 17% less than
    ChaCha20-Poly1305 (asyncssh runs ChaCha20 and Poly1305 as two passes), and the server
    less too. Servers that do not offer it get asyncssh's order as it is."""
    offered = [alg.decode() for alg in get_default_encryption_algs()]
    first = [alg for alg in _CIPHERS_FIRST if alg in offered]
    return first + [alg for alg in offered if alg not in first]


_CIPHERS_FIRST = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def client_keys(path: str) -> Sequence[asyncssh.SSHKeyPair]:
    """The key pair (and its ``-cert.pub`` certificate) in ``path``, loaded once per run
    rather than once per host: kept while the file is the same (size and times)."""
    info = os.stat(path)
    stamp = (path, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    keys = _LOADED.get(path)
    if keys is None or keys[0] != stamp:
        keys = _LOADED[path] = (stamp, asyncssh.load_keypairs([path]))
    return keys[1]


_LOADED: dict[str, tuple[tuple[str, int, int, int], Sequence[asyncssh.SSHKeyPair]]] = {}


def default_keys(loop: asyncio.AbstractEventLoop) -> Sequence[asyncssh.SSHKeyPair] | None:
    """The keys in ``~/.ssh`` that asyncssh loads for a connection without ``ssh_key``
    (``id_ed25519``, ``id_ecdsa``, ``id_rsa``...), loaded once per run (event loop) rather than
    once per host: loading an RSA-3072 key file (ssh-keygen's default) costs about 0.7 s of CPU
    here (cryptography checks the key), for every host. ``None`` when ``~/.ssh/config`` may
    choose other keys per host (IdentityFile, IdentitiesOnly, CertificateFile, or an Include or
    Match that could): asyncssh then reads the config and loads the keys it names, per
    connection, as before. The agent's keys are asked for by asyncssh per connection either
    way (a socket round trip)."""
    if _config_may_choose_keys():
        return None
    keys = _DEFAULTS.get(loop)
    if keys is None:
        keys = _DEFAULTS[loop] = load_default_keypairs()
    return keys


def _config_may_choose_keys() -> bool:
    try:
        with open(os.path.expanduser("~/.ssh/config"), encoding="utf-8", errors="replace") as f:
            text = f.read().lower()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # asyncssh reports it, per connection, as before
    words = ("identityfile", "identitiesonly", "certificatefile", "include", "match")
    return any(word in text for word in words)


_DEFAULTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sequence[asyncssh.SSHKeyPair]] = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def start_slot(session: Session, options: ConnectOptions) -> AsyncIterator[None]:
    """One of the run's ``connect_concurrency`` slots for starting a connection (connect, key
    exchange, authentication, the SFTP subsystem), held until the host is started; none to
    take when there is no cap (the default). sshd drops new connections while ``MaxStartups``
    others are still authenticating, so hosts sharing one sshd need fewer starts at once
    than ``--forks`` may allow. Re-entered by the same host's start, it holds one slot."""
    if session.starting or options.connect_concurrency <= 0:
        yield
        return
    slots = _SLOTS.get(session.loop)
    if slots is None or slots[0] != options.connect_concurrency:
        slots = _SLOTS[session.loop] = (
            options.connect_concurrency,
            asyncio.Semaphore(options.connect_concurrency),
        )
    async with slots[1]:
        session.starting = True
        try:
            yield
        finally:
            session.starting = False


# One set of start slots per event loop (a run); gone with the loop.
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[int, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


async def connect(endpoint: Endpoint, options: ConnectOptions) -> asyncssh.SSHClientConnection:
    policy = HostKeyPolicy.load(endpoint.address, endpoint.port, options)
    where = endpoint.where
    keys: dict[str, object] = {}
    algs = policy.server_host_key_algs()
    if algs is not None:
        keys["server_host_key_algs"] = algs
    try:
        if endpoint.ssh_key:
            keys.update(client_keys=client_keys(endpoint.ssh_key), agent_path=None)
        else:
            found = default_keys(asyncio.get_running_loop())
            if found:  # none: asyncssh's own search, which finds none as cheaply
                keys["client_keys"] = found
        conn, _ = await asyncssh.create_connection(
            lambda: _Client(policy),
            endpoint.address,
            endpoint.port,
            username=endpoint.user,
            known_hosts=policy.known,
            connect_timeout=options.connect_timeout,
            keepalive_interval=KEEPALIVE_INTERVAL,
            encryption_algs=ciphers(),
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
    _send_together(conn)
    return conn


class _Together:
    """The connection's transport, with what is written in one turn of the event loop sent
    in one go: requests sent together (a host's reads, say) leave in one TCP segment, one
    system call, rather than one each. On loopback and on busy machines the calls cost more
    than the encryption: measured, 15% less CPU for sshd and for the client."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._waiting: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self._send)
        self._waiting.append(data)

    def _send(self) -> None:
        if self._waiting:
            data, self._waiting = b"".join(self._waiting), []
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._send()
        self._transport.close()

    def abort(self) -> None:
        self._waiting = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _send_together(conn: asyncssh.SSHClientConnection) -> None:
    """Put ``_Together`` between the connection and its transport, once connected (the
    key exchange goes as asyncssh sends it). asyncssh writes every packet through
    ``_transport.write``; without that attribute (another version), packets go as they are."""
    transport = getattr(conn, "_transport", None)
    if transport is not None and callable(getattr(transport, "write", None)):
        conn._transport = _Together(transport)  # type: ignore[assignment]


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
