"""The ACME account key, kept on the controller beside the playbook.

One key per directory, in a folder named for the directory's host (``acme/HOST/account.key``,
like an authority's folder): generated once, written 0600 with ``O_EXCL`` so that hosts applied
at once agree on one key, then reused by every later run. It is never printed: it signs
requests to the CA and nothing else.
"""

from __future__ import annotations

import base64
import os
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provision.errors import ProvisionError
from provision.model.playbook import AcmeSource

KEY_FILE = "account.key"
_LOCK = threading.Lock()  # hosts order from threads; one of them makes the key


def account_folder(source: AcmeSource, base: Path) -> Path:
    if source.account_dir is not None:
        folder = Path(source.account_dir)
        return folder if folder.is_absolute() else base / folder
    parts = urlsplit(source.directory)
    # The directory's host and port, made a safe folder name (a URL is input).
    name = re.sub(r"[^A-Za-z0-9.-]", "_", parts.netloc) or "directory"
    return base / "acme" / name


def account_key(source: AcmeSource, base: Path) -> ec.EllipticCurvePrivateKey:
    """The account's key, made on first use. P-256: every ACME CA accepts ES256."""
    path = account_folder(source, base) / KEY_FILE
    with _LOCK:
        if not path.exists():
            _create(path)
        try:
            if path.is_symlink():
                raise ProvisionError(f"{path} is a symlink; name the real account key file")
            data = path.read_bytes()
            key = serialization.load_pem_private_key(data, password=None)
        except (OSError, ValueError) as exc:
            raise ProvisionError(f"the ACME account key {path} cannot be read: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ProvisionError(f"the ACME account key {path} is not an ECDSA key")
    return key


def account_thumbprint(source: AcmeSource, base: Path) -> str:
    """The account key's JWK thumbprint (RFC 7638), base64url: the public half of every
    http-01 key authorisation ("TOKEN.THUMBPRINT"), and nothing secret."""
    from josepy.jwk import JWKEC  # (imported here: only ACME runs pay for josepy)

    digest = JWKEC(key=account_key(source, base).public_key()).thumbprint()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
