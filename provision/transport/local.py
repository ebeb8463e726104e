"""The local transport: this machine's files, relative paths from the current directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Sequence

from provision.errors import TransportError
from provision.layout import FOLDER_MODE
from provision.transport import nofollow
from provision.transport.base import CommandResult, FileState, Transport


class LocalTransport(Transport):
    def __init__(self, host: str, workdir: str | None = None) -> None:
        self.host = host
        self.workdir = workdir or os.getcwd()
        self._unflushed: set[str] = set()  # directories renamed into since the last flush
        # Targets ask for their certificates directory each time (an SSH host's is known only
        # once connected), many times per plan: remembered, as this host's never changes.
        self._resolved: dict[str, str] = {}

    def resolve(self, path: str) -> str:
        found = self._resolved.get(path)
        if found is None:
            found = os.path.normpath(os.path.join(self.workdir, os.path.expanduser(path)))
            self._resolved[path] = found
        return found

    async def read(self, path: str) -> FileState:
        return read_file(path)

    async def read_many(self, paths: Sequence[str]) -> list[FileState]:
        """Each folder walked to once (``nofollow``), its files read relative to it."""
        by_folder: dict[str, list[int]] = {}
        for index, path in enumerate(paths):
            by_folder.setdefault(os.path.dirname(path), []).append(index)
        states: dict[int, FileState] = {}
        for folder, indexes in by_folder.items():
            try:
                with nofollow.folder(folder) as at:
                    for index in indexes:
                        states[index] = _read_in(at, paths[index])
            except OSError as exc:
                raise TransportError(f"cannot read {paths[indexes[0]]}: {exc.strerror}") from None
        return [states[index] for index in range(len(paths))]

    async def stage(self, path: str, data: bytes, mode: int) -> str:
        staged = _stage(path, data, mode, durable=True)
        # The next flush makes the staged file's name durable too, so a journal written
        # after it never names a file a crash could have lost.
        self._unflushed.add(os.path.dirname(path))
        return staged

    async def commit(self, staged: str, path: str, *, durable: bool = True) -> None:
        directory, name = os.path.split(path)
        staged_directory, staged_name = os.path.split(staged)
        try:
            with nofollow.folder(staged_directory) as source, nofollow.folder(directory) as at:
                if source is None or at is None:
                    raise TransportError(f"cannot write {path}: {staged} is gone")
                info = nofollow.lstat(at, name)
                if info is not None and stat.S_ISLNK(info.st_mode):
                    with contextlib.suppress(OSError):
                        os.unlink(staged_name, dir_fd=source)
                    raise TransportError(f"refusing to replace {path}: it is a symlink")
                os.rename(staged_name, name, src_dir_fd=source, dst_dir_fd=at)
                if durable:
                    os.fsync(at)
        except OSError as exc:
            raise TransportError(f"cannot write {path}: {exc.strerror}") from None
        if not durable:
            self._unflushed.add(directory)

    async def flush(self) -> None:
        folders, self._unflushed = sorted(self._unflushed), set()
        for folder in folders:
            try:
                with nofollow.folder(folder) as at:
                    if at is not None:  # (else removed since: nothing left to persist)
                        os.fsync(at)
            except OSError as exc:
                raise TransportError(f"cannot flush {folder}: {exc.strerror}") from None

    async def create_exclusive(self, path: str, data: bytes, mode: int) -> bool:
        # Written beside, then hard-linked onto the name: the file appears complete, so
        # another run never reads an empty lock (which it would take for a stale one).
        directory, name = os.path.split(path)
        try:
            with nofollow.folder(directory, create=FOLDER_MODE) as at:
                assert at is not None
                staged = nofollow.create_temporary(at, name, data, mode, durable=False)
                try:
                    os.link(staged, name, src_dir_fd=at, dst_dir_fd=at, follow_symlinks=False)
                except FileExistsError:
                    return False
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(staged, dir_fd=at)
        except OSError as exc:
            raise TransportError(f"cannot create {path}: {exc.strerror}") from None
        return True

    async def remove(self, path: str, *, durable: bool = True) -> None:
        directory, name = os.path.split(path)
        try:
            with nofollow.folder(directory) as at:
                if at is None:
                    return
                try:
                    os.unlink(name, dir_fd=at)
                except FileNotFoundError:
                    return
                if durable:
                    os.fsync(at)
        except OSError as exc:
            raise TransportError(f"cannot remove {path}: {exc.strerror}") from None
        if not durable:
            self._unflushed.add(directory)

    async def remove_dir(self, path: str) -> None:
        directory, name = os.path.split(path)
        try:
            with nofollow.folder(directory) as at:
                if at is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.rmdir(name, dir_fd=at)
        except OSError as exc:
            raise TransportError(f"cannot remove {path}: {exc.strerror}") from None

    async def set_folder_mode(self, path: str, mode: int) -> None:
        try:
            with nofollow.folder(path) as at:
                if at is None:
                    raise TransportError(f"cannot set the mode of {path}: it is not there")
                os.fchmod(at, mode)
        except OSError as exc:
            raise TransportError(f"cannot set the mode of {path}: {exc.strerror}") from None

    async def list_dir(self, path: str) -> list[str]:
        try:
            with nofollow.folder(path) as at:
                return [] if at is None else sorted(os.listdir(at))
        except OSError as exc:
            raise TransportError(f"cannot list {path}: {exc.strerror}") from None

    async def run(self, command: str, timeout: float = 60.0) -> CommandResult:
        process = await asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.workdir,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            return CommandResult(command, 124, "", f"timed out after {timeout:g} s")
        return CommandResult(
            command,
            process.returncode if process.returncode is not None else -1,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
        )


def read_file(path: str) -> FileState:
    """One ``lstat`` and at most one read; symlinks are reported, not followed, and no
    folder on the way to ``path`` is a symlink followed (``nofollow``)."""
    try:
        with nofollow.folder(os.path.dirname(path)) as at:
            return _read_in(at, path)
    except OSError as exc:
        raise TransportError(f"cannot read {path}: {exc.strerror}") from None


def _read_in(at: int | None, path: str) -> FileState:
    """``path``, whose folder is open as ``at`` (None: the folder is not there)."""
    name = os.path.basename(path)
    try:
        info = None if at is None else nofollow.lstat(at, name)
        if at is None or info is None:
            return FileState(path, "missing")
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISLNK(info.st_mode):
            return FileState(path, "symlink", mode=mode)
        if stat.S_ISDIR(info.st_mode):
            return FileState(path, "directory", mode=mode)
        if not stat.S_ISREG(info.st_mode):
            return FileState(path, "other", mode=mode)
        return FileState(path, "file", nofollow.read_all(at, name, info.st_size), mode)
    except OSError as exc:
        raise TransportError(f"cannot read {path}: {exc.strerror}") from None


def _stage(path: str, data: bytes, mode: int, *, durable: bool) -> str:
    """A temporary file beside ``path`` (folders made as needed, 0750); its path."""
    directory, name = os.path.split(path)
    try:
        with nofollow.folder(directory, create=FOLDER_MODE) as at:
            assert at is not None
            return os.path.join(
                directory, nofollow.create_temporary(at, name, data, mode, durable=durable)
            )
    except OSError as exc:
        raise TransportError(f"cannot write {path}: {exc.strerror}") from None
