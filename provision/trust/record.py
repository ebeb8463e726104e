"""The trust record: which roots provision added to each trust store of a host.

It lives beside the state file in the certificates directory (``layout.TRUST_RECORD``). It is
what makes removal safe: a root the playbook no longer lists is removed only if the record
says provision added it, and a root someone else put in a store is never touched. A store
whose update command (``update-ca-certificates``, ``certutil``) has not yet succeeded is
``pending``, with the roots still to remove, so the next run runs it again.

The record is read from the host, so it is input: anything but the exact shape below (JSON,
SHA-256 fingerprints, bounded sizes) fails the host with one paragraph, and nothing changes.
"""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provision.errors import ProvisionError

VERSION = 1
# A SHA-256 fingerprint as plans print it: 64 upper-case hex digits.
Fingerprint = Annotated[str, Field(pattern=r"^[0-9A-F]{64}$")]
# A root's subject as the record keeps it for plans (printable, bounded).
SubjectText = Annotated[str, Field(max_length=1024, pattern=r"^[^\x00-\x1f\x7f]*$")]
# "TRUST TYPE LOCATION": the trust's name, the store's type and where it is.
StoreKey = Annotated[str, Field(min_length=1, max_length=4200, pattern=r"^[^\x00-\x1f]+$")]
MAX_BYTES = 1 << 20


class StoreEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    roots: dict[Fingerprint, SubjectText] = Field(default_factory=dict, max_length=1000)
    # The store's update command is owed (written before it runs, cleared after).
    pending: bool = False
    # Roots the owed command must still remove.
    removing: dict[Fingerprint, SubjectText] = Field(default_factory=dict, max_length=1000)


class TrustRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    version: int = VERSION
    stores: dict[StoreKey, StoreEntry] = Field(default_factory=dict, max_length=1000)


class HostileRecord(ProvisionError):
    pass


def parse(content: bytes | None, path: str) -> TrustRecord:
    """The record as the host has it; an empty one when there is none."""
    if content is None:
        return TrustRecord()
    problem = None
    if len(content) > MAX_BYTES:
        problem = f"is larger than {MAX_BYTES} bytes"
    else:
        try:
            record = TrustRecord.model_validate(json.loads(content))
        except (ValueError, ValidationError) as exc:
            # (What the file says is not repeated: it is untrusted.)
            problem = (
                "is not a trust record provision wrote"
                if not isinstance(exc, ValidationError)
                else f"is not a trust record provision wrote ({exc.error_count()} problems)"
            )
        else:
            if record.version == VERSION:
                return record
            problem = f"has version {record.version}, not {VERSION}"
    raise HostileRecord(
        f"{path} {problem}; it says which roots provision may remove from trust stores, so "
        "nothing was changed on this host. Inspect it, then remove it (provision then adds "
        "the playbook's roots again and removes none it did not record)"
    )


def dumps(record: TrustRecord) -> bytes:
    """Sorted, so the same record is the same bytes (and the same plan) every run."""
    data = {
        "version": VERSION,
        "stores": {
            key: {
                "roots": dict(sorted(entry.roots.items())),
                **({"pending": True} if entry.pending else {}),
                **({"removing": dict(sorted(entry.removing.items()))} if entry.removing else {}),
            }
            for key, entry in sorted(record.stores.items())
            if entry.roots or entry.pending or entry.removing
        },
    }
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def confirmed(record: TrustRecord) -> TrustRecord:
    """The record once every pending update command has succeeded."""
    return TrustRecord(
        stores={key: StoreEntry(roots=entry.roots) for key, entry in record.stores.items()}
    )
