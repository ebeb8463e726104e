"""A certificate's material (key, leaf, chain, root) and the bytes of each output made from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509

from provision.crypto import encode
from provision.crypto.types import PrivateKey
from provision.model.playbook import Output


@dataclass(frozen=True)
class Material:
    key: PrivateKey
    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()  # intermediates, leaf's issuer first
    root: x509.Certificate | None = None  # None: the leaf is its own root (self-signed)

    @property
    def root_certificate(self) -> x509.Certificate:
        return self.root if self.root is not None else self.leaf

    def certificates(self, content: str) -> list[x509.Certificate]:
        if content == "certificate":
            return [self.leaf]
        if content == "chain":
            return list(self.chain)
        if content == "fullchain":
            return [self.leaf, *self.chain]
        if content == "fullpath":
            # The leaf and what a PFX carries besides it: the whole certification path.
            return [self.leaf, *self.pkcs12_extras()]
        if content == "root":
            return [self.root_certificate]
        raise ValueError(f"{content!r} is not certificate content")

    def pkcs12_extras(self) -> list[x509.Certificate]:
        """What a PFX carries besides the leaf: intermediates, then the root (IIS builds the
        chain from the PFX when the root is in it); nothing more for a self-signed leaf."""
        extras = list(self.chain)
        if self.root is not None:
            extras.append(self.root)
        return extras


def output_bytes(output: Output, material: Material, passwords: Mapping[str, bytes]) -> bytes:
    """The exact bytes an output file should hold (PKCS#12: one valid encoding of many)."""
    if output.format == "pkcs12":
        return encode.pkcs12_bundle(
            material.key,
            material.leaf,
            material.pkcs12_extras(),
            password=passwords[output.file],
            friendly_name=output.friendly_name,
            profile=output.profile,
        )
    assert output.content is not None  # the model guarantees it for non-PKCS#12 formats
    if output.content == "key":
        if output.format == "der":
            return encode.private_key_der(material.key)
        return encode.private_key_pem(material.key)
    return _certificates_bytes(output, material.certificates(output.content))


def _certificates_bytes(output: Output, certificates: list[x509.Certificate]) -> bytes:
    if output.format == "der":
        return encode.certificates_der(certificates[:1])
    if output.format == "pem":
        return encode.certificates_pem(certificates)
    return encode.certificates_pkcs7(certificates)


@dataclass(frozen=True)
class Above:
    """What a certificate issued now will carry above its leaf, known before it is issued (an
    internal CA's own certificates, a supplied chain): its chain and root outputs can be
    judged at plan time, so a reissue leaves them alone when they already hold it."""

    chain: tuple[x509.Certificate, ...]
    root: x509.Certificate | None  # None: the new leaf will be its own root (not known yet)


def issuer_above(issuer: Material) -> Above:
    """Above a leaf that ``issuer`` (a CA's own material) signs: the CA joins the chain
    unless it is the root itself."""
    chain = (issuer.leaf, *issuer.chain) if issuer.root is not None else ()
    return Above(chain, issuer.root_certificate)


def bytes_above(output: Output, above: Above) -> bytes | None:
    """The bytes of an output that holds only what is above the leaf (content ``chain`` or
    ``root``), or None when the output depends on the leaf or key still to be made."""
    if output.content == "chain":
        return _certificates_bytes(output, list(above.chain))
    if output.content == "root" and above.root is not None:
        return _certificates_bytes(output, [above.root])
    return None


def output_mode(output: Output) -> int:
    """Keys and PFX files are for the owner alone."""
    return 0o600 if output.holds_key else 0o644


def issued_material(key: PrivateKey, leaf: x509.Certificate, issuer: Material) -> Material:
    """A leaf signed by ``issuer`` (a CA's own material), with what is above it."""
    above = issuer_above(issuer)
    return Material(key, leaf, above.chain, above.root)
