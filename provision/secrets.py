"""Passwords come from the environment or a file, are held as bytes, and are never printed."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr

from provision.errors import InputError, Location
from provision.model.playbook import Password


def resolve_password(ref: Password, *, base: Path, where: Location) -> bytes:
    if isinstance(ref, SecretStr):
        return ref.get_secret_value().encode()
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value is None:
            raise InputError(where, f"environment variable {ref.env} is not set")
        return value.encode()
    assert ref.file is not None
    path = Path(ref.file) if Path(ref.file).is_absolute() else base / ref.file
    try:
        # A trailing newline is what editors and `echo` add; it is not part of the password.
        return path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise InputError(where, f"cannot read password file {ref.file}: {exc.strerror}") from None
