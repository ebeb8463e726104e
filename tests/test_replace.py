"""Replacing certificates: self-signed -> internal CA -> another CA -> self-signed, with backups
of every replaced file and removal of outputs a playbook no longer lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot
from thirdparty import (
    CA_PLAYBOOK,
    ENV,
    HOSTS,
    INVENTORY,
    SELF_SIGNED,
    back_to_self_signed,
    certs_dir,
    change_of,
    example,
    fingerprint,
    fresh,
    openssl,
    plan_json,
    public_key_of,
    write_playbook,
)

pytestmark = pytest.mark.usefixtures("openssl")

VOICE_ROOT = "CN=Example Voice Root CA,O=Example Voice Operations"
VOICE_ROOT_2 = "CN=Example Voice Root CA 2,O=Example Voice Operations"


def apply(cli: Any, playbook: str, *args: str) -> Any:
    result = cli("apply", playbook, "-i", INVENTORY, *args, env=ENV)
    assert result.exit_code == 0, result.stdout + result.stderr
    return result


def backups(project: Path, host: str) -> list[Path]:
    root = certs_dir(project, host) / ".backup"
    return sorted(root.iterdir()) if root.exists() else []


def manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """The backup's files by the path they came from."""
    files = json.loads((folder / "manifest.json").read_text())["files"]
    return {entry["path"]: entry for entry in files}


def assert_backup_holds(
    folder: Path, old: dict[str, tuple[bytes, int, int]], certificates: Path, names: list[str]
) -> None:
    entries = manifest(folder)
    for name in names:
        entry = entries[str(certificates / name)]
        saved = Path(entry["backup"])
        assert saved.parent == folder
        assert saved.read_bytes() == old[name][0], name
        assert entry["mode"] == old[name][1] & 0o777
        assert saved.stat().st_mode & 0o777 == old[name][1] & 0o777  # keys stay 0600


def test_self_signed_to_internal_ca_end_to_end(project: Path, cli: Any) -> None:
    fresh(project)
    apply(cli, SELF_SIGNED)
    old = {host: snapshot(certs_dir(project, host)) for host in HOSTS}

    document = plan_json(cli, CA_PLAYBOOK)
    for host in HOSTS:
        change = change_of(document, host, "certificate httpscert")
        assert change is not None
        assert change["action"] == "replace"
        assert change["reason"].startswith(f"issuer changed: self-signed -> {VOICE_ROOT}")
        was = fingerprint(certs_dir(project, host) / "httpscert.cer", "DER")
        assert change["before"]["sha256"] == was.replace(":", "")
    assert not (project / "playbooks" / "pki").exists()  # plan wrote nothing, not even the CA
    assert {host: snapshot(certs_dir(project, host)) for host in HOSTS} == old

    result = apply(cli, CA_PLAYBOOK)
    assert "Recap: ok 0, changed 3, failed 0" in result.stdout
    ca = project / "playbooks" / "pki" / "voice-root" / "ca.crt"
    for host in HOSTS:
        certificates = certs_dir(project, host)
        backup = backups(project, host)[-1]  # the first apply's lists what it created
        assert_backup_holds(
            backup, old[host], certificates, ["httpscert.cer", "httpscert.pem", "httpscert.key"]
        )
        created = json.loads((backup / "manifest.json").read_text())["created"]
        assert {Path(p).name for p in created} == {"httpscert.p7b", "httpscert.pfx"}
        assert fingerprint(certificates / "httpscert.cer", "DER") == fingerprint(ca)
        openssl("verify", "-CAfile", ca, certificates / "httpscert.pem")
        # rotate: always (the default): the replacement has a new key.
        assert public_key_of(certificates / "httpscert.key") != public_key_of(
            next(backup.glob("*-httpscert.key"))
        )

    settled = snapshot(project / ".provision")
    again = apply(cli, CA_PLAYBOOK)
    assert "Recap: ok 3, changed 0, failed 0" in again.stdout
    assert snapshot(project / ".provision") == settled


def test_dropped_output_is_deleted_after_a_backup(project: Path, cli: Any) -> None:
    fresh(project)
    apply(cli, CA_PLAYBOOK)
    # The playbook stops listing httpscert.p7b: it is deleted, after a backup.
    data = example(project)
    outputs = data["certificates"][0]["outputs"]
    data["certificates"][0]["outputs"] = [o for o in outputs if o["file"] != "httpscert.p7b"]
    smaller = write_playbook(project, "no-p7b.yml", data)
    p7b = {host: (certs_dir(project, host) / "httpscert.p7b").read_bytes() for host in HOSTS}
    document = plan_json(cli, smaller)
    for host in HOSTS:
        change = change_of(document, host, "file httpscert.p7b")
        assert change is not None
        assert (change["action"], change["reason"]) == ("delete", "no longer in the playbook")
        assert change_of(document, host, "certificate httpscert") is None
    apply(cli, smaller)
    for host in HOSTS:
        certificates = certs_dir(project, host)
        assert not (certificates / "httpscert.p7b").exists()
        assert (certificates / "httpscert.pfx").exists()
        latest = backups(project, host)[-1]
        entry = manifest(latest)[str(certificates / "httpscert.p7b")]
        assert Path(entry["backup"]).read_bytes() == p7b[host]
        state = json.loads((certificates / ".provision-state.json").read_text())
        owned = state["owners"]["CallManager HTTPS (internal CA)"]["outputs"]
        assert "httpscert.p7b" not in owned["httpscert"]
    assert "Recap: ok 3, changed 0, failed 0" in apply(cli, smaller).stdout


