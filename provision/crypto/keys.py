"""Private keys: generate from a policy, describe, and tell whether two keys belong together."""

from __future__ import annotations

import math

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from provision.crypto.types import PrivateKey, PublicKey

_CURVES: dict[str, type[ec.EllipticCurve]] = {"p256": ec.SECP256R1, "p384": ec.SECP384R1}
_CURVE_LABELS = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}


def generate(kind: str, size: int | None = None, curve: str | None = None) -> PrivateKey:
    """A new key. ``kind`` is rsa, ecdsa or ed25519, as in a playbook's ``key:``."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=size or 2048)
    if kind == "ecdsa":
        return ec.generate_private_key(_CURVES[curve or "p256"]())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {kind!r}")


def label(key: PrivateKey | PublicKey) -> str:
    """``rsa-2048``, ``ecdsa-p256``, ``ed25519``: the same words a playbook uses."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"ecdsa-{_CURVE_LABELS.get(key.curve.name, key.curve.name)}"
    return "ed25519"


def public_der(key: PrivateKey | PublicKey) -> bytes:
    public: PublicKey = (
        key.public_key()
        if isinstance(
            key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        )
        else key
    )
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def matches(key: PrivateKey, public: PublicKey) -> bool:
    """Whether ``key`` is the private half of ``public``, compared by their encoded public key."""
    return public_der(key) == public_der(public)


# What `proves` signs: the message does not matter, only that the signature verifies.
_PROOF = b"provision: a private key proves itself by signing this"


def proves(key: PrivateKey) -> bool:
    """Whether ``key`` makes signatures its own public half verifies.

    Keys are loaded without OpenSSL's full RSA check (its primality tests cost more than the
    rest of planning a host), so a key whose public half is intact but whose private numbers
    were damaged would pass ``matches`` while every TLS handshake fails. For RSA the numbers
    a signature uses are checked against each other (``p*q = n``, ``e*d = 1`` modulo
    ``lcm(p-1, q-1)``, the CRT values): the full check without primality, microseconds where
    a signature costs a millisecond. An ECDSA key's scalar must make its stored public point;
    an Ed25519 key signs and verifies once.
    """
    try:
        if isinstance(key, rsa.RSAPrivateKey):
            return _rsa_consistent(key.private_numbers())
        if isinstance(key, ec.EllipticCurvePrivateKey):
            # The public point the private scalar makes must be the one stored beside it
            # (one point multiplication, where a signature and its check cost two and a half).
            made = ec.derive_private_key(key.private_numbers().private_value, key.curve)
            return made.public_key().public_numbers() == key.public_key().public_numbers()
        else:
            key.public_key().verify(key.sign(_PROOF), _PROOF)
    except (InvalidSignature, ValueError):
        return False
    return True


def _rsa_consistent(numbers: rsa.RSAPrivateNumbers) -> bool:
    p, q, d = numbers.p, numbers.q, numbers.d
    n, e = numbers.public_numbers.n, numbers.public_numbers.e
    if p <= 1 or q <= 1 or p * q != n:
        return False
    lam = (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
    return (
        (e * d) % lam == 1
        and numbers.dmp1 == d % (p - 1)
        and numbers.dmq1 == d % (q - 1)
        and (numbers.iqmp * q) % p == 1
    )
