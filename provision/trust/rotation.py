"""Rotating an internal authority to a new key and root without an outage (docs/rotation.md).

A rotation lives on the controller beside the authority: the new CA in ``DIR/next/`` (its own
key, root, serial counter, revocations), optionally ``DIR/next/cross-signed.crt`` (the new
root's key certified by the old CA), and ``DIR/rotation.json``, the record of the phase. The
old CA stays in ``DIR`` until the rotation is finished. Each phase is an ordinary plan and
apply of the playbook:

1. trust: trust stores hold the old and the new root; leaves still come from the old CA;
2. issue: every leaf of the authority is reissued by the new CA (stores unchanged);
3. retire: stores hold the new root alone (refused while a host serves an old leaf).

Finishing copies the old CA into ``DIR/retired/STAMP/`` and makes the new one the authority.
The phase changes only through this module; the planner asks it two things, through the
loaded store: which roots to trust (``trusted_roots``) and which CA issues (the store
``arrange`` returns).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provision import fsutil
from provision.crypto import build, encode, keys
from provision.crypto.build import BACKDATE, SubjectFields, signature_hash
from provision.errors import InputError, Location, ProvisionError
from provision.inputs.manifest import Manifest, read
from provision.model.playbook import EcdsaKey, RsaKey
from provision.sources.authority_store import (
    CERTIFICATE_FILE,
    KEY_FILE,
    SERIAL_FILE,
    AuthorityStore,
    open_authority,
)

RECORD_FILE = "rotation.json"
NEXT_DIR = "next"
RETIRED_DIR = "retired"
CROSS_FILE = "cross-signed.crt"
# What a CA folder holds besides key and certificate (revocation.py's files).
_STATE_FILES = ("revoked", "crlnumber")
_RECORD_LIMIT = 64 * 1024

PHASES = {1: "trust", 2: "issue", 3: "retire"}
PHASE_WORDS = {
    1: "trust stores hold the old and new roots; leaves still from the old CA",
    2: "leaves reissued by the new CA; trust stores hold both roots",
    3: "the old root is retired from trust stores; leaves from the new CA",
}


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    phase: int = Field(ge=1, le=3)
    at: dt.datetime


class Record(BaseModel):
    """``rotation.json``: where a rotation stands. Read as untrusted input."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Literal[1] = 1
    authority: str
    phase: int = Field(ge=1, le=3)
    old_root_sha256: str = Field(pattern=r"^[0-9A-F]{64}$")
    new_root_sha256: str = Field(pattern=r"^[0-9A-F]{64}$")
    cross_signed: bool = False
    history: tuple[Step, ...] = ()
    # Set by --finish before it replaces the authority's files, so an interrupted finish is
    # recognised (and finished by running it again) rather than read as a damaged rotation.
    finishing: str | None = None


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex().upper()


def record_path(store: AuthorityStore) -> Path:
    return store.folder / RECORD_FILE


