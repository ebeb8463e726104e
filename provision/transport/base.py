"""The handful of operations every transport offers.

Everything the executor does to a host goes through these methods, so local and SSH hosts
behave the same. Writes are staged (a temporary file beside the target, fsynced) and then
renamed into place, which lets the executor stage a whole set of files before it replaces any.
"""

from __future__ import annotations

import asyncio
import inspect
import ntpath
import posixpath
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Literal, TypeVar, cast

from provision.errors import TransportError

T = TypeVar("T")
U = TypeVar("U")
FileKind = Literal["missing", "file", "symlink", "directory", "other"]
OsFamily = Literal["posix", "windows"]


@dataclass(frozen=True)
class ConnectOptions:
    """Run-wide connection settings, from the command line."""

    known_hosts: str | None = None  # an extra known_hosts file (also written by accept_new)
    accept_new_host_keys: bool = False  # OpenSSH's StrictHostKeyChecking=accept-new
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    # SSH connections being started at once (key exchange, authentication, SFTP start), apart
    # from --forks; 0: no cap beyond --forks. A cap bounds the rate of starts, so it is for
    # hosts sharing one sshd, below its MaxStartups (docs/ssh.md).
    connect_concurrency: int = 0


@dataclass(frozen=True)
class PathFlavour:
    """How a host spells paths: POSIX (``/etc/nginx/x``) or Windows (``C:\\X\\y``).

    Every host path is built with its host's flavour, never with the controller's ``os.path``
    nor a fixed ``posixpath``: a Windows certificates directory joined the POSIX way would
    become a relative folder named ``C:\\Program Files\\...`` on whatever machine wrote it.
    """

    family: OsFamily
    module: ModuleType  # posixpath or ntpath: pure string functions, never the file system

    @property
    def sep(self) -> str:
        return str(self.module.sep)

    def join(self, path: str, *parts: str) -> str:
        return str(self.module.join(path, *parts))

    def split(self, path: str) -> tuple[str, str]:
        head, tail = self.module.split(path)
        return str(head), str(tail)

    def dirname(self, path: str) -> str:
        return str(self.module.dirname(path))

    def basename(self, path: str) -> str:
        return str(self.module.basename(path))

    def splitext(self, path: str) -> tuple[str, str]:
        root, ext = self.module.splitext(path)
        return str(root), str(ext)

    def normpath(self, path: str) -> str:
        return str(self.module.normpath(path))

    def isabs(self, path: str) -> bool:
        # ntpath.isabs("\\x") is True on older Pythons, but a path without a drive is
        # relative to the current drive: only a drive or UNC root makes it absolute here.
        if self.family == "windows":
            drive, rest = ntpath.splitdrive(path)
            return bool(drive) and rest[:1] in ("\\", "/")
        return bool(self.module.isabs(path))

    def is_root(self, path: str) -> bool:
        """Whether ``dirname`` can go no higher (``/``, ``C:\\``, ``\\\\server\\share\\``)."""
        return path in ("", self.dirname(path))

    def is_inside(self, path: str, folder: str) -> bool:
        """Whether ``path`` is ``folder`` or below it, by name (Windows names ignore case)."""
        path, folder = self.normpath(path), self.normpath(folder)
        if self.family == "windows":
            path, folder = path.lower(), folder.lower()
        if path == folder:
            return True
        prefix = folder if folder.endswith(self.sep) else folder + self.sep
        return path.startswith(prefix)

    def parts(self, path: str) -> tuple[str, ...]:
        """An absolute path as plain names, for mirroring a host's files in a folder of the
        controller: ``/etc/nginx/x`` -> etc, nginx, x; ``C:\\X\\y`` -> C, X, y;
        ``\\\\server\\share\\y`` -> UNC, server, share, y."""
        if not self.isabs(path):
            raise ValueError(f"{path!r} is not an absolute path")
        normal = self.normpath(path)
        if self.family == "windows":
            drive, rest = ntpath.splitdrive(normal)
            if drive.startswith(("\\\\", "//")):
                head = ["UNC", *(p for p in re.split(r"[\\/]", drive) if p)]
            else:
                head = [drive.rstrip(":")]
            names = [*head, *(p for p in re.split(r"[\\/]", rest) if p)]
        else:
            names = [p for p in normal.split("/") if p]
        if any(name in (".", "..") for name in names):
            raise ValueError(f"{path!r} climbs out of its root")
        return tuple(names)


POSIX = PathFlavour("posix", posixpath)
WINDOWS = PathFlavour("windows", ntpath)
FLAVOURS: dict[OsFamily, PathFlavour] = {"posix": POSIX, "windows": WINDOWS}


class SymlinkInPath(TransportError):
    """A folder on the way to a path is a symlink: nothing was done there.

    The rule is stated once, in docs/architecture.md ("Host paths and symlinks"): whoever
    can write into a certificates directory can plant a symlink there, and a tool running as
    root that follows it writes, reads or deletes wherever it points.
    """

    def __init__(self, folder: str, target: str | None = None) -> None:
        to = f" (to {target})" if target else ""
        super().__init__(
            f"{folder} is a symlink{to}; provision never follows a symlink in a host path: "
            "name the real folder in the playbook, or remove the link"
        )


def folders_above(paths: PathFlavour, path: str) -> list[str]:
    """Every folder on the way to ``path``, from the top: /a/b/c -> /a, /a/b."""
    found: list[str] = []
    folder = paths.dirname(path)
    while not paths.is_root(folder):
        found.append(folder)
        folder = paths.dirname(folder)
    return found[::-1]