def test_rotate_never_keeps_the_key_through_the_switch(project: Path, cli: Any) -> None:
    fresh(project)
    apply(cli, SELF_SIGNED, "-l", "cm-pub-01")
    key_file = certs_dir(project) / "httpscert.key"
    before = snapshot(certs_dir(project))["httpscert.key"]
    data = example(project)
    data["certificates"][0]["key"]["rotate"] = "never"
    playbook = write_playbook(project, "keep-key.yml", data)
    document = plan_json(cli, playbook, "-l", "cm-pub-01")
    assert change_of(document, "cm-pub-01", "file httpscert.key") is None
    apply(cli, playbook, "-l", "cm-pub-01")
    assert snapshot(certs_dir(project))["httpscert.key"] == before  # bytes, mode and mtime
    ca = project / "playbooks" / "pki" / "voice-root" / "ca.crt"
    openssl("verify", "-CAfile", ca, certs_dir(project) / "httpscert.pem")
    # The new certificate is for the kept key.
    leaf_key = openssl("x509", "-in", certs_dir(project) / "httpscert.pem", "-noout", "-pubkey")
    assert leaf_key == openssl("pkey", "-in", key_file, "-pubout")


def two_authorities(project: Path, use: str) -> str:
    data = example(project)
    second = json.loads(json.dumps(data["authorities"][0]))
    second.update(
        name="voice-root-2",
        dir="pki/voice-root-2",
        subject={
            "common_name": "Example Voice Root CA 2",
            "organization": "Example Voice Operations",
        },
        key={"type": "ecdsa", "curve": "p256"},
    )
    data["authorities"].append(second)
    data["certificates"][0]["source"] = {"type": "ca", "authority": use}
    return write_playbook(project, f"with-{use}.yml", data)


def test_one_ca_to_another_ca_and_back(project: Path, cli: Any, tmp_path: Path) -> None:
    fresh(project)
    first = two_authorities(project, "voice-root")
    apply(cli, first, "-l", "cm-pub-01")
    certificates = certs_dir(project)
    old = snapshot(certificates)
    pki = project / "playbooks" / "pki"
    assert (pki / "voice-root-2" / "ca.crt").exists()  # both created by the first apply

    second = two_authorities(project, "voice-root-2")
    change = change_of(
        plan_json(cli, second, "-l", "cm-pub-01"), "cm-pub-01", "certificate httpscert"
    )
    assert change is not None
    assert (change["action"], change["reason"]) == (
        "replace",
        f"issuer changed: {VOICE_ROOT} -> {VOICE_ROOT_2}",
    )
    apply(cli, second, "-l", "cm-pub-01")
    ca2 = pki / "voice-root-2" / "ca.crt"
    openssl("verify", "-CAfile", ca2, certificates / "httpscert.pem")
    assert fingerprint(certificates / "httpscert.cer", "DER") == fingerprint(ca2)
    backup = backups(project, "cm-pub-01")[-1]
    assert_backup_holds(
        backup,
        old,
        certificates,
        ["httpscert.cer", "httpscert.pem", "httpscert.key", "httpscert.p7b", "httpscert.pfx"],
    )
    assert "changed 0" in apply(cli, second, "-l", "cm-pub-01").stdout

    # Back to the self-signed example: a replacement again. (The CA playbook owns the
    # folder now: going back says so, plan/state.py.)
    self_signed = back_to_self_signed(project)
    change = change_of(
        plan_json(cli, self_signed, "-l", "cm-pub-01"), "cm-pub-01", "certificate httpscert"
    )
    assert change is not None
    assert (change["action"], change["reason"]) == (
        "replace",
        f"issuer changed: {VOICE_ROOT_2} -> self-signed",
    )
    apply(cli, self_signed, "-l", "cm-pub-01")
    assert_self_signed(certificates, tmp_path)
    assert (
        change_of(
            plan_json(cli, self_signed, "-l", "cm-pub-01"), "cm-pub-01", "certificate httpscert"
        )
        is None
    )


def assert_self_signed(certificates: Path, tmp_path: Path) -> None:
    """httpscert.cer (the root, DER) is the leaf itself, and it verifies the fullchain."""
    self_signed = tmp_path / "self-signed.pem"
    self_signed.write_bytes(
        openssl("x509", "-inform", "DER", "-in", certificates / "httpscert.cer")
    )
    assert fingerprint(self_signed) == fingerprint(certificates / "httpscert.pem")
    openssl("verify", "-CAfile", self_signed, certificates / "httpscert.pem")


def test_back_to_self_signed_removes_the_ca_only_outputs(
    project: Path, cli: Any, tmp_path: Path
) -> None:
    fresh(project)
    apply(cli, CA_PLAYBOOK, "-l", "cm-pub-01")
    certificates = certs_dir(project)
    self_signed = back_to_self_signed(project)
    document = plan_json(cli, self_signed, "-l", "cm-pub-01")
    for name in ("httpscert.p7b", "httpscert.pfx"):
        gone = change_of(document, "cm-pub-01", f"file {name}")
        assert gone is not None and gone["action"] == "delete"
    apply(cli, self_signed, "-l", "cm-pub-01")
    assert sorted(p.name for p in certificates.iterdir() if not p.name.startswith(".")) == [
        "httpscert.cer",
        "httpscert.key",
        "httpscert.pem",
    ]
    assert_self_signed(certificates, tmp_path)
    assert "changed 0" in apply(cli, self_signed, "-l", "cm-pub-01").stdout