def read_record(store: AuthorityStore, reads: Manifest | None = None) -> Record | None:
    """The rotation record beside the authority; None when it is not rotating. A record that
    is not a regular file, too large, not JSON or not a record is an error naming it."""
    path = record_path(store)
    read(reads, path)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProvisionError(f"{path}: cannot read the rotation record: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ProvisionError(f"{path}: the rotation record is not a regular file")
    if info.st_size > _RECORD_LIMIT:
        raise ProvisionError(f"{path}: the rotation record is larger than {_RECORD_LIMIT} bytes")
    try:
        data = json.loads(path.read_bytes())
        record = Record.model_validate(data)
    except (OSError, ValueError) as exc:
        words = _validation_words(exc) if isinstance(exc, ValidationError) else "not JSON"
        raise ProvisionError(
            f"{path}: not a rotation record ({words}); restore it from a backup, or see "
            "docs/rotation.md"
        ) from None
    if record.authority != store.spec.name:
        raise ProvisionError(
            f"{path}: the rotation record is for authority {record.authority!r}, "
            f"not {store.spec.name!r}"
        )
    return record


def _validation_words(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    return f"{where}: {first['msg']}"


def write_record(store: AuthorityStore, record: Record) -> None:
    text = json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    fsutil.write_atomic(str(record_path(store)), text.encode(), 0o644)


def next_folder(store: AuthorityStore) -> Path:
    return store.folder / NEXT_DIR


def _open_next(store: AuthorityStore, where: Location, reads: Manifest | None) -> AuthorityStore:
    spec = store.spec.model_copy(update={"dir": str(next_folder(store)), "create": False})
    return open_authority(spec, store.base or store.folder, where, reads)


def arrange(
    store: AuthorityStore, where: Location, reads: Manifest | None = None
) -> AuthorityStore:
    """The store that issues for the authority, with the roots trust stores must hold:
    ``store`` itself when not rotating or in phase 1, the new CA from phase 2 on (the old one
    then its ``previous``)."""
    record = read_record(store, reads)
    if record is None:
        return store
    path = record_path(store)
    if record.finishing is not None:
        raise InputError(
            where,
            f"authority {store.spec.name!r}: {path} records an interrupted finish of its "
            f"rotation; run `provision ca rotate PLAYBOOK {store.spec.name} --finish` again",
        )
    if store.material is None:
        raise InputError(where, f"{path}: a rotation of an authority that does not exist")
    new = _open_next(store, where, reads)
    assert new.material is not None
    old_root, new_root = store.material.leaf, new.material.leaf
    for label, want, have in (
        ("old", record.old_root_sha256, old_root),
        ("new", record.new_root_sha256, new_root),
    ):
        if fingerprint(have) != want:
            raise InputError(
                where,
                f"{path}: names the {label} root sha256:{want[:16]}, but the authority's "
                f"{label} certificate is sha256:{fingerprint(have)[:16]}; the rotation record "
                "does not belong to these files",
            )
    if record.phase == 1:
        store.phase, store.roots = 1, (old_root, new_root)
        return store
    new.phase = record.phase
    new.roots = (old_root, new_root) if record.phase == 2 else (new_root,)
    new.previous = store
    store.crl_stem = "crl-previous"  # the new CA's CRL takes the configured names
    return new


def trusted_roots(store: AuthorityStore) -> list[x509.Certificate] | None:
    """The roots of the authority that trust stores hold: its own, or during a rotation the
    old and new roots (phases 1 and 2) and the new alone (phase 3). None until created."""
    if store.material is None:
        return None
    return list(store.roots) if store.roots else [store.material.leaf]


def all_stores(stores: Sequence[AuthorityStore]) -> list[AuthorityStore]:
    """Every CA that signs something: each authority, and the old CA of a rotation (its
    serials, superseded leaves and CRL are its own)."""
    return [s for store in stores for s in (store, store.previous) if s is not None]


def start(store: AuthorityStore, now: dt.datetime, cross_sign: bool = False) -> Record:
    """A new key and root for the authority beside the old ones, and the rotation in phase 1."""
    if store.material is None:
        raise ProvisionError(f"authority {store.spec.name!r} does not exist yet: nothing to rotate")
    existing = read_record(store)
    if existing is not None:
        raise ProvisionError(
            f"authority {store.spec.name!r} is rotating already (phase {existing.phase}, "
            f"{PHASES[existing.phase]}); advance it with --phase "
            f"{min(existing.phase + 1, 3)}, or finish it with --finish"
        )
    if cross_sign and now >= store.material.leaf.not_valid_after_utc:
        raise ProvisionError(
            f"authority {store.spec.name!r} has expired: it can no longer cross-sign; start "
            "the rotation without --cross-sign"
        )
    folder = next_folder(store)
    if folder.exists():
        raise ProvisionError(
            f"{folder} exists, but no rotation is recorded (an interrupted start?); move it "
            "away and start again"
        )
    spec = store.spec
    size = spec.key.size if isinstance(spec.key, RsaKey) else None
    curve = spec.key.curve if isinstance(spec.key, EcdsaKey) else None
    key = keys.generate(spec.key.type, size, curve)
    subject = SubjectFields(**spec.subject.model_dump())
    root = build.authority(
        subject, key, validity_days=spec.validity_days, now=now, path_length=spec.path_length
    )
    folder.mkdir(mode=0o700)
    fsutil.write_atomic(str(folder / KEY_FILE), encode.private_key_pem(key), 0o600)
    fsutil.write_atomic(str(folder / CERTIFICATE_FILE), encode.certificates_pem([root]), 0o644)
    fsutil.write_atomic(str(folder / SERIAL_FILE), b"1\n", 0o644)
    if cross_sign:
        cross = cross_certificate(store, root, now)
        fsutil.write_atomic(str(folder / CROSS_FILE), encode.certificates_pem([cross]), 0o644)
        store.save_serial()  # the cross-signed certificate took one of the old CA's serials
    record = Record(
        authority=spec.name,
        phase=1,
        old_root_sha256=fingerprint(store.material.leaf),
        new_root_sha256=fingerprint(root),
        cross_signed=cross_sign,
        history=(Step(phase=1, at=now),),
    )
    # The record last: until it exists, nothing reads the new CA.
    write_record(store, record)
    return record


def cross_certificate(
    store: AuthorityStore, new_root: x509.Certificate, now: dt.datetime
) -> x509.Certificate:
    """The new root's name and key certified by the old CA: a client that trusts only the
    old root reaches a new leaf through it (leaf, cross-signed, old root)."""
    assert store.material is not None
    old = store.material
    end = min(new_root.not_valid_after_utc, old.leaf.not_valid_after_utc)
    public = new_root.public_key()
    constraints = new_root.extensions.get_extension_for_class(x509.BasicConstraints).value
    usage = new_root.extensions.get_extension_for_class(x509.KeyUsage).value
    issuer_key = old.key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(new_root.subject)
        .issuer_name(old.leaf.subject)
        .public_key(public)
        .serial_number(store.take_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(end)
        .add_extension(constraints, critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key),
            critical=False,
        )
        .sign(old.key, signature_hash(old.key))  # type: ignore[arg-type]
    )


def next_phase(record: Record, wanted: int | None) -> int:
    """The phase to move to (``wanted``, or the next one): only forward, one at a time."""
    target = wanted if wanted is not None else record.phase + 1
    if target == record.phase:
        raise ProvisionError(
            f"authority {record.authority!r} is in phase {target} ({PHASES[target]}) already"
        )
    if target < record.phase:
        raise ProvisionError(
            f"authority {record.authority!r} is in phase {record.phase}; a rotation does not "
            "go back (start a new one once this one is finished)"
        )
    if target > 3:
        raise ProvisionError(
            f"authority {record.authority!r} is in phase 3, the last; finish the rotation "
            "with --finish once its plan is applied"
        )
    if target != record.phase + 1:
        raise ProvisionError(
            f"authority {record.authority!r} is in phase {record.phase}: apply it, then move "
            f"to phase {record.phase + 1} first"
        )
    return target


def advance(
    store: AuthorityStore, record: Record, phase: int, now: dt.datetime, old_served: list[str]
) -> Record:
    """Record ``phase``; phase 3 is refused while any host serves a leaf of the old CA
    (``old_served``: one line per binding that does, or could not be checked)."""
    if phase == 3 and old_served:
        raise ProvisionError(
            f"authority {record.authority!r} stays in phase {record.phase}: the old root "
            "cannot be retired while hosts still serve leaves it signed (apply phase 2 to "
            f"them first, and reload their servers): {'; '.join(old_served)}"
        )
    updated = record.model_copy(
        update={"phase": phase, "history": (*record.history, Step(phase=phase, at=now))}
    )
    write_record(store, updated)
    return updated


def finish(store: AuthorityStore, now: dt.datetime) -> Path:
    """After phase 3: the old CA copied into ``retired/STAMP/`` (kept, not deleted), the new
    one made the authority, the rotation record removed. Returns the archive folder.
    Interrupted, it is finished by running it again (the record says where it was)."""
    record = read_record(store)
    if record is None:
        raise ProvisionError(f"authority {store.spec.name!r} is not rotating")
    if record.phase != 3:
        raise ProvisionError(
            f"authority {record.authority!r} is in phase {record.phase} ({PHASES[record.phase]}); "
            "a rotation is finished after phase 3 is applied"
        )
    folder, nxt = store.folder, next_folder(store)
    if record.finishing is None:
        archive = folder / RETIRED_DIR / now.strftime("%Y%m%dT%H%M%SZ")
        archive.mkdir(parents=True, mode=0o700)
        for name in (KEY_FILE, CERTIFICATE_FILE, SERIAL_FILE, *_STATE_FILES, RECORD_FILE):
            source = folder / name
            if source.exists():
                fsutil.write_atomic(
                    str(archive / name), source.read_bytes(), 0o600 if name == KEY_FILE else 0o644
                )
        record = record.model_copy(update={"finishing": str(archive)})
        write_record(store, record)
    archive = Path(record.finishing or "")
    # The record is input: only an archive of this folder holding the old CA lets the old
    # files be replaced (a record claiming a finish that never archived must not lose them).
    if archive.parent != folder / RETIRED_DIR or not all(
        (archive / name).is_file() for name in (KEY_FILE, CERTIFICATE_FILE)
    ):
        raise ProvisionError(
            f"{record_path(store)}: records a finish whose archive {archive} does not hold the "
            "old CA; nothing was changed (restore the record from a backup)"
        )
    if nxt.exists():
        # The key first: a key that matches no certificate is refused on the next load,
        # never used with the old certificate.
        for name in (KEY_FILE, CERTIFICATE_FILE, SERIAL_FILE, *_STATE_FILES, CROSS_FILE):
            source = nxt / name
            if source.exists():
                mode = 0o600 if name == KEY_FILE else 0o644
                fsutil.write_atomic(str(folder / name), source.read_bytes(), mode)
            elif name in _STATE_FILES and (folder / name).exists():
                (folder / name).unlink()  # the old CA's, archived
        shutil.rmtree(nxt)
    record_path(store).unlink()
    fsutil.fsync_directory(str(folder))
    return archive


def describe(store: AuthorityStore) -> str | None:
    """The rotation as ``status`` shows it; None when the authority is not rotating."""
    if store.phase is None:
        return None
    return f"rotating, phase {store.phase} of 3 ({PHASES[store.phase]}): {PHASE_WORDS[store.phase]}"
