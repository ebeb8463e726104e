"""File operations over SFTP, as the login user: each is a few SFTP requests, no command.

Writes follow ``docs/ssh.md``: a temporary ``.NAME.RANDOM.tmp`` beside the target, created
``O_EXCL`` with its final mode (a key is never readable by others), fsynced when the server
offers ``fsync@openssh.com``, then renamed onto the target with ``posix-rename@openssh.com``
after an ``lstat`` that refuses a symlink. Reads ``lstat`` first and never follow a symlink.
Errors are asyncssh's; the transport turns them into one-line ``TransportError``s. Paths are
POSIX paths (SFTP's own spelling).
"""

from __future__ import annotations

import contextlib
import posixpath
import secrets
import stat

import asyncssh

from provision.errors import TransportError
from provision.layout import FOLDER_MODE as DIRECTORY_MODE
from provision.transport.base import FileKind, FileState

KINDS: dict[int, FileKind] = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "directory",
    stat.S_IFLNK: "symlink",
}


async def home(sftp: asyncssh.SFTPClient) -> str:
    """The login's home directory as the server says it (sftp-server starts there)."""
    return posixpath.normpath(await sftp.realpath("."))


async def kind(sftp: asyncssh.SFTPClient, path: str) -> FileKind:
    """What is at ``path`` itself (a symlink is a symlink), by one ``lstat``."""
    try:
        attrs = await sftp.lstat(path)
    except asyncssh.SFTPNoSuchFile:
        return "missing"
    return KINDS.get(stat.S_IFMT(attrs.permissions or 0), "other")


async def read(sftp: asyncssh.SFTPClient, path: str) -> FileState:
    try:
        attrs = await sftp.lstat(path)  # sftp-server maps ENOTDIR to "no such file" too
    except asyncssh.SFTPNoSuchFile:
        return FileState(path, "missing")
    mode = attrs.permissions or 0
    kind = KINDS.get(stat.S_IFMT(mode), "other")
    if kind != "file":
        return FileState(path, kind, mode=stat.S_IMODE(mode))
    size = attrs.size or 0
    async with await sftp.open(path, "rb") as handle:
        content = await _read_all(handle, size)
    return FileState(path, "file", content, stat.S_IMODE(mode))


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


async def stage(sftp: asyncssh.SFTPClient, path: str, data: bytes, mode: int) -> str:
    """A new temporary file beside ``path`` holding ``data`` with ``mode``; its path."""
    directory = posixpath.dirname(path)
    temporary = temporary_name(path)
    try:
        handle = await create(sftp, temporary, mode)
    except asyncssh.SFTPNoSuchFile:
        await sftp.makedirs(
            directory, attrs=asyncssh.SFTPAttrs(permissions=DIRECTORY_MODE), exist_ok=True
        )
        handle = await create(sftp, temporary, mode)
    try:
        # Set the mode exactly before any byte of content is written: a server may apply
        # its umask to, or ignore, the mode given at open (a key must be 0600).
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
    return temporary


async def create(sftp: asyncssh.SFTPClient, path: str, mode: int) -> asyncssh.SFTPClientFile:
    # 'x': O_EXCL, so an existing file (or symlink) at the name is never reused.
    return await sftp.open(path, "xb", attrs=asyncssh.SFTPAttrs(permissions=mode))


async def upload(sftp: asyncssh.SFTPClient, path: str, data: bytes) -> None:
    """A new 0600 file (``become`` uploads, copied into place by root)."""
    handle = await sftp.open(path, "xb", attrs=asyncssh.SFTPAttrs(permissions=0o600))
    try:
        await handle.write(data)
    finally:
        await handle.close()


async def rename_over(sftp: asyncssh.SFTPClient, staged: str, path: str) -> bool:
    """Rename ``staged`` onto ``path`` atomically, never over a symlink; False when the
    server lacks ``posix-rename@openssh.com`` (the caller falls back to ``mv``)."""
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
        return False
    return True


async def link_exclusive(
    sftp: asyncssh.SFTPClient, staged: str, path: str, data: bytes, mode: int
) -> bool:
    """Hard-link ``staged`` onto ``path`` if nothing holds that name (False if something
    does); without ``hardlink@openssh.com``, an O_EXCL create. ``staged`` is removed."""
    try:
        await sftp.link(staged, path)
    except asyncssh.SFTPOpUnsupported:
        await sftp.remove(staged)
        return await _create_exclusive(sftp, path, data, mode)
    except asyncssh.SFTPError:
        with contextlib.suppress(asyncssh.SFTPError):
            await sftp.remove(staged)
        if await exists(sftp, path):
            return False
        raise
    await sftp.remove(staged)
    return True


async def _create_exclusive(sftp: asyncssh.SFTPClient, path: str, data: bytes, mode: int) -> bool:
    try:
        handle = await create(sftp, path, mode)
    except asyncssh.SFTPError:
        if await exists(sftp, path):
            return False
        raise
    try:
        if mode & 0o077:
            await handle.chmod(mode)
        await handle.write(data)
    finally:
        await handle.close()
    return True


async def exists(sftp: asyncssh.SFTPClient, path: str) -> bool:
    try:
        await sftp.lstat(path)
    except asyncssh.SFTPNoSuchFile:
        return False
    return True


async def list_dir(sftp: asyncssh.SFTPClient, path: str) -> list[str]:
    try:
        names = await sftp.listdir(path)
    except asyncssh.SFTPFailure:
        return []  # not a directory
    return sorted(n for n in names if n not in (".", ".."))


async def make_private_dir(sftp: asyncssh.SFTPClient, path: str) -> None:
    # mkdir fails if anything exists there, so the directory is ours, 0700.
    await sftp.mkdir(path, asyncssh.SFTPAttrs(permissions=0o700))


async def remove_tree(sftp: asyncssh.SFTPClient, folder: str) -> None:
    """The upload folder: normally empty already (each upload is deleted once installed)."""
    for name in await sftp.listdir(folder):
        if name not in (".", ".."):
            with contextlib.suppress(asyncssh.SFTPError):
                await sftp.remove(posixpath.join(folder, name))
    await sftp.rmdir(folder)
