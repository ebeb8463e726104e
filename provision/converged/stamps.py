"""Digests and stamps: what the converged record compares, and the rule for files that
changed while the run read them.

Controller inputs are compared by content and mode (the run's manifest names them: every path
loading read or looked for, and every folder it listed); host files by their ``lstat`` stamp,
as git's index compares a work tree; provision's own code and libraries by name, size and
modification time. Imports nothing heavy: a hit must not load cryptography, jinja2 or pydantic.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections.abc import Iterable, Iterator

# An input whose inode changed less than this before the run started may have been changed
# during it: file times lag the real clock by up to a scheduler tick. (The change time, not the
# modification time: no copy or archive tool can set it back.)
EDIT_MARGIN_NS = 50_000_000
# Some filesystems keep times in whole seconds (ext4 with small inodes, FAT, some FUSE): there a
# change later in the second the run started in carries a time before it.
COARSE_MARGIN_NS = 2_000_000_000
# This many absent paths in one folder are proven absent by the folder's listing (one read)
# rather than one by one (host_vars/ beside a thousand hosts, most without a file).
LISTING_FROM = 4


class Unrecordable(Exception):
    """This run's answer cannot be proven again from digests alone."""


def changed_during_run(ctime_ns: int, edited_before_ns: int) -> bool:
    """Whether a change time may fall inside the run: at or after ``edited_before_ns``, or in
    whole seconds (a coarse filesystem) and less than two seconds before it."""
    if ctime_ns % 1_000_000_000 == 0:
        return ctime_ns >= edited_before_ns - COARSE_MARGIN_NS
    return ctime_ns >= edited_before_ns


def _settled(path: str, edited_before_ns: int | None) -> None:
    """With ``edited_before_ns``: refuse a file or folder whose inode changed after that moment
    (written, renamed, an entry added or removed): the run may have read it as it was before."""
    if edited_before_ns is not None and changed_during_run(
        os.stat(path).st_ctime_ns, edited_before_ns
    ):
        raise Unrecordable(f"{path} changed while the run read it")


# --- controller inputs ------------------------------------------------------------------------


def input_entries(files: Iterable[str], folders: Iterable[str]) -> list[str]:
    """The record's entries for a run's manifest: ``file:PATH`` (content and mode, or absence)
    and ``list:FOLDER`` (the names in it).

    A path that is absent is proven absent by its first absent component (no file can appear
    below a folder that is not there: a thousand host_vars files in a missing host_vars/ are
    one entry), or, when many are absent from one folder, by that folder's listing."""
    entries = {f"list:{folder}" for folder in folders}
    absent: dict[str, set[str]] = {}
    there: dict[str, bool] = {}  # each folder asked once, not once per host below it

    def exists(path: str) -> bool:
        if path not in there:
            there[path] = os.path.lexists(path)
        return there[path]

    for path in files:
        if there.get(os.path.dirname(path)) is not False and os.path.lexists(path):
            entries.add(f"file:{path}")
            continue
        first, parent = path, os.path.dirname(path)
        while parent != first and not exists(parent):
            first, parent = parent, os.path.dirname(parent)
        absent.setdefault(parent, set()).add(first)
    for parent, names in absent.items():
        if len(names) >= LISTING_FROM and os.path.isdir(parent):
            entries.add(f"list:{parent}")
        else:
            entries.update(f"file:{name}" for name in names)
    return sorted(entries)


def _file_digest(path: str, edited_before_ns: int | None) -> str:
    """Mode and content; 'missing' or 'not a file' otherwise (a file deleted during the run
    shows in its folder's change time)."""
    try:
        _settled(os.path.dirname(path) or ".", edited_before_ns)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    try:
        info = os.fstat(fd)
        if edited_before_ns is not None and changed_during_run(info.st_ctime_ns, edited_before_ns):
            raise Unrecordable(f"{path} changed while the run read it")
        if not stat.S_ISREG(info.st_mode):
            return "not a file"
        h = hashlib.sha256(f"{stat.S_IMODE(info.st_mode):o}\0".encode())
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def _listing_digest(folder: str, edited_before_ns: int | None) -> str:
    """The names in a folder ('missing' if it is not one): an entry added or removed changes
    it (and the folder's change time, which recording checks)."""
    try:
        _settled(folder, edited_before_ns)
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    return hashlib.sha256("\0".join(names).encode(errors="surrogateescape")).hexdigest()


