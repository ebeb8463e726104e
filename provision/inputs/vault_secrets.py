"""Where vault passwords come from: ``--vault-password-file FILE`` (run when executable, as
Ansible does), ``--vault-id LABEL@FILE``, or ``ANSIBLE_VAULT_PASSWORD_FILE``.

Passwords are read only when a vaulted value is met, and reading one marks the run volatile:
it is never recorded, so never answered from a record (provision/converged/).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import InputError, Location
from provision.inputs.dynamic_inventory import run_bounded
from provision.inputs.files import UnreadableFile, read_regular
from provision.inputs.manifest import Manifest, read
from provision.inputs.vault import Vaulted, VaultError, VaultSecret, decrypt

ENV = "ANSIBLE_VAULT_PASSWORD_FILE"
MAX_PASSWORD_BYTES = 64 * 1024


class VaultedText(str):
    """A decrypted value: a string everywhere it is used, never shown by ``repr``, which is
    what error messages and reports quote."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<vaulted>'"


@dataclass
class VaultKeys:
    """The run's vault password sources, each read (or run) once, on first need."""

    sources: Sequence[tuple[str, str]] = ()  # (label, file)
    reads: Manifest | None = None
    _secrets: list[VaultSecret] | None = field(default=None, repr=False)

    @classmethod
    def of(
        cls, sources: Sequence[tuple[str, str]] = (), reads: Manifest | None = None
    ) -> VaultKeys:
        """The sources given, or else the one ``ANSIBLE_VAULT_PASSWORD_FILE`` names."""
        if not sources and os.environ.get(ENV):
            sources = [("default", os.environ[ENV])]
        return cls(sources, reads)

    def secrets(self) -> list[VaultSecret]:
        if self._secrets is None:
            self._secrets = [_read_secret(label, file, self.reads) for label, file in self.sources]
        return self._secrets

    def open(self, vaulttext: bytes | str, where: Location) -> bytes:
        try:
            return decrypt(vaulttext, self.secrets())
        except VaultError as exc:
            hint = "" if self.sources else f" (give --vault-password-file, --vault-id or {ENV})"
            raise InputError(where, f"{exc}{hint}") from None

    def reveal(self, value: Any) -> Any:
        """``value`` with every ``!vault`` scalar in it decrypted (as a VaultedText)."""
        if isinstance(value, Vaulted):
            plain = self.open(value.text, value.where)
            try:
                return VaultedText(plain.decode("utf-8"))
            except UnicodeDecodeError:
                raise InputError(value.where, "the vaulted value is not UTF-8 text") from None
        if isinstance(value, dict):
            return {k: self.reveal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.reveal(v) for v in value]
        return value


def _read_secret(label: str, file: str, reads: Manifest | None) -> VaultSecret:
    path = Path(file).expanduser()
    where = Location(file)
    if reads is not None:
        reads.volatile(f"read the vault password {file}")
    read(reads, path)
    if path.is_file() and os.access(path, os.X_OK):
        what = "the vault password script"
        out, _, code = run_bounded([str(path.absolute())], file, what)
        if code != 0:
            raise InputError(where, f"{what} failed with exit status {code}")
        password = out.strip(b"\r\n")
    else:
        try:
            password = read_regular(path, MAX_PASSWORD_BYTES).strip()
        except UnreadableFile as exc:
            raise InputError(where, f"cannot read the vault password file: {exc}") from None
    if not password:
        raise InputError(where, "the vault password is empty")
    return VaultSecret(label, password)


__all__ = ["ENV", "VaultKeys", "VaultedText"]
