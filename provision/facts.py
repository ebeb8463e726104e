"""Read-only probes of a host: the files a playbook cares about, read once per run."""

from __future__ import annotations

import asyncio
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
        h = hashlib.sha256()
        for path in sorted(self.files):
            state = self.files[path]
            h.update(path.encode())
            h.update(b"\0" + state.kind.encode() + b"\0")
            h.update(f"{state.mode}".encode() + b"\0")
            h.update(hashlib.sha256(state.content or b"").digest())
        return h.hexdigest()


def merged(facts: HostFacts, more: HostFacts) -> HostFacts:
    return HostFacts({**facts.files, **more.files})


async def gather(transport: Transport, paths: Iterable[str]) -> HostFacts:
    unique = sorted(set(paths))
    states = await asyncio.gather(*(transport.read(path) for path in unique))
    return HostFacts(dict(zip(unique, states, strict=True)))
