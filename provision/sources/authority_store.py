"""Internal certificate authorities, kept in a folder of the controller.

The folder holds ``ca.key`` (0600), ``ca.crt`` (PEM) and ``serial`` (the next serial number,
hex, as `openssl ca` keeps it). Serial numbers combine that counter with 64 random bits, so
they are unique per CA and unpredictable, as the CA/Browser Forum asks.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from provision import fsutil
from provision.crypto import build, encode, keys
from provision.crypto.build import SubjectFields
from provision.crypto.decode import load_bundle, load_private_key
from provision.errors import CryptoError, InputError, Location
from provision.inputs.manifest import Manifest, read
from provision.model.playbook import Authority, EcdsaKey, RsaKey
from provision.plan.material import Material

KEY_FILE = "ca.key"
CERTIFICATE_FILE = "ca.crt"
SERIAL_FILE = "serial"


@dataclass
class AuthorityStore:
    spec: Authority
    folder: Path
    material: Material | None  # None until created
    next_serial: int = 1
    saved_serial: int = 1  # what the serial file holds, so an idle run does not rewrite it
    # Leaves this run replaced, (host, serial): revoked as superseded once the host finished.
    superseded: list[tuple[str, int]] = field(default_factory=list)
    base: Path | None = None  # the playbook's folder, which relative paths start from
    # During a rotation (trust/rotation.py): its phase, the roots trust stores hold (old and
    # new, then new alone), and the old CA once this new one issues (phase 2 on), which
    # keeps its own serials, revocations and CRL.
    phase: int | None = None
    roots: tuple[x509.Certificate, ...] = ()
    previous: AuthorityStore | None = None
    crl_stem: str = "crl"  # the CRL's file names in crl_dir: STEM.der and STEM.pem

    @property
    def pending(self) -> bool:
        return self.material is None

    @property
    def certificate_file(self) -> Path:
        return self.folder / CERTIFICATE_FILE

    @property
    def crl_urls(self) -> tuple[str, ...]:
        """The CRL distribution points its leaves carry (none unless configured)."""
        crl = self.spec.crl
        return (crl.url,) if crl is not None and crl.url else ()

    @property
    def crl_dir(self) -> Path | None:
        """Where its CRL is published on the controller; None without ``crl``."""
        if self.spec.crl is None:
            return None
        folder = Path(self.spec.crl.dir)
        return folder if folder.is_absolute() else (self.base or self.folder) / folder

    @property
    def subject_text(self) -> str:
        return build.name_of(SubjectFields(**self.spec.subject.model_dump())).rfc4514_string()

    def take_serial(self) -> int:
        counter = self.next_serial
        self.next_serial += 1
        return (counter << 64) | secrets.randbits(64)

    def save_serial(self) -> None:
        if self.next_serial == self.saved_serial and (self.folder / SERIAL_FILE).exists():
            return
        self.saved_serial = self.next_serial
        fsutil.write_atomic(
            str(self.folder / SERIAL_FILE), f"{self.next_serial:x}\n".encode(), 0o644
        )


def open_authority(
    spec: Authority, base: Path, where: Location, reads: Manifest | None = None
) -> AuthorityStore:
    """Load an authority's key and certificate; a missing one is pending when ``create``."""
    folder = Path(spec.dir) if Path(spec.dir).is_absolute() else base / spec.dir
    key_path, cert_path = folder / KEY_FILE, folder / CERTIFICATE_FILE
    for name in (KEY_FILE, CERTIFICATE_FILE, SERIAL_FILE):
        read(reads, folder / name)
    if not key_path.exists() and not cert_path.exists():
        if spec.create:
            return AuthorityStore(spec, folder, None, base=base)
        raise InputError(
            where,
            f"authority {spec.name!r} has no key or certificate in {folder}; "
            f"run `provision ca init PLAYBOOK {spec.name}` or set `create: true`",
        )
    try:
        key = load_private_key(key_path.read_bytes(), source=str(key_path))
        bundle = load_bundle(cert_path.read_bytes(), source=str(cert_path))
    except OSError as exc:
        raise InputError(
            where, f"authority {spec.name!r}: cannot read {exc.filename}: {exc.strerror}"
        ) from None
    except CryptoError as exc:
        raise InputError(where, f"authority {spec.name!r}: {exc.message}") from None
    if not bundle.certificates:
        raise InputError(where, f"authority {spec.name!r}: {cert_path} holds no certificate")
    certificate = bundle.certificates[0]
    if not keys.matches(key, certificate.public_key()):  # type: ignore[arg-type]
        raise InputError(
            where,
            f"authority {spec.name!r}: {key_path} does not match the certificate in {cert_path}",
        )
    if os.stat(key_path).st_mode & 0o077:
        raise InputError(
            where, f"authority {spec.name!r}: {key_path} is readable by others; chmod 600 it"
        )
    chain = bundle.certificates[1:]
    root = chain[-1] if chain else None
    serial = _read_serial(folder / SERIAL_FILE)
    return AuthorityStore(
        spec,
        folder,
        Material(key, certificate, tuple(chain[:-1]), root),
        serial,
        serial,
        base=base,
    )


def _read_serial(path: Path) -> int:
    try:
        return int(path.read_text().strip(), 16)
    except (OSError, ValueError):
        return 1


def create(store: AuthorityStore, now: dt.datetime) -> AuthorityStore:
    """Generate the CA's key and self-signed certificate and write them atomically."""
    spec = store.spec
    size = spec.key.size if isinstance(spec.key, RsaKey) else None
    curve = spec.key.curve if isinstance(spec.key, EcdsaKey) else None
    key = keys.generate(spec.key.type, size, curve)
    certificate = build.authority(
        SubjectFields(**spec.subject.model_dump()),
        key,
        validity_days=spec.validity_days,
        now=now,
        path_length=spec.path_length,
    )
    store.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fsutil.write_atomic(str(store.folder / KEY_FILE), encode.private_key_pem(key), 0o600)
    fsutil.write_atomic(
        str(store.folder / CERTIFICATE_FILE), encode.certificates_pem([certificate]), 0o644
    )
    store.material = Material(key, certificate)
    store.save_serial()
    return store
