"""Read-only probes of a host: the files a playbook cares about, read once per run."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from provision.transport.base import FileState, Transport


@dataclass(frozen=True)
class HostFacts:
    files: Mapping[str, FileState]

    def file(self, path: str) -> FileState:
        return self.files.get(path) or FileState(path, "missing")

    def digest(self) -> str:
        """A fingerprint of everything read: what a saved plan was computed against."""
        return files_digest(self.files)


def files_digest(files: Mapping[str, FileState]) -> str:
    """Path, kind, mode and content of each file, in path order."""
    h = hashlib.sha256()
    for path in sorted(files):
        state = files[path]
        # One update per file (the same bytes as one per field): this runs for every file of
        # every host, on every run.
        h.update(f"{path}\0{state.kind}\0{state.mode}\0".encode()
                 + hashlib.sha256(state.content or b"").digest())
    return h.hexdigest()


def merged(facts: HostFacts, more: HostFacts) -> HostFacts:
    return HostFacts({**facts.files, **more.files})


async def gather(transport: Transport, paths: Iterable[str]) -> HostFacts:
    import asyncio  # here, not above: the converged record's digests need no event loop

    unique = sorted(set(paths))
    states = await asyncio.gather(*(transport.read(path) for path in unique))
    return HostFacts(dict(zip(unique, states, strict=True)))
