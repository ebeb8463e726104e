"""This machine's files, reached without following a symlink in any component of a path.

A host's folders are input like any other: whoever can write into a certificates directory
(a compromised web application, a careless colleague) can put a symlink there, and a tool
running as root that follows it writes, reads or deletes wherever it points. ``lstat`` of
each component before use would leave a window between the check and the use; here every
folder is opened from ``/`` one name at a time with ``O_NOFOLLOW``, and the operation is
then done relative to the last folder's descriptor (``openat``, ``renameat``, ``unlinkat``),
so a symlink swapped in meanwhile is never followed either. See docs/architecture.md,
"Host paths and symlinks".
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator

from provision import fsutil
from provision.errors import TransportError
from provision.transport.base import SymlinkInPath

# Folders along the way need only be searchable, not readable (a home directory may be
# 0711): O_PATH opens them for use as a starting point only, where the system has it.
_ALONG = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LAST = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _names(path: str) -> list[str]:
    if not os.path.isabs(path):
        raise TransportError(f"{path} is not an absolute path")
    return [name for name in os.path.normpath(path).split("/") if name]


def _refuse(at: int, name: str, so_far: str) -> TransportError:
    """Why ``name`` could not be entered as a folder, in words."""
    try:
        info = os.stat(name, dir_fd=at, follow_symlinks=False)
    except OSError:
        return TransportError(f"cannot open the folder {so_far}")
    if stat.S_ISLNK(info.st_mode):
        target = None
        with contextlib.suppress(OSError):
            target = os.readlink(name, dir_fd=at)
        return SymlinkInPath(so_far, target)
    what = "a file" if stat.S_ISREG(info.st_mode) else "a special file"
    return TransportError(f"{so_far} is {what}, not a folder")


@contextlib.contextmanager
def folder(path: str, *, create: int | None = None) -> Iterator[int | None]:
    """A descriptor of the folder ``path``, reached name by name without following a
    symlink; None when a component is missing (unless ``create`` gives the mode to make
    missing folders with). A symlink on the way raises ``SymlinkInPath``."""
    fd = open_folder(path, create=create)
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def open_folder(path: str, *, create: int | None = None) -> int | None:
    """``folder``'s descriptor, to be closed by the caller."""
    names = _names(path)
    fd = os.open("/", _LAST if not names else _ALONG)
    so_far = ""
    for index, name in enumerate(names):
        so_far += "/" + name
        flags = _LAST if index == len(names) - 1 else _ALONG
        try:
            child = _enter(fd, name, flags, create, so_far)
        finally:
            os.close(fd)
        if child is None:
            return None
        fd = child
    return fd


def _enter(at: int, name: str, flags: int, create: int | None, so_far: str) -> int | None:
    """The folder ``name`` in ``at``: a descriptor, None when missing (or a file, when only
    reading: nothing is followed there either), made when ``create`` says with what mode."""
    try:
        return os.open(name, flags, dir_fd=at)
    except FileNotFoundError:
        if create is None:
            return None
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        refusal = _refuse(at, name, so_far)
        if create is None and not isinstance(refusal, SymlinkInPath):
            return None
        raise refusal from None
    with contextlib.suppress(FileExistsError):  # (another run may make it meanwhile)
        os.mkdir(name, create, dir_fd=at)
    try:
        return os.open(name, flags, dir_fd=at)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refuse(at, name, so_far) from None
        raise


def lstat(at: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=at, follow_symlinks=False)
    except FileNotFoundError:
        return None


def read_all(at: int, name: str, size_hint: int) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=at)
    try:
        # One byte more than the size: a short read is the end of a regular file, so an
        # unchanged file costs one read, not two (this runs for every file of every host).
        first = os.read(fd, size_hint + 1)
        if len(first) <= size_hint:
            return first
        chunks = [first]
        while chunks[-1]:
            chunks.append(os.read(fd, 65536))
        return b"".join(chunks)
    finally:
        os.close(fd)


def create_temporary(at: int, name: str, data: bytes, mode: int, *, durable: bool) -> str:
    """A new ``.NAME.RANDOM.tmp`` in the folder ``at`` holding ``data`` with ``mode`` from
    the start (fsynced when ``durable``); its name."""
    while True:
        temporary = f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(
                temporary,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=at,
            )
            break
        except FileExistsError:
            continue
    try:
        fsutil.fill(fd, data, mode, durable=durable)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=at)
        raise
    os.close(fd)
    return temporary