def inputs_digest(entries: list[str], edited_before_ns: int | None = None) -> str:
    """One digest of every entry (``file:PATH`` or ``list:FOLDER``); no entry's own digest is
    kept, so no digest of a single key file is ever written down."""
    h = hashlib.sha256()
    for entry in entries:
        kind, path = entry.split(":", 1)
        if kind == "file":
            digest = _file_digest(path, edited_before_ns)
        elif kind == "list":
            digest = _listing_digest(path, edited_before_ns)
        else:
            raise ValueError(f"unknown entry {entry!r}")
        h.update(f"{entry}\0{digest}\0".encode(errors="surrogateescape"))
    return h.hexdigest()


# --- provision itself -------------------------------------------------------------------------

# Libraries whose upgrade could change what a plan decides or prints.
LIBRARIES = ("cryptography", "jinja2", "markupsafe", "pydantic", "pydantic_core", "yaml")


def _unreadable(error: OSError) -> None:
    raise error  # a folder that cannot be listed hides what a loader could still open


def _tree_files(root: str) -> Iterator[str]:
    for folder, subfolders, files in os.walk(root, onerror=_unreadable, followlinks=True):
        subfolders.sort()
        for name in sorted(files):
            yield os.path.join(folder, name)


def code_digest(edited_before_ns: int | None = None) -> str:
    """provision's own source by name, size and modification time, the same of each library's
    entry module, and the interpreter's version: a new version (or an edited checkout) must not
    reuse what the old code decided. Nothing is imported to find them. (Its packaged templates
    are inputs: the manifest names each one a run read.)"""
    from importlib.util import find_spec

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = [path for path in _tree_files(package) if path.endswith(".py")]
    for name in LIBRARIES:
        spec = find_spec(name)
        files.append(spec.origin if spec is not None and spec.origin else f"no {name}")
    h = hashlib.sha256(sys.version.encode())
    for path in files:
        try:
            info = os.stat(path)
        except OSError:
            h.update(f"{path}\0missing\0".encode())
            continue
        if edited_before_ns is not None and changed_during_run(info.st_ctime_ns, edited_before_ns):
            raise Unrecordable(f"{path} was installed while the run went on")
        h.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
    return h.hexdigest()


# --- host files -------------------------------------------------------------------------------


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def stamp(path: str) -> str:
    """What ``lstat`` says of a host file, as one string ("missing" if it is not there): type
    and mode, device and inode, size, modification and change times. Any write, rename or
    chmod gives a file a new change time; only a clock set back could repeat one."""
    return _stamp_of(_lstat(path))


def _stamp_of(info: os.stat_result | None) -> str:
    if info is None:
        return "missing"
    if stat.S_ISDIR(info.st_mode):
        # A folder by its mode and identity: what a plan reads of it. Not its times, which
        # every apply moves (the lock comes and goes), even one with nothing to do.
        return f"{info.st_mode:o} {info.st_dev} {info.st_ino}"
    return (
        f"{info.st_mode:o} {info.st_dev} {info.st_ino} {info.st_size} "
        f"{info.st_mtime_ns} {info.st_ctime_ns}"
    )


def host_stamp(path: str, edited_before: int, was_missing: bool) -> str:
    """The stamp of a host file the run read, refused when the file changed during the run
    (what the plan read may not be what has this stamp), or came or went since it was read."""
    info = _lstat(path)
    if (info is None) != was_missing or (
        info is not None
        and not stat.S_ISDIR(info.st_mode)
        and changed_during_run(info.st_ctime_ns, edited_before)
    ):
        raise Unrecordable(f"{path} changed while the run read it")
    return _stamp_of(info)
