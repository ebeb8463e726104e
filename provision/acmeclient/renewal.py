"""The CA's renewal information (ARI, RFC 9773), kept on the controller beside the account.

Planning never contacts the CA, so the CA's word is fetched by apply, once a certificate is
issued (``acme``'s ``ClientV2.renewal_time``: a moment drawn within the suggested window,
as the RFC asks), and recorded here per host and certificate with the serial it is about.
A later plan renews when that moment has passed, saying so. A directory without
``renewalInfo`` records nothing, and renewal follows ``renew_before_days`` alone. The
window is not fetched again until the next issue: a CA that moves it later (revoking early,
say) is heard at the next renewal, not before.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from provision import fsutil
from provision.acmeclient.account import account_folder
from provision.model.playbook import AcmeSource

if TYPE_CHECKING:
    from acme import client

FOLDER = "renewal"


def record_path(source: AcmeSource, base: Path, label: str) -> Path:
    digest = hashlib.sha256(label.encode()).hexdigest()[:32]
    return account_folder(source, base) / FOLDER / f"{digest}.json"


def fetch_and_record(
    acme: client.ClientV2, source: AcmeSource, base: Path, label: str, leaf: x509.Certificate
) -> None:
    """Ask the CA when to renew ``leaf`` and record it; nothing when it offers no ARI or
    cannot answer now (the order itself succeeded: this never fails it)."""
    # Imported here, as in every module that talks to the CA: planning reads the record
    # alone, and acme, josepy and requests cost a run without ACME about 0.15 s to import.
    import josepy as jose
    import requests
    from acme import errors, messages

    path = record_path(source, base, label)
    try:
        acme.directory["renewalInfo"]
    except KeyError:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # an old record would speak for another certificate
        return
    pem = leaf.public_bytes(serialization.Encoding.PEM)
    try:
        renew_at, _ = acme.renewal_time(pem)
    except (errors.Error, messages.Error, requests.RequestException, jose.errors.Error, ValueError):
        return
    if renew_at is None:
        return
    if renew_at.tzinfo is None:
        renew_at = renew_at.replace(tzinfo=dt.UTC)
    record = {
        "certificate": label,
        "serial": f"{leaf.serial_number:x}",
        "renew_at": renew_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fsutil.write_atomic(str(path), (json.dumps(record, sort_keys=True) + "\n").encode(), 0o644)


def recorded(source: AcmeSource, base: Path, label: str) -> tuple[int, dt.datetime] | None:
    """(serial, moment to renew) as recorded, or None (none, or unreadable: then the
    renewal window alone decides)."""
    try:
        data = json.loads(record_path(source, base, label).read_text())
        serial = int(data["serial"], 16)
        moment = dt.datetime.strptime(data["renew_at"], "%Y-%m-%dT%H:%M:%SZ")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return serial, moment.replace(tzinfo=dt.UTC)
