"""Where the roots of a ``trust:`` entry come from, as plain lists of certificates.

The store code (``stores.py``) takes a list of roots per store and asks nothing else, so a
source of roots plugs in here: an internal authority gives its certificate (an authority in
rotation would give its old and new roots), a supplied file every certificate it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cryptography import x509

from provision.crypto.decode import load_bundle
from provision.errors import CryptoError, InputError, Location
from provision.inputs.files import UnreadableFile, read_regular
from provision.inputs.manifest import Manifest
from provision.inputs.manifest import read as record_read
from provision.model.playbook import Playbook, TrustRoot
from provision.sources.authority_store import AuthorityStore
from provision.trust.rotation import trusted_roots

ROOT_FILE_LIMIT = 4 << 20


def authority_roots(store: AuthorityStore) -> list[x509.Certificate] | None:
    """The roots an authority contributes (the old and the new one while it rotates); None
    until this apply has created it."""
    return trusted_roots(store)


def load_root_file(path: Path, where: Location, reads: Manifest | None) -> list[x509.Certificate]:
    """The certificates of a supplied root file (PEM, several allowed, or DER); a key in it,
    or no certificate, is refused with the playbook's line."""
    record_read(reads, path)
    try:
        data = read_regular(path, ROOT_FILE_LIMIT)
        bundle = load_bundle(data, source=str(path))
    except UnreadableFile as exc:
        raise InputError(where, f"{path}: {exc}") from None
    except CryptoError as exc:
        raise InputError(where, str(exc)) from None
    if bundle.key is not None:
        raise InputError(
            where, f"{path} holds a private key; a trust root file holds only certificates"
        )
    if not bundle.certificates:
        raise InputError(where, f"{path} holds no certificate")
    return list(bundle.certificates)


def root_files(
    playbook: Playbook, folder: Path, locate: object, reads: Manifest | None
) -> dict[str, list[x509.Certificate]]:
    """Every supplied root file a playbook names, read once, by the path as written."""
    found: dict[str, list[x509.Certificate]] = {}
    for t, trust in enumerate(playbook.trust):
        for r, root in enumerate(trust.roots):
            if root.file is None or root.file in found:
                continue
            where = locate(("trust", t, "roots", r, "file"))  # type: ignore[operator]
            found[root.file] = load_root_file(folder / root.file, where, reads)
    return found


def resolve(
    root: TrustRoot,
    authorities: Mapping[str, AuthorityStore],
    files: Mapping[str, list[x509.Certificate]],
) -> list[x509.Certificate] | None:
    """The certificates one root entry stands for; None while it waits for this apply."""
    if root.authority is not None:
        store = authorities.get(root.authority)
        return authority_roots(store) if store is not None else None
    assert root.file is not None
    return list(files.get(root.file, []))
