"""Private keys: generate from a policy, describe, and tell whether two keys belong together."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

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

    Keys are loaded without OpenSSL's full RSA consistency check (it costs more than the rest
    of planning a host), so a key whose public half is intact but whose private numbers were
    damaged would pass ``matches`` while every TLS handshake fails. Signing once and
    verifying is the handshake's own test, at the cost of one signature (about 1 ms for
    RSA-2048, far less for ECDSA and Ed25519).
    """
    try:
        if isinstance(key, rsa.RSAPrivateKey):
            signature = key.sign(_PROOF, padding.PKCS1v15(), hashes.SHA256())
            key.public_key().verify(signature, _PROOF, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            signature = key.sign(_PROOF, ec.ECDSA(hashes.SHA256()))
            key.public_key().verify(signature, _PROOF, ec.ECDSA(hashes.SHA256()))
        else:
            key.public_key().verify(key.sign(_PROOF), _PROOF)
    except (InvalidSignature, ValueError):
        return False
    return True
