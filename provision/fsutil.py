"""Atomic file writes on this machine: temporary file beside the target, fsync, rename."""

from __future__ import annotations

import os
import stat
import tempfile

from provision.errors import TransportError
from provision.layout import FOLDER_MODE as DIRECTORY_MODE


def stage(path: str, data: bytes, mode: int, *, durable: bool = True) -> str:
    """Write ``data`` to a temporary file beside ``path`` with ``mode`` from the start,
    fsynced unless ``durable`` is off (for files a crash may lose, such as locks)."""
    directory, name = os.path.split(path)
    try:
        os.makedirs(directory or ".", mode=DIRECTORY_MODE, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory or ".")
    except OSError as exc:
        raise TransportError(f"cannot write {path}: {exc.strerror}") from None
    try:
        fill(fd, data, mode, durable=durable)
    except OSError as exc:
        os.unlink(temporary)
        raise TransportError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return temporary


def fill(fd: int, data: bytes, mode: int, *, durable: bool) -> None:
    """A new file's mode (before any byte: a key is never readable by others), then all of
    ``data`` (``write`` may take less than asked), fsynced when ``durable``."""
    os.fchmod(fd, mode)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    if durable:
        os.fsync(fd)


def commit(staged: str, path: str, *, durable: bool = True) -> None:
    """Rename ``staged`` onto ``path`` (and fsync the directory when ``durable``); never
    through a symlink."""
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            os.unlink(staged)
            raise TransportError(f"refusing to replace {path}: it is a symlink")
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise TransportError(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.replace(staged, path)
        if durable:
            fsync_directory(os.path.dirname(path))
    except OSError as exc:
        raise TransportError(f"cannot write {path}: {exc.strerror}") from None


def write_atomic(path: str, data: bytes, mode: int) -> None:
    commit(stage(path, data, mode), path)


def fsync_directory(directory: str) -> None:
    fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
