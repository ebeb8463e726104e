"""Read-only probes of a host: the files a playbook cares about, read once per run."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from provision.transport.base import FileState, Transport


@dataclass(frozen=True)
class HostFacts:
    files: Mapping[str, FileState]
    # Of those, the folders (the certificates directory, whose mode is managed): left out of
    # the digest, as applying a saved plan makes the folder (its lock is there) before it
    # reads the host again; the fresh plan's changes, compared to the saved ones, cover them.
    folders: frozenset[str] = frozenset()

    def file(self, path: str) -> FileState:
        return self.files.get(path) or FileState(path, "missing")

    def digest(self) -> str:
        """A fingerprint of every file read: what a saved plan was computed against."""
        h = hashlib.sha256()
        for path in sorted(self.files.keys() - self.folders):
            state = self.files[path]
            h.update(path.encode())
            h.update(b"\0" + state.kind.encode() + b"\0")
            h.update(f"{state.mode}".encode() + b"\0")
            h.update(hashlib.sha256(state.content or b"").digest())
        return h.hexdigest()


def merged(facts: HostFacts, more: HostFacts) -> HostFacts:
    return HostFacts({**facts.files, **more.files}, facts.folders | more.folders)


async def gather(
    transport: Transport, paths: Iterable[str], folders: Iterable[str] = ()
) -> HostFacts:
    """Read ``paths`` (files) and ``folders`` (their kind and mode) all at once."""
    folders = frozenset(folders)
    unique = sorted(set(paths) | folders)
    states = await transport.read_many(unique)
    return HostFacts(dict(zip(unique, states, strict=True)), folders)
