"""The trust stores whose tools cannot run here: RHEL's `update-ca-trust` (no such package on
Debian) and Windows' `Cert:\\LocalMachine\\Root` (a PowerShell script). Their plans and the
rendered script are compared with golden files (UPDATE_GOLDEN=1 rewrites them), and the
planning rules they share with the stores tested with real tools are checked here directly."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography import x509

from provision.facts import HostFacts
from provision.model.playbook import Playbook
from provision.plan.trust import plan_trust
from provision.transport.base import POSIX, FileState
from provision.trust import record
from provision.trust.stores import fingerprint, windows_script

GOLDEN = Path(__file__).parent / "golden" / "trust"
UPDATE = os.environ.get("UPDATE_GOLDEN", "") not in ("", "0")
ROOT = x509.load_pem_x509_certificate((GOLDEN / "golden-root.pem").read_bytes())
DROPPED = x509.load_pem_x509_certificate((GOLDEN / "dropped-root.pem").read_bytes())
RECORD = "/srv/certs/.provision-trust.json"


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8", newline="")
    assert text == path.read_bytes().decode("utf-8")


def playbook(*stores: dict[str, str]) -> Playbook:
    return Playbook.model_validate(
        {
            "name": "golden",
            "certificates_dir": "/srv/certs",
            "trust": [{"name": "fleet", "roots": [{"file": "root.pem"}], "stores": list(stores)}],
        }
    )


def facts(files: dict[str, bytes]) -> HostFacts:
    return HostFacts({p: FileState(p, "file", c, 0o644) for p, c in files.items()})


def dropped_record(key: str) -> bytes:
    entry = record.StoreEntry(roots={fingerprint(DROPPED): "CN=Dropped Root CA"})
    return record.dumps(record.TrustRecord(stores={key: entry}))


def test_rhel_store_plan_matches_the_golden_file() -> None:
    """Files in the anchors folder, the dropped root's file removed, then `update-ca-trust
    extract`; a file in the folder that provision did not record is not in the plan."""
    book = playbook({"type": "rhel"})
    anchors = "/etc/pki/ca-trust/source/anchors"
    dropped_file = f"{anchors}/provision-fleet-{fingerprint(DROPPED)[:16].lower()}.crt"
    host = facts(
        {
            RECORD: dropped_record(f"fleet rhel {anchors}"),
            dropped_file: b"(the dropped root)",
            f"{anchors}/someone-elses.crt": b"(never read, never touched)",
        }
    )
    changes, unchanged, error = plan_trust(
        book.trust, host, {"file:root.pem": [ROOT]}, RECORD, POSIX
    )
    assert error is None and unchanged == []
    text = "".join(
        f"{c.action} {c.resource}: {c.reason}\n"
        + (f"  command: {c.command}\n" if c.command else "")
        + (f"  content:\n{c.content.decode()}" if c.content else "")
        for c in changes
    )
    golden("rhel-plan.txt", text)
    # The record says the command is owed until it has succeeded.
    written = json.loads(changes[-1].content or b"")
    assert written["stores"][f"fleet rhel {anchors}"]["pending"] is True


def test_windows_script_matches_the_golden_file() -> None:
    """The script imports the root unless the store has it, and removes the root provision
    added before and no longer lists, by SHA-256 of the certificate (nothing else)."""
    book = playbook({"type": "windows", "script": "C:\\provision\\trust-fleet.ps1"})
    host = facts({RECORD: dropped_record("fleet windows C:\\provision\\trust-fleet.ps1")})
    changes, _, error = plan_trust(book.trust, host, {"file:root.pem": [ROOT]}, RECORD, POSIX)
    assert error is None
    script = next(c for c in changes if c.path == "C:\\provision\\trust-fleet.ps1")
    assert script.reason == (
        f"+CN=Golden Root CA,O=Golden Test sha256:{fingerprint(ROOT)[:16]} "
        f"-CN=Dropped Root CA sha256:{fingerprint(DROPPED)[:16]}"
    )
    assert script.content is not None
    golden("windows-root-store.ps1", script.content.decode())
    # Applied again with the script in place: nothing changes.
    after = {RECORD: next(c.content for c in changes if c.path == RECORD) or b""}
    again, unchanged, _ = plan_trust(
        book.trust,
        facts({**after, "C:\\provision\\trust-fleet.ps1": script.content}),
        {"file:root.pem": [ROOT]},
        RECORD,
        POSIX,
    )
    assert again == [] and len(unchanged) == 1


def test_the_script_never_carries_what_the_host_record_says() -> None:
    """A record's subject is the host's words: a hostile one must not reach the script that
    runs as an administrator."""
    script = windows_script("fleet", [ROOT], {fingerprint(DROPPED): "'; Remove-Item C:\\ #"})
    assert b"Remove-Item" not in script


def test_a_root_someone_else_put_in_a_java_store_stays_and_is_not_recorded() -> None:
    """Already in the truststore under another alias: not added again, never removed."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    store = pkcs12.serialize_java_truststore(
        [pkcs12.PKCS12Certificate(ROOT, b"corporate")],
        serialization.BestAvailableEncryption(b"changeit"),
    )
    book = playbook({"type": "java", "path": "/srv/trust.p12"})
    changes, unchanged, error = plan_trust(
        book.trust, facts({"/srv/trust.p12": store}), {"file:root.pem": [ROOT]}, RECORD, POSIX
    )
    assert error is None and changes == [] and len(unchanged) == 1
