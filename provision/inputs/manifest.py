"""The manifest of a run's loading: every controller path it read or looked for.

Loading passes one ``Manifest`` down to each reader (YAML files, the inventory's group_vars
and host_vars, templates, authority, supplied and password files), and each records the paths
it opened, the paths whose absence it relied on, and the folders it listed. The converged
record digests exactly this (provision/converged/), so a new kind of input is recorded by the
code that reads it, not by a list kept elsewhere that could forget it.
"""

from __future__ import annotations

import os


class Manifest:
    """Paths as absolute names (not resolved: a symlink switched later is a change)."""

    def __init__(self) -> None:
        self._files: set[str] = set()
        self._folders: set[str] = set()
        self._volatile: list[str] = []

    def read(self, path: str | os.PathLike[str]) -> None:
        """A file whose content (or absence) loading used: found or not, it is an input."""
        self._files.add(os.path.abspath(path))

    def listed(self, folder: str | os.PathLike[str]) -> None:
        """A folder whose entries loading listed (a file added there would be read)."""
        self._folders.add(os.path.abspath(folder))

    def volatile(self, why: str) -> None:
        """An input no digest can vouch for (an inventory script's output, a vault password):
        a run that used one is never recorded, so never answered from a record."""
        self._volatile.append(why)

    @property
    def volatile_reasons(self) -> tuple[str, ...]:
        return tuple(self._volatile)

    @property
    def files(self) -> frozenset[str]:
        return frozenset(self._files)

    @property
    def folders(self) -> frozenset[str]:
        return frozenset(self._folders)


def read(reads: Manifest | None, path: str | os.PathLike[str]) -> None:
    """``reads.read(path)`` for readers that may be called without a manifest (tests, tools
    such as ``ca init`` that record nothing)."""
    if reads is not None:
        reads.read(path)


__all__ = ["Manifest", "read"]
