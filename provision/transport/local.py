"""The local transport: this machine's files, relative paths from the current directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat

from provision import fsutil
from provision.errors import TransportError
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

    async def stage(self, path: str, data: bytes, mode: int) -> str:
        staged = fsutil.stage(path, data, mode)
        # The next flush makes the staged file's name durable too, so a journal written
        # after it never names a file a crash could have lost.
        self._unflushed.add(os.path.dirname(path))
        return staged

    async def commit(self, staged: str, path: str, *, durable: bool = True) -> None:
        fsutil.commit(staged, path, durable=durable)
        if not durable:
            self._unflushed.add(os.path.dirname(path))

    async def flush(self) -> None:
        folders, self._unflushed = sorted(self._unflushed), set()
        for folder in folders:
            try:
                fsutil.fsync_directory(folder)
            except FileNotFoundError:
                pass  # removed since (an emptied backup folder): nothing left to persist
            except OSError as exc:
                raise TransportError(f"cannot flush {folder}: {exc.strerror}") from None

    async def create_exclusive(self, path: str, data: bytes, mode: int) -> bool:
        # Written beside, then hard-linked onto the name: the file appears complete, so
        # another run never reads an empty lock (which it would take for a stale one).
        staged = fsutil.stage(path, data, mode, durable=False)
        try:
            os.link(staged, path)
        except FileExistsError:
            return False
        except OSError as exc:
            raise TransportError(f"cannot create {path}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)
        return True

    async def remove(self, path: str, *, durable: bool = True) -> None:
        try:
            os.unlink(path)
            if durable:
                fsutil.fsync_directory(os.path.dirname(path))
            else:
                self._unflushed.add(os.path.dirname(path))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise TransportError(f"cannot remove {path}: {exc.strerror}") from None

    async def remove_dir(self, path: str) -> None:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise TransportError(f"cannot remove {path}: {exc.strerror}") from None

    async def list_dir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except (FileNotFoundError, NotADirectoryError):
            return []
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
    """One ``lstat`` and at most one read; symlinks are reported, not followed."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return FileState(path, "missing")
    except OSError as exc:
        raise TransportError(f"cannot read {path}: {exc.strerror}") from None
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode):
        return FileState(path, "symlink", mode=mode)
    if stat.S_ISDIR(info.st_mode):
        return FileState(path, "directory", mode=mode)
    if not stat.S_ISREG(info.st_mode):
        return FileState(path, "other", mode=mode)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            content = _read_all(fd, info.st_size)
        finally:
            os.close(fd)
    except OSError as exc:
        raise TransportError(f"cannot read {path}: {exc.strerror}") from None
    return FileState(path, "file", content, mode)


def _read_all(fd: int, size_hint: int) -> bytes:
    # One byte more than the size: a short read is the end of a regular file, so an unchanged
    # file costs one read, not two (this runs for every file of every host).
    first = os.read(fd, size_hint + 1)
    if len(first) <= size_hint:
        return first
    chunks = [first]
    while chunks[-1]:
        chunks.append(os.read(fd, 65536))
    return b"".join(chunks)
