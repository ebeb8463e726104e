"""Reading a file the controller was pointed at (a playbook, an inventory, a limit file, a
password file, a supplied certificate): a regular file, of bounded size, or a clear refusal.

A device or a FIFO named by mistake or by malice (``-i /dev/zero``, ``--limit @FIFO``) would
otherwise be read forever or block the run waiting for a writer.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnreadableFile(Exception):
    """Why a file cannot be an input, in words for a message ("is not a regular file")."""


class IsDirectory(UnreadableFile):
    """A folder where a file was expected (callers name what file they wanted)."""


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them."""
    try:
        # Non-blocking, so that opening a FIFO returns at once (to be refused) instead of
        # waiting for a writer; for a regular file the flag changes nothing.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise IsDirectory("is a directory, not a file")
            if not stat.S_ISREG(info.st_mode):
                raise UnreadableFile("is not a regular file")  # a device, FIFO or socket
            if info.st_size > limit:
                raise UnreadableFile(
                    f"file is {info.st_size} bytes, larger than the {limit} allowed"
                )
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise UnreadableFile("no such file") from None
    except IsADirectoryError:
        raise IsDirectory("is a directory, not a file") from None
    except PermissionError:
        raise UnreadableFile("permission denied") from None
    except OSError as exc:  # a symlink loop, a name too long, an I/O error...
        raise UnreadableFile(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:  # grew while it was read
        raise UnreadableFile(f"file is larger than the {limit} bytes allowed")
    return data
