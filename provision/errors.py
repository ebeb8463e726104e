"""One error root for everything `provision` refuses to do.

Errors carry their context (file, line, key, host) as data; only the CLI's one error exit
(``cli.common.fail``) turns them into text for a person. Messages never include secret
values: callers pass the offending value only for fields that are not secrets.
"""

from __future__ import annotations

from dataclasses import dataclass


class ProvisionError(Exception):
    """Root of every error `provision` reports to a user (exit status 1, no traceback)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Location:
    """Where in an input file a problem sits."""

    file: str
    line: int | None = None
    key: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.key}" if self.key else where


class InputError(ProvisionError):
    """A playbook, inventory or supplied file is malformed or invalid."""

    def __init__(self, location: Location, problem: str) -> None:
        super().__init__(f"{location}: {problem}")
        self.location = location
        self.problem = problem


class TransportError(ProvisionError):
    """Reading, writing or running a command on a host failed."""


class CryptoError(ProvisionError):
    """A certificate, key or bundle could not be read or does not fit together."""


class PatternError(ProvisionError):
    """A host pattern or --limit matched nothing or is malformed."""
