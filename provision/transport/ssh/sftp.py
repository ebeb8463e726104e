"""File operations over SFTP, as the login user: a few SFTP requests each, no command.

Writes follow ``docs/ssh.md``: a temporary ``.NAME.RANDOM.tmp`` beside the target, created
``O_EXCL`` with its final mode (a key is never readable by others), fsynced when the server
offers ``fsync@openssh.com``, then renamed onto the target with ``posix-rename@openssh.com``
after an ``lstat`` that refuses a symlink. Reads ``lstat`` first and never follow a symlink.

Requests that do not wait for each other's answers are sent together (pipelined): the mode,
the content, the fsync and the close of a staged file go out in one round trip, as requests
on one handle, which the server handles in the order sent. Errors are asyncssh's; the
transport turns them into one-line ``TransportError``s. Paths are POSIX paths (SFTP's own
spelling).
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import secrets
import stat
from collections.abc import Awaitable, Iterable

import asyncssh

from provision.errors import TransportError
from provision.transport.base import FileKind, FileState

KINDS: dict[int, FileKind] = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "directory",
    stat.S_IFLNK: "symlink",
}


async def home(sftp: asyncssh.SFTPClient) -> str:
    """The login's home directory as the server says it (sftp-server starts there)."""
    return posixpath.normpath(await sftp.realpath("."))


def kind_of(attrs: asyncssh.SFTPAttrs | None) -> FileKind:
    if attrs is None:
        return "missing"
    return KINDS.get(stat.S_IFMT(attrs.permissions or 0), "other")


async def look(sftp: asyncssh.SFTPClient, path: str) -> asyncssh.SFTPAttrs | None:
    """``path`` itself (a symlink is a symlink), by one ``lstat``; None when missing (also
    when a folder on the way is a file: sftp-server maps ENOTDIR to "no such file")."""
    try:
        return await sftp.lstat(path)
    except asyncssh.SFTPNoSuchFile:
        return None


async def read(
    sftp: asyncssh.SFTPClient,
    path: str,
    attrs: asyncssh.SFTPAttrs | None,
    background: set[asyncio.Future[None]],
) -> FileState:
    """What ``attrs`` (its ``lstat``) says is at ``path``, with a regular file's content.
    The handle's close is left to run in ``background``: nothing waits for its answer."""
    kind = kind_of(attrs)
    if attrs is None or kind != "file":
        return FileState(path, kind, mode=None if attrs is None else _mode(attrs))
    size = attrs.size or 0
    # A file the server sends in one answer is asked for in one request (size + 1 bytes: a
    # short answer is the end); a larger one in parallel requests, by asyncssh.
    small = size < max(sftp.limits.max_read_len or 0, 0)
    try:
        handle = await sftp.open(path, "rb", block_size=None if small else -1)
    except asyncssh.SFTPNoSuchFile:
        return FileState(path, "missing")  # removed since the lstat
    try:
        content = await _read_all(handle, size)
    except BaseException:
        await handle.close()
        raise
    _later(background, handle.close())
    return FileState(path, "file", content, _mode(attrs))


def _mode(attrs: asyncssh.SFTPAttrs) -> int:
    return stat.S_IMODE(attrs.permissions or 0)


def _later(background: set[asyncio.Future[None]], job: Awaitable[None]) -> None:
    """Run ``job`` without waiting for it (its errors are of no consequence)."""
    task = asyncio.ensure_future(job)
    background.add(task)
    task.add_done_callback(background.discard)
    task.add_done_callback(_quiet)


