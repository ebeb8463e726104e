"""The planted-record cases of test_planted_records.py over SSH (issue 14: "run them locally
and over SSH where the case applies"): a journal or a backup manifest on a real sshd host
naming files outside what the playbook manages is refused, and nothing changes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot
from sshd import BECOME_USER, SshdFleet, become_user, sshd_fleet
from test_ssh import apply, fleet, host_root, isolated_home, known_hosts_for, write_project

from provision.api import load, rollback_all, run
from provision.transport.factory import ConnectOptions

__all__ = ["become_user", "fleet", "isolated_home", "sshd_fleet"]  # fixtures, imported to be found

pytestmark = pytest.mark.integration


def _setup(fleet: SshdFleet, tmp_path: Path) -> tuple[Path, Path, Path, Path, Path]:
    [server] = fleet.start(1)
    playbook, inventory = write_project(tmp_path / "project", fleet, [server])
    known = known_hosts_for(tmp_path / "known_hosts", [server])
    first = apply(playbook, inventory, known_hosts=str(known))
    assert first[server.name].status == "changed", first[server.name].error
    outside = host_root(server) / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text("keep me\n")
    return playbook, inventory, known, host_root(server) / "certificates", outside


@pytest.mark.parametrize("mode", ["plan", "apply"])
def test_a_planted_journal_is_refused_over_ssh(fleet: SshdFleet, tmp_path: Path, mode: str) -> None:
    playbook, inventory, known, certificates, outside = _setup(fleet, tmp_path)
    (certificates / ".x.tmp").write_text("planted\n")
    record = {
        "operation": "apply",
        "renames": [[str(certificates / ".x.tmp"), str(outside / "notes.txt")]],
        "removals": [],
    }
    (certificates / ".provision-journal.json").write_text(json.dumps(record))
    before = snapshot(certificates.parent)
    loaded = load(playbook, inventory, connect=ConnectOptions(known_hosts=str(known)))
    _plan, report = run(loaded, apply=mode == "apply")
    [host] = report.hosts
    assert host.status == "failed"
    assert host.error is not None and "not a file this playbook manages" in host.error
    assert snapshot(certificates.parent) == before


def test_a_planted_manifest_is_refused_by_rollback_over_ssh(
    fleet: SshdFleet, tmp_path: Path
) -> None:
    playbook, inventory, known, certificates, outside = _setup(fleet, tmp_path)
    backup = certificates / ".backup" / "29991231T000000000000Z"
    backup.mkdir(parents=True)
    (backup / "000-x").write_text("planted\n")
    entry = {"path": str(outside / "notes.txt"), "backup": str(backup / "000-x"), "mode": 0o644}
    (backup / "manifest.json").write_text(json.dumps({"files": [entry], "created": []}))
    before = snapshot(certificates.parent)
    loaded = load(playbook, inventory, connect=ConnectOptions(known_hosts=str(known)))
    [host] = asyncio.run(rollback_all(loaded, None)).hosts
    assert host.status == "failed"
    assert host.error is not None and "which this playbook does not manage" in host.error
    assert snapshot(certificates.parent) == before


def test_a_directory_owned_by_another_playbook_is_refused_over_ssh(
    fleet: SshdFleet, tmp_path: Path
) -> None:
    playbook, inventory, known, certificates, _outside = _setup(fleet, tmp_path)
    other = playbook.with_name("other.yml")
    other.write_text(playbook.read_text().replace("name: SSH fleet", "name: Another team"))
    before = snapshot(certificates.parent)
    loaded = load(other, inventory, connect=ConnectOptions(known_hosts=str(known)))
    _plan, report = run(loaded, apply=True)
    [host] = report.hosts
    assert host.status == "failed"
    assert host.error is not None
    assert "is managed by playbook 'SSH fleet'; playbook 'Another team'" in host.error
    assert snapshot(certificates.parent) == before


def test_a_damaged_key_is_replaced_over_ssh(fleet: SshdFleet, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    playbook, inventory, known, certificates, _outside = _setup(fleet, tmp_path)
    key_file = certificates / "web.key"
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    # The same public point with another scalar: cryptography refuses to build such a key,
    # so the PEM is made by hand from the PKCS#8 DER (the scalar's bytes, flipped).
    der = bytearray(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    at = bytes(der).index(scalar)
    der[at + 31] ^= 0x01
    key_file.write_bytes(
        b"-----BEGIN PRIVATE KEY-----\n"
        + base64.encodebytes(bytes(der))
        + b"-----END PRIVATE KEY-----\n"
    )
    loaded = load(playbook, inventory, connect=ConnectOptions(known_hosts=str(known)))
    _plan, report = run(loaded, apply=True)
    [host] = report.hosts
    assert host.status == "changed", host.error
    reasons = {c.resource: c.reason for c in host.plan.changes}
    assert reasons["certificate web"] in (
        "key is damaged: a signature made with it does not verify",
        # (OpenSSL refuses to load an EC key whose scalar does not make its point: the file
        # is unreadable then, and replaced all the same.)
        "unreadable: web.key: damaged PEM private key block",
    ), reasons
    fresh = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(fresh, ec.EllipticCurvePrivateKey)


def _swap_for_link(folder: Path, target: Path) -> None:
    for entry in folder.iterdir():
        os.replace(entry, target / entry.name)
    folder.rmdir()
    folder.symlink_to(target)


def _refused_over_ssh(host: Any, link: Path) -> None:
    assert host.status == "failed"
    assert host.error is not None and f"{link} is a symlink" in host.error, host.error
    assert "never follows a symlink" in host.error


@pytest.mark.parametrize("mode", ["plan", "apply"])
def test_a_symlinked_certificates_directory_is_not_followed_over_sftp(
    fleet: SshdFleet, tmp_path: Path, mode: str
) -> None:
    playbook, inventory, known, certificates, outside = _setup(fleet, tmp_path)
    _swap_for_link(certificates, outside)
    (outside / "web.pem").unlink()  # a change to make, were the link followed
    before, before_outside = snapshot(certificates.parent), snapshot(outside)
    loaded = load(playbook, inventory, connect=ConnectOptions(known_hosts=str(known)))
    _plan, report = run(loaded, apply=mode == "apply")
    [host] = report.hosts
    _refused_over_ssh(host, certificates)
    assert snapshot(outside) == before_outside
    assert snapshot(certificates.parent) == before


def test_a_symlinked_backup_folder_is_not_pruned_through_over_sftp(
    fleet: SshdFleet, tmp_path: Path
) -> None:
    playbook, inventory, known, certificates, outside = _setup(fleet, tmp_path)
    for index in range(12):
        (outside / f"2020010{index % 10}T00000{index:02d}000000Z").mkdir()
    _swap_for_link(certificates / ".backup", outside)
    (certificates / "web.pem").unlink()
    listing = sorted(p.name for p in outside.iterdir())
    before = snapshot(certificates.parent)
    loaded = load(playbook, inventory, connect=ConnectOptions(known_hosts=str(known)))
    _plan, report = run(loaded, apply=True)
    [host] = report.hosts
    _refused_over_ssh(host, certificates / ".backup")
    assert sorted(p.name for p in outside.iterdir()) == listing
    assert snapshot(certificates.parent) == before


def _applied_under_become(fleet: SshdFleet, tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """One sshd host reached as an unprivileged user with become, its files root's own in a
    root-owned folder, applied once: playbook, inventory, known_hosts, certificates folder."""
    [server] = fleet.start(1)
    base = Path(fleet.shared) / "become-target"
    base.mkdir(mode=0o755)
    playbook, inventory = write_project(
        tmp_path / "project",
        fleet,
        [server],
        user=BECOME_USER,
        become=True,
        roots={server.name: base},
    )
    known = known_hosts_for(tmp_path / "known_hosts", [server])
    first = apply(playbook, inventory, known_hosts=str(known))[server.name]
    assert first.status == "changed", first.error
    return playbook, inventory, known, base / "certificates"


@pytest.mark.parametrize("mode", ["plan", "apply"])
def test_a_symlinked_certificates_directory_is_not_followed_under_become(
    fleet: SshdFleet, become_user: str, tmp_path: Path, mode: str
) -> None:
    playbook, inventory, known, certificates = _applied_under_become(fleet, tmp_path)
    base = certificates.parent
    outside = base / "outside"
    outside.mkdir()
    _swap_for_link(certificates, outside)
    (outside / "web.pem").unlink()
    before_outside = snapshot(outside)
    loaded = load(playbook, inventory, connect=ConnectOptions(known_hosts=str(known)))
    _plan, report = run(loaded, apply=mode == "apply")
    [host] = report.hosts
    _refused_over_ssh(host, certificates)
    assert snapshot(outside) == before_outside


def test_the_certificates_directory_mode_is_brought_back_over_sftp(
    fleet: SshdFleet, tmp_path: Path
) -> None:
    playbook, inventory, known, certificates, _outside = _setup(fleet, tmp_path)
    assert stat.S_IMODE(certificates.stat().st_mode) == 0o750
    certificates.chmod(0o777)
    first = apply(playbook, inventory, known_hosts=str(known))
    [host] = first.values()
    assert host.status == "changed", host.error
    assert [c.reason for c in host.plan.changes] == ["mode 0777, want 0750"]
    assert stat.S_IMODE(certificates.stat().st_mode) == 0o750


def test_the_certificates_directory_mode_is_brought_back_under_become(
    fleet: SshdFleet, become_user: str, tmp_path: Path
) -> None:
    playbook, inventory, known, certificates = _applied_under_become(fleet, tmp_path)
    certificates.chmod(0o777)
    [host] = apply(playbook, inventory, known_hosts=str(known)).values()
    assert host.status == "changed", host.error
    assert [c.reason for c in host.plan.changes] == ["mode 0777, want 0750"]
    assert stat.S_IMODE(certificates.stat().st_mode) == 0o750
    assert certificates.stat().st_uid == 0
