"""``--vault-id LABEL@FILE`` and ``--vault-password-file FILE`` as (label, file) sources.

Apart from the vault reader on purpose: the CLI turns its options into sources before a run
answered from the converged record, which must import nothing heavy (no cryptography).
"""

from __future__ import annotations

from collections.abc import Sequence


def label_and_source(vault_id: str) -> tuple[str, str]:
    """``label@source``, or just ``source`` (labelled ``default``, as Ansible does)."""
    label, sep, source = vault_id.partition("@")
    return (label, source) if sep else ("default", vault_id)


def vault_sources(
    password_files: Sequence[str] = (), vault_ids: Sequence[str] = ()
) -> tuple[tuple[str, str], ...]:
    """The command line's vault options as (label, file) sources, files first."""
    return (
        *(("default", file) for file in password_files),
        *(label_and_source(vault_id) for vault_id in vault_ids),
    )


__all__ = ["label_and_source", "vault_sources"]