@dataclass(frozen=True)
class FileState:
    """What is at a path. Symlinks are reported, never followed."""

    path: str
    kind: FileKind
    content: bytes | None = None
    mode: int | None = None

    @property
    def exists(self) -> bool:
        return self.kind != "missing"

    @property
    def described(self) -> str:
        """The kind in words, for messages: 'a directory', 'a special file'."""
        return {"other": "a special file", "directory": "a directory", "symlink": "a symlink"}.get(
            self.kind, f"a {self.kind}"
        )


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def output(self) -> str:
        """What a person wants to read when the command failed."""
        return (self.stderr.strip() or self.stdout.strip()) or f"exit status {self.exit_status}"


class Transport(ABC):
    """One host's files and commands. Paths given to methods are absolute on the host."""

    host: str
    # How this host spells paths; every path given to or built for it uses this flavour.
    paths: PathFlavour = POSIX
    # Whether operations asked for together travel together (SSH: requests are sent before
    # the answers to earlier ones come back). Callers ask for independent operations at once
    # (``together``) only then: locally nothing would be saved, and each host's steps would
    # interleave with other hosts' instead of following each other.
    pipelined: bool = False

    @abstractmethod
    def resolve(self, path: str) -> str:
        """An absolute, normalised path on the host (relative paths from the work directory)."""

    @abstractmethod
    async def read(self, path: str) -> FileState: ...

    async def read_many(self, paths: Sequence[str]) -> list[FileState]:
        """Several reads at once, in order (a transport may share work between them: one
        walk to each folder, one request batch)."""
        return list(await asyncio.gather(*(self.read(path) for path in paths)))

    @abstractmethod
    async def stage(self, path: str, data: bytes, mode: int) -> str:
        """Write ``data`` to a new temporary file beside ``path``; return the temporary path.

        The file is fsynced and has ``mode`` from the start (a key is never world-readable,
        not even for a moment). Parent directories are created as needed.
        """

    @abstractmethod
    async def commit(self, staged: str, path: str, *, durable: bool = True) -> None:
        """Atomically rename a staged file onto ``path``; ``durable`` fsyncs the directory
        now, otherwise the next ``flush`` does (one fsync for many renames).

        Refuses to replace a symlink: writing through one could reach any file on the host.
        """

    @abstractmethod
    async def flush(self) -> None:
        """Make every rename and removal made with ``durable=False`` durable."""

    @abstractmethod
    async def create_exclusive(self, path: str, data: bytes, mode: int) -> bool:
        """Create ``path`` holding ``data`` only if nothing is there; False if something is.

        This is the primitive locks are built on, so two runs can never both believe they
        hold a host. Not made durable: after a crash a lock may as well be gone.
        """

    @abstractmethod
    async def remove(self, path: str, *, durable: bool = True) -> None:
        """Remove a file if it exists; ``durable`` also flushes the directory (not needed
        for locks and other files whose loss in a crash is harmless)."""

    @abstractmethod
    async def remove_dir(self, path: str) -> None:
        """Remove an empty directory if it exists."""

    @abstractmethod
    async def set_folder_mode(self, path: str, mode: int) -> None:
        """Set the permission bits of the folder ``path`` (never through a symlink)."""

    @abstractmethod
    async def list_dir(self, path: str) -> list[str]:
        """Names in a directory; empty when it does not exist."""

    @abstractmethod
    async def run(self, command: str, timeout: float = 60.0) -> CommandResult: ...

    async def run_steps(
        self, commands: Sequence[str], timeout: float = 60.0
    ) -> list[CommandResult]:
        """Run ``commands`` one after the other, each only if the one before it succeeded:
        the results of those that ran (the last one failed if fewer than all ran).

        The executor's config tests and reloads go this way, so a transport that pays for
        each command (SSH: a login shell per exec request) can send them all at once."""
        results: list[CommandResult] = []
        for command in commands:
            results.append(await self.run(command, timeout))
            if not results[-1].ok:
                break
        return results

    async def start(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Reach the host and learn what only it can tell (an SSH login's home directory),
        before paths are built for it: ``resolve`` may answer differently afterwards. The
        default has nothing to learn."""

    async def write(self, path: str, data: bytes, mode: int, *, durable: bool = True) -> None:
        await self.commit(await self.stage(path, data, mode), path, durable=durable)

    async def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release the connection; the default has nothing to release."""


async def together(transport: Transport, jobs: Iterable[Awaitable[T]]) -> list[T]:
    """Every job, all at once where ``transport`` is pipelined (a round trip for all), else
    one after the other; their results, in order. The first failure is raised, and then no
    job is left running behind it."""
    pending = list(jobs)
    if transport.pipelined:
        results = await asyncio.gather(*pending, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results  # type: ignore[return-value]
    done: list[T] = []
    try:
        for job in pending:
            done.append(await job)
    finally:
        for job in pending[len(done) + 1 :]:
            if inspect.iscoroutine(job):
                job.close()  # never started: no "never awaited" warning
    return done


async def both(transport: Transport, first: Awaitable[T], second: Awaitable[U]) -> tuple[T, U]:
    """``together`` for two jobs of different kinds."""
    jobs: list[Awaitable[object]] = [first, second]
    one, two = await together(transport, jobs)
    return cast(T, one), cast(U, two)
