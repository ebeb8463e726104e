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
    certificates = material.certificates(output.content)
    if output.format == "der":
        return encode.certificates_der(certificates[:1])
    if output.format == "pem":
        return encode.certificates_pem(certificates)
    return encode.certificates_pkcs7(certificates)


def output_mode(output: Output) -> int:
    """Keys and PFX files are for the owner alone."""
    return 0o600 if output.holds_key else 0o644


def issued_material(key: PrivateKey, leaf: x509.Certificate, issuer: Material) -> Material:
    """A leaf signed by ``issuer`` (a CA's own material): the CA joins the chain unless it is
    the root itself."""
    chain = (issuer.leaf, *issuer.chain) if issuer.root is not None else ()
    return Material(key, leaf, chain, issuer.root_certificate)
