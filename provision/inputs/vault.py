"""Ansible Vault, read without Ansible: ``$ANSIBLE_VAULT;1.1;AES256`` and
``$ANSIBLE_VAULT;1.2;AES256;LABEL`` texts, as whole files or ``!vault |`` scalars.

The documented format: after the header line, hex of three lines (salt hex, HMAC hex,
ciphertext hex). PBKDF2-HMAC-SHA256 of the password and salt, 10,000 iterations, gives 80
bytes: the AES-256 key, the HMAC-SHA256 key and the 16-byte CTR counter block. The HMAC covers
the ciphertext and is checked (in constant time) before anything is decrypted; the plaintext
carries PKCS#7 padding. ansible-core itself is GPL and far too heavy to import for this.
"""

from __future__ import annotations

import binascii
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from provision.errors import Location

HEADER = b"$ANSIBLE_VAULT"
_ITERATIONS = 10_000
# A vault holds variables, not data sets; bounded as every input is.
MAX_VAULT_BYTES = 4 * 1024 * 1024


class VaultError(Exception):
    """Why a vault text cannot be read, in words for a message (never a secret)."""


@dataclass(frozen=True)
class Vaulted:
    """A ``!vault |`` scalar as written, and where, until a password decrypts it."""

    text: str
    where: Location

    def __repr__(self) -> str:
        return "Vaulted(...)"


@dataclass(frozen=True)
class VaultSecret:
    """One password, with the vault id it was given for (``default`` without one)."""

    label: str
    password: bytes

    def __repr__(self) -> str:  # never the password, whatever prints this
        return f"VaultSecret({self.label!r})"


def is_vault(data: bytes | str) -> bool:
    raw = data.encode() if isinstance(data, str) else data
    return raw.lstrip().startswith(HEADER + b";")


def decrypt(vaulttext: bytes | str, secrets: Sequence[VaultSecret]) -> bytes:
    """The plaintext of a vault text, with the first password that opens it.

    As Ansible, a 1.2 text tries the password given for its label first, then every other:
    a label names which password was meant, it is no part of the key.
    """
    raw = vaulttext.encode() if isinstance(vaulttext, str) else vaulttext
    lines = raw.strip().splitlines()
    header = lines[0].strip().split(b";") if lines else []
    if len(header) < 3 or header[0] != HEADER:
        raise VaultError("is not an Ansible Vault text (no $ANSIBLE_VAULT header)")
    version, cipher = header[1].strip(), header[2].strip()
    if version not in (b"1.1", b"1.2"):
        raise VaultError(f"vault format {version.decode(errors='replace')} is not 1.1 or 1.2")
    if cipher != b"AES256":
        raise VaultError(f"vault cipher {cipher.decode(errors='replace')} is not AES256")
    label = header[3].strip().decode(errors="replace") if len(header) > 3 else None
    try:
        envelope = binascii.unhexlify(b"".join(line.strip() for line in lines[1:]))
        salt_hex, mac_hex, body_hex = envelope.split(b"\n", 2)
        salt, mac, body = (binascii.unhexlify(part) for part in (salt_hex, mac_hex, body_hex))
    except (binascii.Error, ValueError):
        raise VaultError("the vault text is damaged (not the hex Ansible writes)") from None
    if not secrets:
        raise VaultError("is vault-encrypted and no vault password was given")
    ordered = sorted(secrets, key=lambda s: s.label != label)  # its own label's first
    for secret in ordered:
        plaintext = _open(secret.password, salt, mac, body)
        if plaintext is not None:
            return plaintext
    named = f" (vault id {label})" if label else ""
    raise VaultError(f"no vault password given decrypts it{named}")


def _open(password: bytes, salt: bytes, mac: bytes, body: bytes) -> bytes | None:
    derived = PBKDF2HMAC(
        algorithm=hashes.SHA256(), length=80, salt=salt, iterations=_ITERATIONS
    ).derive(password)
    cipher_key, mac_key, counter = derived[:32], derived[32:64], derived[64:]
    expected = hmac.new(mac_key, body, "sha256").digest()
    if not hmac.compare_digest(expected, mac):
        return None  # the wrong password, or a tampered text
    decryptor = Cipher(algorithms.AES(cipher_key), modes.CTR(counter)).decryptor()
    padded = decryptor.update(body) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        return None


__all__ = [
    "HEADER",
    "MAX_VAULT_BYTES",
    "VaultError",
    "VaultSecret",
    "Vaulted",
    "decrypt",
    "is_vault",
]
