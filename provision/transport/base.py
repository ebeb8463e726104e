"""The handful of operations every transport offers.

Everything the executor does to a host goes through these methods, so local and SSH hosts
behave the same. Writes are staged (a temporary file beside the target, fsynced) and then
renamed into place, which lets the executor stage a whole set of files before it replaces any.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

FileKind = Literal["missing", "file", "symlink", "directory", "other"]


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

    @abstractmethod
    def resolve(self, path: str) -> str:
        """An absolute, normalised path on the host (relative paths from the work directory)."""

    @abstractmethod
    async def read(self, path: str) -> FileState: ...

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
    async def list_dir(self, path: str) -> list[str]:
        """Names in a directory; empty when it does not exist."""

    @abstractmethod
    async def run(self, command: str, timeout: float = 60.0) -> CommandResult: ...

    async def write(self, path: str, data: bytes, mode: int, *, durable: bool = True) -> None:
        await self.commit(await self.stage(path, data, mode), path, durable=durable)

    async def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release the connection; the default has nothing to release."""