def _quiet(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()  # (retrieved: asyncio would warn about it otherwise)


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


def temporary_name(path: str, token: str | None = None) -> str:
    """``.NAME.RANDOM.tmp`` beside ``path``: the name every staged file has."""
    directory, name = posixpath.split(path)
    return posixpath.join(directory, f".{name}.{token or secrets.token_hex(8)}.tmp")


async def create(sftp: asyncssh.SFTPClient, path: str, mode: int) -> asyncssh.SFTPClientFile:
    """A new file (``O_EXCL``: an existing file or symlink at the name is never reused).

    Its reads and writes are single requests (``block_size=None``), so requests made on it
    one after the other go out in that order; ``fill`` cuts large contents itself."""
    return await sftp.open(path, "xb", attrs=asyncssh.SFTPAttrs(permissions=mode), block_size=None)


async def fill(
    sftp: asyncssh.SFTPClient,
    handle: asyncssh.SFTPClientFile,
    data: bytes,
    mode: int | None,
    *,
    durable: bool,
) -> None:
    """Set the mode, write ``data``, fsync (when ``durable`` and the server can) and close,
    in one round trip. The mode is set before any byte is written: a server may apply its
    umask to, or ignore, the mode given at open (a key must be 0600)."""
    step = max(sftp.limits.max_write_len or 0, 0) or 32768
    requests: list[Awaitable[object]] = []
    if mode is not None:
        requests.append(handle.chmod(mode))
    requests += [handle.write(data[at : at + step], at) for at in range(0, len(data), step)]
    if durable:
        requests.append(_fsync(handle))
    requests.append(handle.close())
    results = await asyncio.gather(*requests, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            with contextlib.suppress(Exception):
                await handle.close()
            raise result


async def _fsync(handle: asyncssh.SFTPClientFile) -> None:
    with contextlib.suppress(asyncssh.SFTPOpUnsupported):
        await handle.fsync()


async def stage(
    sftp: asyncssh.SFTPClient, path: str, data: bytes, mode: int, *, durable: bool = True
) -> str:
    """A new temporary file beside ``path`` holding ``data`` with ``mode``; its path. The
    folder must exist (the transport makes missing ones first)."""
    temporary = temporary_name(path)
    handle = await create(sftp, temporary, mode)
    try:
        await fill(sftp, handle, data, mode, durable=durable)
    except BaseException:
        with contextlib.suppress(Exception):
            await sftp.remove(temporary)
        raise
    return temporary


async def sync_folders(sftp: asyncssh.SFTPClient, folders: Iterable[str]) -> bool:
    """fsync each folder, all at once: opened for reading (OpenSSH's sftp-server opens a
    folder like a file) and fsynced with ``fsync@openssh.com``. False when the server cannot
    (no such extension, or it refuses to open a folder): the caller syncs another way.
    A folder removed meanwhile has nothing left to persist."""
    results = await asyncio.gather(
        *(_sync_folder(sftp, folder) for folder in folders), return_exceptions=True
    )
    for result in results:
        if isinstance(result, asyncssh.SFTPNoSuchFile):
            continue  # removed since: nothing left to persist there
        if isinstance(result, asyncssh.SFTPError):
            return False  # unsupported, or a folder it may not open: `sync` will do it
        if isinstance(result, BaseException):
            raise result
    return True


async def _sync_folder(sftp: asyncssh.SFTPClient, folder: str) -> None:
    handle = await sftp.open(folder, "rb", block_size=None)
    results = await asyncio.gather(handle.fsync(), handle.close(), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def rename_over(
    sftp: asyncssh.SFTPClient, staged: str, path: str, attrs: asyncssh.SFTPAttrs | None
) -> asyncio.Future[bool]:
    """Rename ``staged`` onto ``path`` (whose ``lstat`` is ``attrs``) atomically, never over
    a symlink; False when the server lacks ``posix-rename@openssh.com`` (the caller falls
    back to ``mv``). The request is scheduled when this returns, so renames scheduled one
    after the other are sent in that order (see the transport's ``commit``)."""
    if kind_of(attrs) == "symlink":
        return asyncio.ensure_future(_refuse_symlink(sftp, staged, path))
    return asyncio.ensure_future(_posix_rename(sftp, staged, path))


async def _refuse_symlink(sftp: asyncssh.SFTPClient, staged: str, path: str) -> bool:
    with contextlib.suppress(asyncssh.SFTPError):
        await sftp.remove(staged)
    raise TransportError(f"refusing to replace {path}: it is a symlink")


async def _posix_rename(sftp: asyncssh.SFTPClient, staged: str, path: str) -> bool:
    try:
        await sftp.posix_rename(staged, path)
    except asyncssh.SFTPOpUnsupported:
        return False
    return True


async def link_exclusive(
    sftp: asyncssh.SFTPClient, staged: str, path: str, data: bytes, mode: int
) -> bool:
    """Hard-link ``staged`` onto ``path`` if nothing holds that name (False if something
    does); without ``hardlink@openssh.com``, an O_EXCL create. ``staged`` is removed, in the
    same round trip as the link."""
    linked, removed = await asyncio.gather(
        sftp.link(staged, path), sftp.remove(staged), return_exceptions=True
    )
    if isinstance(linked, asyncssh.SFTPOpUnsupported):
        return await _create_exclusive(sftp, path, data, mode)
    if isinstance(linked, asyncssh.SFTPError):
        if await look(sftp, path) is not None:
            return False
        raise linked
    if isinstance(linked, BaseException):
        raise linked
    if isinstance(removed, BaseException) and not isinstance(removed, asyncssh.SFTPError):
        raise removed
    return True


async def _create_exclusive(sftp: asyncssh.SFTPClient, path: str, data: bytes, mode: int) -> bool:
    try:
        handle = await create(sftp, path, mode)
    except asyncssh.SFTPError:
        if await look(sftp, path) is not None:
            return False
        raise
    await fill(sftp, handle, data, mode if mode & 0o077 else None, durable=False)
    return True


async def list_dir(sftp: asyncssh.SFTPClient, path: str) -> list[str]:
    try:
        names = await sftp.listdir(path)
    except asyncssh.SFTPFailure:
        return []  # not a directory
    return sorted(n for n in names if n not in (".", ".."))


async def make_folder(sftp: asyncssh.SFTPClient, path: str, mode: int) -> None:
    """``mkdir`` (``mode``, narrowed by the server's umask); one that exists is fine."""
    try:
        await sftp.mkdir(path, asyncssh.SFTPAttrs(permissions=mode))
    except asyncssh.SFTPFailure:
        if kind_of(await look(sftp, path)) != "directory":
            raise
