"""Passwords come from the environment or a file, are held as bytes, and are never printed."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr

from provision.errors import InputError, Location
from provision.inputs.files import UnreadableFile, read_regular
from provision.inputs.manifest import Manifest, read
from provision.model.playbook import Password

MAX_PASSWORD_FILE_BYTES = 64 * 1024


def resolve_password(
    ref: Password, *, base: Path, where: Location, reads: Manifest | None = None
) -> bytes:
    if isinstance(ref, SecretStr):
        return ref.get_secret_value().encode()
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value is None:
            raise InputError(where, f"environment variable {ref.env} is not set")
        return value.encode()
    assert ref.file is not None
    path = Path(ref.file) if Path(ref.file).is_absolute() else base / ref.file
    read(reads, path)
    try:
        data = read_regular(path, MAX_PASSWORD_FILE_BYTES)
    except UnreadableFile as exc:
        raise InputError(where, f"cannot read password file {ref.file}: {exc}") from None
    # A trailing newline is what editors and `echo` add; it is not part of the password.
    return data.rstrip(b"\r\n")


class PasswordReader:
    """Each password source (an environment variable, a file) read once per run, however
    many hosts and outputs name it."""

    def __init__(self, base: Path, reads: Manifest | None = None) -> None:
        self.base = base
        self.reads = reads
        self._read: dict[Password, bytes] = {}

    def read(self, ref: Password, where: Location) -> bytes:
        if ref not in self._read:
            self._read[ref] = resolve_password(ref, base=self.base, where=where, reads=self.reads)
        return self._read[ref]
