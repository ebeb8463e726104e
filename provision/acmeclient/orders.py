"""Orders a run left validated but unfinished, kept on the controller beside the account.

Validation is what an order costs (the CA's work, and its rate limits on failed and new
orders): once an order exists its URL is written here (it is no secret: only the account's
key can act on it), and removed once the certificate is downloaded. The next run for the
same host and certificate asks the CA for that order first: ``ready`` is finalised with the
new CSR, ``valid`` is downloaded (and used if it certifies the key asked for), anything else
(pending, invalid, expired, gone) is forgotten and a new order made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import requests
from acme import client, errors, messages

from provision import fsutil
from provision.acmeclient.account import account_folder
from provision.model.playbook import AcmeSource

FOLDER = "orders"


def record_path(source: AcmeSource, base: Path, label: str) -> Path:
    digest = hashlib.sha256(label.encode()).hexdigest()[:32]
    return account_folder(source, base) / FOLDER / f"{digest}.json"


def record(source: AcmeSource, base: Path, label: str, url: str) -> None:
    path = record_path(source, base, label)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = json.dumps({"certificate": label, "order": url}, sort_keys=True) + "\n"
    fsutil.write_atomic(str(path), data.encode(), 0o644)


def recorded(source: AcmeSource, base: Path, label: str) -> str | None:
    path = record_path(source, base, label)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # none, or unreadable: a new order is the safe answer
    url = data.get("order") if isinstance(data, dict) else None
    return url if isinstance(url, str) and url.startswith("https://") else None


def forget(source: AcmeSource, base: Path, label: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        record_path(source, base, label).unlink()


def resume(
    acme: client.ClientV2, source: AcmeSource, base: Path, label: str, csr: bytes
) -> messages.OrderResource | None:
    """The recorded order, when the CA says it is ready or valid; else None (forgotten)."""
    url = recorded(source, base, label)
    if url is None:
        return None
    try:
        response = acme.net.post(url, None, new_nonce_url=acme.directory["newNonce"])
        body = messages.Order.from_json(response.json())
    except (messages.Error, errors.Error, requests.RequestException, ValueError):
        body = None
    if body is None or body.status not in (messages.STATUS_READY, messages.STATUS_VALID):
        forget(source, base, label)
        return None
    return messages.OrderResource(body=body, uri=url, csr_pem=csr)
