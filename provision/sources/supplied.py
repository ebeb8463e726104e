"""Certificates a third-party CA issued, read from the controller and checked before any write.

Every check a careful operator would make is made here, and a refusal names the file: the key
does not match; an RSA key is under 2048 bits; the chain is not valid for a TLS server (the
one chain verifier, ``crypto.chains``: it reaches a self-signed root, every signature
verifies, every certificate is valid now, every issuer is a CA allowed to sign certificates,
the leaf's key usage and extended key usage allow serverAuth); a name the playbook lists is
not covered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from provision.crypto import chains, keys
from provision.crypto.decode import Bundle, load_bundle
from provision.crypto.details import check_names
from provision.crypto.types import PrivateKey
from provision.errors import CryptoError, InputError, Location
from provision.inputs.files import UnreadableFile, read_regular
from provision.inputs.manifest import Manifest, read
from provision.model.playbook import Certificate, ProvidedSource


@dataclass(frozen=True)
class Supplied:
    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # intermediates, leaf's issuer first
    root: x509.Certificate | None  # None: the leaf is its own root, as ``Material`` has it
    key: PrivateKey | None  # None: the key is the one on the host (CSR workflow)
    certificate_file: str


# Far more than any certificate bundle or PFX (a chain of ten 4096-bit certificates is 20 KB).
MAX_SUPPLIED_BYTES = 1024 * 1024


def read_supplied_file(path: Path, display: str, where: Location) -> bytes:
    """The file's bytes; a device, FIFO or directory (``/dev/zero`` never ends) or a file too
    large to be a certificate is refused before it is read."""
    try:
        return read_regular(path, MAX_SUPPLIED_BYTES)
    except UnreadableFile as exc:
        raise InputError(where, f"{display}: {exc}") from None


@dataclass
class FileCache:
    """Decoded files by path, so a chain shared by a thousand hosts is parsed once."""

    bundles: dict[tuple[str, bytes | None], Bundle] = field(default_factory=dict)
    reads: Manifest | None = None

    def load(self, path: Path, display: str, password: bytes | None, where: Location) -> Bundle:
        cache_key = (str(path), password)
        read(self.reads, path)
        if cache_key not in self.bundles:
            data = read_supplied_file(path, display, where)
            try:
                self.bundles[cache_key] = load_bundle(data, password=password, source=display)
            except CryptoError as exc:
                raise InputError(where, exc.message) from None
        return self.bundles[cache_key]


def load_supplied(
    spec: Certificate,
    source: ProvidedSource,
    *,
    base: Path,
    password: bytes | None,
    now: dt.datetime,
    cache: FileCache,
    where: Mapping[str, Location],
) -> Supplied | None:
    """The checked certificate, or None while its file has not arrived (CSR workflow)."""

    def path_of(name: str) -> Path:
        return Path(name) if Path(name).is_absolute() else base / name

    certificate_path = path_of(source.certificate)
    read(cache.reads, certificate_path)  # not there yet: its arrival is a change
    if not certificate_path.exists() and source.key is None:
        return None  # waiting for the CA to sign the CSR
    main = cache.load(certificate_path, source.certificate, password, where["certificate"])
    if not main.certificates:
        raise InputError(where["certificate"], f"{source.certificate}: holds no certificate")
    leaf = main.certificates[0]
    pool = list(main.certificates[1:])
    key = main.key
    if source.key is not None:
        key_bundle = cache.load(path_of(source.key), source.key, password, where["key"])
        if key_bundle.key is None:
            raise InputError(where["key"], f"{source.key}: holds no private key")
        key = key_bundle.key
    if source.chain is not None:
        pool.extend(
            cache.load(path_of(source.chain), source.chain, password, where["chain"]).certificates
        )
    if source.root is not None:
        pool.extend(
            cache.load(path_of(source.root), source.root, password, where["root"]).certificates
        )

    here = where["certificate"]
    name = source.certificate
    if key is not None:
        _check_key(key, leaf, source.key or name, where["key" if source.key else "certificate"])
    chain, root = _verified_path(leaf, pool, now, name, here)
    uncovered = check_names(leaf, spec.names)
    if uncovered:
        raise InputError(
            here,
            f"{name}: does not cover every name the playbook lists, so "
            f"clients would warn: {'; '.join(uncovered)}",
        )
    # A self-signed leaf is its own root: say so as Material does (root None), or every PFX
    # made from it would carry the leaf twice.
    return Supplied(leaf, tuple(chain), None if root == leaf else root, key, name)


def _check_key(key: PrivateKey, leaf: x509.Certificate, name: str, where: Location) -> None:
    if not keys.matches(key, leaf.public_key()):  # type: ignore[arg-type]
        raise InputError(where, f"{name}: the private key does not match the certificate")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise InputError(
            where, f"{name}: RSA key of {key.key_size} bits is too small (minimum 2048)"
        )


def _verified_path(
    leaf: x509.Certificate,
    pool: list[x509.Certificate],
    now: dt.datetime,
    name: str,
    where: Location,
) -> tuple[list[x509.Certificate], x509.Certificate]:
    """(intermediates, leaf's issuer first; the root), as the chain verifier found the path.

    The supplied files' self-signed certificates are the roots (a self-signed leaf is its own):
    they are what clients are given to trust, whatever the supplied order.
    """
    roots = [c for c in pool if c.subject == c.issuer]
    if leaf.subject == leaf.issuer:
        roots.append(leaf)
    intermediates = [c for c in pool if c not in roots]
    try:
        path = chains.verify(leaf, intermediates, roots, now, purpose="server")
    except chains.ChainError as exc:
        problem = exc.problem
        if problem.rule == "no-issuer":
            raise InputError(
                where,
                f"{name}: the chain does not lead to a self-signed root: {problem.text} "
                "(add it to `chain:` or `root:`)",
            ) from None
        raise InputError(where, f"{name}: {problem.text}") from None
    return path[1:-1], path[-1]
