"""The converged record: answer a run that would change nothing without evaluating it again.

A host's plan is a pure function of the run's inputs (the playbook, the inventory and its
variables files, the templates, the controller's authority and supplied files, provision
itself), of the files read from the host, and of the clock. When a ``plan`` or ``apply`` finds
every selected host converged, it records a digest of those inputs (by content), the
signature of each host file (by ``lstat``: type and mode, device and inode, size, modification
and change times, as git's index keeps them), and the moment the clock alone would change a
decision (the first renewal window to open). The next run of the same command (same folder,
playbook, inventory and ``--limit``) checks all of them before anything else, a few per cent
of the cost of evaluating the playbook for every host, rendering its site and parsing its
certificates. When everything matches, the plan *is* the recorded empty plan, and the run
prints it as a full run would. When anything differs (a byte of an input, any write, rename or
``chmod`` of a host file, which the kernel stamps with a new change time no tool can set
back), the run is evaluated in full, as if there were no record. A host file whose change time
falls inside the run (or just before it) is never recorded: it may differ from what the plan
read.

Only runs that can be checked this way are recorded: every host local (an SSH host's files
cost a network round trip however they are compared), no password read by the run (a digest
of a password would be worth guessing against), no site with ``verify:`` (an apply proves over
the network what is served, every time), no ``--limit @file``, and no input changed after the
run started (the record must hold what the run read). An ``apply`` that is not answered from
a record forgets every record before it writes anything (so a run killed half-way leaves none
that could hide what it left), and a ``plan`` record never answers an ``apply``. ``--full``
skips the record; deleting the records (``PROVISION_CACHE_DIR``, by default
``~/.cache/provision``) is always safe.

This module imports nothing heavy: on a hit, cryptography, jinja2 and pydantic are never loaded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision.errors import ProvisionError
from provision.plan.model import HostPlan, Unchanged
from provision.report.outcome import HostReport, Report
from provision.report.progress import Progress

if TYPE_CHECKING:
    from provision.inputs.load import Loaded
    from provision.inputs.targets import Target
    from provision.plan.model import Plan

FORMAT = "provision-converged/1"
# Kept per (folder, playbook, inventory, limit): the oldest records beyond this are removed.
MAX_RECORDS = 64
# An input whose inode changed less than this before the run started may have been changed
# during it: file times lag the real clock by up to a scheduler tick. (The change time, not the
# modification time: no copy or archive tool can set it back.)
EDIT_MARGIN_NS = 50_000_000
# Some filesystems keep times in whole seconds (ext4 with small inodes, FAT, some FUSE): there a
# change later in the second the run started in carries a time before it.
COARSE_MARGIN_NS = 2_000_000_000


class Unrecordable(Exception):
    """This run's answer cannot be proven again from digests alone."""


@dataclass(frozen=True)
class Command:
    """What identifies a run: the same command in the same folder finds its record."""

    kind: str  # "plan" (plan, apply --check) or "apply": a plan's record never answers an apply
    playbook: str
    inventory: str
    limit: str | None

    def key(self) -> str:
        # Where the paths lead now (a `current` symlink switched to another release is another
        # run), and what relative and ~ paths on the hosts resolve against.
        identity = json.dumps(
            [
                self.kind,
                os.getcwd(),
                os.path.expanduser("~"),
                self.playbook,
                os.path.realpath(self.playbook),
                self.inventory,
                os.path.realpath(self.inventory),
                self.limit,
            ]
        )
        return hashlib.sha256(identity.encode()).hexdigest()[:32]


def cache_dir() -> Path:
    configured = os.environ.get("PROVISION_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "provision"


def record_path(command: Command) -> Path:
    return cache_dir() / "converged" / f"{command.key()}.json"


def forget_all() -> None:
    """Before a run writes to hosts: no record may outlive it (a run killed half-way could have
    left staged files that only a full run cleans up), whatever command made the record."""
    folder = cache_dir() / "converged"
    try:
        for path in folder.glob("*.json"):
            path.unlink(missing_ok=True)
    except OSError:
        pass


# --- digests ------------------------------------------------------------------------------


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


def _unreadable(error: OSError) -> None:
    raise error  # a folder that cannot be listed hides what a loader could still open


def _tree_files(root: str, edited_before_ns: int | None = None) -> Iterator[str]:
    for folder, subfolders, files in os.walk(root, onerror=_unreadable, followlinks=True):
        _settled(folder, edited_before_ns)
        subfolders.sort()
        for name in sorted(files):
            yield os.path.join(folder, name)


def _tree_digest(root: str, edited_before_ns: int | None) -> str:
    """Every file under ``root`` by relative path and content: a template added beside the
    others (which could shadow one) changes it as surely as an edited one."""
    if not os.path.isdir(root):
        return "missing"
    h = hashlib.sha256()
    for path in _tree_files(root, edited_before_ns):
        h.update(os.path.relpath(path, root).encode() + b"\0")
        h.update(_file_digest(path, edited_before_ns).encode() + b"\0")
    return h.hexdigest()


def inputs_digest(entries: list[str], edited_before_ns: int | None = None) -> str:
    """Each entry is ``file:PATH`` or ``tree:PATH`` (every file below a folder)."""
    h = hashlib.sha256()
    for entry in entries:
        kind, path = entry.split(":", 1)
        digest = (
            _tree_digest(path, edited_before_ns)
            if kind == "tree"
            else _file_digest(path, edited_before_ns)
        )
        h.update(f"{entry}\0{digest}\0".encode())
    return h.hexdigest()


# Libraries whose upgrade could change what a plan decides or prints.
LIBRARIES = ("cryptography", "jinja2", "markupsafe", "pydantic", "pydantic_core", "yaml")


def code_digest(edited_before_ns: int | None = None) -> str:
    """provision's own source by name, size and modification time, the same of each library's
    entry module, and the interpreter's version: a new version (or an edited checkout) must not
    reuse what the old code decided. Nothing is imported to find them."""
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


# --- recording, after a full run ----------------------------------------------------------


def record(
    loaded: Loaded, plan: Plan, report: Report, command: Command, now: dt.datetime, started_ns: int
) -> bool:
    """Record the run if it found every host converged and can be proven so again; returns
    whether it did. Never fails the run: a record that cannot be written is not written."""
    try:
        document = _record_document(loaded, plan, report, command, now, started_ns)
    except (Unrecordable, OSError, ValueError):
        return False  # (an input that cannot be read again cannot be checked again)
    path = record_path(command)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(path, json.dumps(document, separators=(",", ":")).encode())
        _prune(path.parent)
    except (OSError, ProvisionError):
        return False
    return True


def _record_document(
    loaded: Loaded, plan: Plan, report: Report, command: Command, now: dt.datetime, started_ns: int
) -> dict[str, Any]:
    _check_recordable(loaded, plan, report, command)
    entries = controller_inputs(loaded)
    edited_before = started_ns - EDIT_MARGIN_NS
    targets = {target.host.name: target for target in loaded.targets}
    return {
        "format": FORMAT,
        "code": code_digest(edited_before),
        "recorded": _iso(now),
        "until": _iso(_stable_until(loaded, plan)),
        # One digest for all of them: no digest of a single key file is kept.
        "inputs": {"entries": entries, "digest": inputs_digest(entries, edited_before)},
        "batches": _batch_sizes(loaded),
        "hosts": [
            _host_entry(targets[host.host], host, command, edited_before) for host in plan.hosts
        ],
    }


def _check_recordable(loaded: Loaded, plan: Plan, report: Report, command: Command) -> None:
    from provision.model.playbook import ProvidedSource
    from provision.transport.local import LocalTransport

    if not loaded.targets:
        raise Unrecordable("no host")
    if command.limit is not None and "@" in command.limit:
        raise Unrecordable("a --limit @file is read at run time")
    if any(h.status != "ok" for h in report.hosts) or any(h.error or h.changes for h in plan.hosts):
        raise Unrecordable("not converged")
    if loaded.passwords or any(store.pending for store in loaded.authorities.values()):
        raise Unrecordable("passwords are never digested; a pending authority is created")
    for target in loaded.targets:
        if not isinstance(target.transport, LocalTransport):
            raise Unrecordable(f"{target.host.name} is not local")
        if any(site.verify for site in target.playbook.sites):
            raise Unrecordable("apply verifies over the network every time")
        if any(
            isinstance(c.source, ProvidedSource) and c.source.password is not None
            for c in target.playbook.certificates
        ):
            raise Unrecordable("passwords are never digested")


def controller_inputs(loaded: Loaded) -> list[str]:
    """Every file and folder on the controller that the run's plan was computed from."""
    from provision.model.playbook import ProvidedSource

    inventory = Path(loaded.inventory.file).absolute()
    entries = [
        f"file:{Path(loaded.playbook.file).absolute()}",
        f"file:{inventory}",
        f"tree:{inventory.parent / 'group_vars'}",
        f"tree:{inventory.parent / 'host_vars'}",
    ]
    entries += [f"tree:{folder.absolute()}" for folder in loaded.renderer.candidates]
    # Every template as named, too: a name is tried as a path from the current folder first,
    # so a file created there later would be used instead (it is recorded as missing).
    entries += [f"file:{Path(name).absolute()}" for name in loaded.renderer.names_loaded()]
    for store in loaded.authorities.values():
        from provision.sources.authority_store import CERTIFICATE_FILE, KEY_FILE, SERIAL_FILE

        entries += [
            f"file:{(store.folder / name).absolute()}"
            for name in (KEY_FILE, CERTIFICATE_FILE, SERIAL_FILE)
        ]
    for target in loaded.targets:
        for certificate in target.playbook.certificates:
            source = certificate.source
            if isinstance(source, ProvidedSource):
                for name in (source.certificate, source.key, source.chain, source.root):
                    if name is not None:
                        entries.append(f"file:{(loaded.folder / name).absolute()}")
    return sorted(set(entries))


def _stable_until(loaded: Loaded, plan: Plan) -> dt.datetime | None:
    """The first moment the clock alone could change the plan: a host's renewal window, or a
    controller certificate (authority, supplied chain) expiring."""
    moments = [h.stable_until for h in plan.hosts if h.stable_until is not None]
    for store in loaded.authorities.values():
        if store.material is not None:
            moments.append(store.material.leaf.not_valid_after_utc)
    for supplied in loaded.supplied.values():
        if supplied is not None:
            moments += [c.not_valid_after_utc for c in (supplied.leaf, *supplied.chain)]
            if supplied.root is not None:
                moments.append(supplied.root.not_valid_after_utc)
    return min(moments, default=None)


def _batch_sizes(loaded: Loaded) -> list[int]:
    from provision.apply.batches import batches

    serial = loaded.targets[0].playbook.serial
    return [len(batch) for batch in batches(loaded.targets, serial)]


def _host_entry(
    target: Target, host: HostPlan, command: Command, edited_before: int
) -> dict[str, Any]:
    from provision.apply.journal import journal_path
    from provision.layout import LOCK_FILE

    missing = set(host.missing_paths)
    return {
        "name": host.host,
        "files": [
            [path, _host_stamp(path, edited_before, path in missing)] for path in host.read_paths
        ],
        # Present only while another run works on the host, or after one was killed: either
        # way the full run (which waits for the lock, or finishes the journal) must answer.
        "absent": [
            journal_path(target.certificates_dir, target.paths),
            os.path.join(target.certificates_dir, LOCK_FILE),
        ],
        # A full apply takes a lock there even when nothing changes: a folder that can no
        # longer be written fails that host, so the record must not say "ok".
        "writable": [target.certificates_dir] if command.kind == "apply" else [],
        "unchanged": [[u.resource, u.reason] for u in host.unchanged],
    }


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
    return (
        f"{info.st_mode:o} {info.st_dev} {info.st_ino} {info.st_size} "
        f"{info.st_mtime_ns} {info.st_ctime_ns}"
    )


def _host_stamp(path: str, edited_before: int, was_missing: bool) -> str:
    """The stamp of a host file the run read, refused when the file changed during the run
    (what the plan read may not be what has this stamp), or came or went since it was read."""
    info = _lstat(path)
    if (info is None) != was_missing or (
        info is not None and changed_during_run(info.st_ctime_ns, edited_before)
    ):
        raise Unrecordable(f"{path} changed while the run read it")
    return _stamp_of(info)


def _write(path: Path, data: bytes) -> None:
    """Atomic, not durable: a record lost in a crash only costs one full run."""
    from provision import fsutil

    fsutil.commit(fsutil.stage(str(path), data, 0o600, durable=False), str(path), durable=False)


def _prune(folder: Path) -> None:
    records = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    for stale in records[:-MAX_RECORDS]:
        stale.unlink(missing_ok=True)


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# --- the check, before a run -------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    report: Report
    batches: list[int]


def lookup(command: Command, now: dt.datetime | None = None) -> Hit | None:
    """The recorded empty plan, if every digest still matches; None means "run in full"."""
    try:
        document = json.loads(record_path(command).read_bytes())
        return _check(document, command, now or dt.datetime.now(dt.UTC))
    except Exception:  # whatever is wrong with a record (or a file), the full run answers
        return None


def _check(document: dict[str, Any], command: Command, now: dt.datetime) -> Hit | None:
    if document.get("format") != FORMAT or not document["hosts"]:
        return None
    recorded = dt.datetime.fromisoformat(document["recorded"])
    until = document["until"]
    if now < recorded or (until is not None and now >= dt.datetime.fromisoformat(until)):
        return None  # the clock moved past a decision (or backwards): decide again
    if document["code"] != code_digest():
        return None
    inputs = document["inputs"]
    for named in (command.playbook, command.inventory):  # a record of some other run
        if f"file:{Path(named).absolute()}" not in inputs["entries"]:
            return None
    if inputs_digest(inputs["entries"]) != inputs["digest"]:
        return None
    reports = []
    for host in document["hosts"]:
        report = _check_host(host)
        if report is None:
            return None
        reports.append(report)
    return Hit(Report(reports), list(document["batches"]))


def _check_host(host: dict[str, Any]) -> HostReport | None:
    started = time.perf_counter()
    if any(os.path.lexists(path) for path in host["absent"]):
        return None
    if not all(os.access(folder, os.W_OK) for folder in host["writable"]):
        return None
    if any(stamp(path) != recorded for path, recorded in host["files"]):
        return None
    unchanged = tuple(Unchanged(resource, reason) for resource, reason in host["unchanged"])
    plan = HostPlan(
        host["name"], unchanged=unchanged, read_paths=tuple(path for path, _ in host["files"])
    )
    return HostReport(host["name"], "ok", plan, seconds=time.perf_counter() - started)


def replay_progress(hit: Hit, progress: Progress) -> None:
    """Tell the progress display what a full run would have told it."""
    hosts = iter(hit.report.hosts)
    for index, size in enumerate(hit.batches, start=1):
        progress.batch(index, len(hit.batches), size)
        for host in itertools.islice(hosts, size):
            progress.host_done(host.host, host.status)
    progress.close()
