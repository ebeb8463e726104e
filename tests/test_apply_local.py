"""The example playbook applied on the local transport, checked with the openssl command line."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Cli, require_tool, run_openssl, snapshot
from cryptography import x509

PLAYBOOK = "playbooks/callmanager-https.yml"
INVENTORY = "inventory/example.yml"
HOSTS = {"cm-pub-01": "10.10.0.11", "cm-sub-01": "10.10.0.12", "cm-sub-02": "10.10.0.13"}
FIRST_RUN = [
    ("certificate httpscert", "create", "missing"),
    ("file httpscert.cer", "create", "missing"),
    ("file httpscert.pem", "create", "missing"),
    ("file httpscert.key", "create", "missing"),
    ("site Default Web Site", "create", "missing"),
]


def certificates(project: Path, host: str) -> Path:
    return project / ".provision" / "fleet" / host / "certificates"


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The example applied once in a project of its own, shared by the read-only checks."""
    require_tool("openssl")
    project = tmp_path_factory.mktemp("applied")
    for folder in ("playbooks", "inventory", "templates"):
        shutil.copytree(ROOT / folder, project / folder)
    result = Cli(project)("apply", PLAYBOOK, "-i", INVENTORY)
    assert result.exit_code == 0, result.stderr
    yield project, result.stdout


def test_first_apply_recap(applied: tuple[Path, str]) -> None:
    _, stdout = applied
    assert stdout.endswith("\nRecap: ok 0, changed 3, failed 0\n")
    for host in HOSTS:
        assert f"{host}: changed\n" in stdout
    assert stdout.count("  create   certificate httpscert") == 3


def test_every_host_has_its_files(applied: tuple[Path, str]) -> None:
    project, _ = applied
    for host in HOSTS:
        folder = certificates(project, host)
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name[0] != ".")
        assert names == ["httpscert.cer", "httpscert.key", "httpscert.pem"]
        assert (
            project / ".provision" / "fleet" / host / "nginx" / "default-web-site.conf"
        ).is_file()
    # Nothing outside .provision/ was written.
    assert sorted(p.name for p in project.iterdir()) == [
        ".provision",
        "inventory",
        "playbooks",
        "templates",
    ]


@pytest.mark.parametrize("host", list(HOSTS))
def test_der_certificate_per_openssl(applied: tuple[Path, str], host: str) -> None:
    project, _ = applied
    text = run_openssl(
        "x509",
        "-inform",
        "DER",
        "-in",
        str(certificates(project, host) / "httpscert.cer"),
        "-noout",
        "-text",
    )
    fqdn = f"{host}.voice.example.com"
    san = re.search(r"X509v3 Subject Alternative Name: *\n *(.+)\n", text)
    assert san is not None, text
    assert san.group(1).strip() == (
        f"DNS:{fqdn}, DNS:{host}, IP Address:{HOSTS[host]}, DNS:localhost, IP Address:127.0.0.1"
    )
    eku = re.search(r"X509v3 Extended Key Usage: *\n *(.+)\n", text)
    assert eku is not None and "TLS Web Server Authentication" in eku.group(1)
    assert f"Subject: O = Example Voice Operations, CN = {fqdn}\n" in text
    assert f"Issuer: O = Example Voice Operations, CN = {fqdn}\n" in text  # self-signed
    assert "Public-Key: (2048 bit)" in text
    assert "CA:FALSE" in text


@pytest.mark.parametrize("host", list(HOSTS))
def test_key_matches_certificate(applied: tuple[Path, str], host: str) -> None:
    project, _ = applied
    folder = certificates(project, host)
    from_key = run_openssl("pkey", "-in", str(folder / "httpscert.key"), "-pubout")
    from_cert = run_openssl("x509", "-in", str(folder / "httpscert.pem"), "-pubkey", "-noout")
    assert from_key.startswith("-----BEGIN PUBLIC KEY-----")
    assert from_key == from_cert


def test_the_keys_differ_between_hosts(applied: tuple[Path, str]) -> None:
    project, _ = applied
    keys = {(certificates(project, h) / "httpscert.key").read_bytes() for h in HOSTS}
    assert len(keys) == 3


@pytest.mark.parametrize("host", list(HOSTS))
def test_pem_and_der_are_the_same_self_signed_certificate(
    applied: tuple[Path, str], host: str
) -> None:
    project, _ = applied
    folder = certificates(project, host)
    der = subprocess.run(
        ["openssl", "x509", "-in", str(folder / "httpscert.pem"), "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout
    assert der == (folder / "httpscert.cer").read_bytes()
    verified = run_openssl(
        "verify",
        "-CAfile",
        str(folder / "httpscert.pem"),
        "-purpose",
        "sslserver",
        str(folder / "httpscert.pem"),
    )
    assert verified.strip().endswith(": OK")
    leaf = x509.load_der_x509_certificate(der)
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert abs(lifetime - dt.timedelta(days=825)) <= dt.timedelta(days=1)
    assert leaf.not_valid_before_utc <= dt.datetime.now(dt.UTC)


@pytest.mark.parametrize("host", list(HOSTS))
def test_file_modes(applied: tuple[Path, str], host: str) -> None:
    project, _ = applied
    folder = certificates(project, host)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(folder / "httpscert.key") == 0o600
    assert mode(folder / "httpscert.cer") == 0o644
    assert mode(folder / "httpscert.pem") == 0o644
    assert mode(folder) & 0o007 == 0  # the folder holding keys is not world-accessible


def test_rendered_site_points_at_the_files(applied: tuple[Path, str]) -> None:
    project, _ = applied
    conf = (project / ".provision/fleet/cm-sub-01/nginx/default-web-site.conf").read_text()
    folder = certificates(project, "cm-sub-01")
    assert f"ssl_certificate     {folder / 'httpscert.pem'};\n" in conf
    assert f"ssl_certificate_key {folder / 'httpscert.key'};\n" in conf
    assert "listen 443 ssl;" in conf
    assert conf.count("location = /") == 11
    www = project / ".provision/fleet/cm-sub-01/www"
    assert f"alias {www}/CCMAdmin/;" in conf
    assert "cm-pub-01" not in conf


# --- the whole cycle, in a project of its own -------------------------------------------------


def assert_summary(document: dict[str, Any], expected: dict[str, int]) -> None:
    """ok/changed/failed as expected; any other counter (skipped, ...) is zero here."""
    summary = document["summary"]
    assert {key: summary[key] for key in expected} == expected
    assert all(value == 0 for key, value in summary.items() if key not in expected), summary


def changes_of(document: dict[str, Any], host: str) -> list[tuple[str, str, str]]:
    return [(c["resource"], c["action"], c["reason"]) for c in document["hosts"][host]["changes"]]


def test_plan_apply_plan_apply(project: Path, cli: Cli) -> None:
    # Before: plan shows every change, exits 2 with --detailed-exitcode, and writes nothing.
    result = cli("plan", PLAYBOOK, "-i", INVENTORY, "--detailed-exitcode")
    assert result.exit_code == 2, result.stderr
    assert result.stdout.endswith("\nPlan: 3 hosts, 3 to change, 0 failed.\n")
    result = cli("plan", PLAYBOOK, "-i", INVENTORY, "--format", "json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert_summary(document, {"ok": 0, "changed": 3, "failed": 0})
    assert list(document["hosts"]) == list(HOSTS)
    for host in HOSTS:
        assert document["hosts"][host]["status"] == "changed"
        assert changes_of(document, host) == FIRST_RUN
        for change in document["hosts"][host]["changes"]:
            assert {"resource", "action", "reason"} <= set(change)
            assert "BEGIN" not in json.dumps(change)  # a plan never carries key material
    result = cli("apply", PLAYBOOK, "-i", INVENTORY, "--check")
    assert result.exit_code == 0
    assert not (project / ".provision").exists()

    # Apply.
    result = cli("apply", PLAYBOOK, "-i", INVENTORY, "--format", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert_summary(document, {"ok": 0, "changed": 3, "failed": 0})
    for host in HOSTS:
        assert document["hosts"][host]["status"] == "changed"
        assert changes_of(document, host) == FIRST_RUN
    before = snapshot(project / ".provision")
    assert len(before) >= 12

    # After: nothing to do, and plan says so with exit 0.
    result = cli("plan", PLAYBOOK, "-i", INVENTORY, "--detailed-exitcode")
    assert result.exit_code == 0, result.stdout
    assert result.stdout.endswith("\nPlan: 3 hosts, 0 to change, 0 failed.\n")
    assert "cm-pub-01: no changes\n" in result.stdout

    # A second apply changes nothing: same bytes, same modes, same mtimes.
    result = cli("apply", PLAYBOOK, "-i", INVENTORY)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.endswith("\nRecap: ok 3, changed 0, failed 0\n")
    result = cli("apply", PLAYBOOK, "-i", INVENTORY, "--format", "json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert_summary(document, {"ok": 3, "changed": 0, "failed": 0})
    for host in HOSTS:
        assert document["hosts"][host]["status"] == "ok"
        assert document["hosts"][host]["changes"] == []
        unchanged = {u["resource"]: u["reason"] for u in document["hosts"][host]["unchanged"]}
        assert re.fullmatch(
            r"valid until \d{4}-\d\d-\d\d \d\d:\d\d UTC", unchanged["certificate httpscert"]
        )
        assert unchanged["file httpscert.key"] == "up to date"
        assert unchanged["site Default Web Site"] == "rendered config is up to date"
    assert snapshot(project / ".provision") == before


def test_apply_one_host_then_the_rest(project: Path, cli: Cli) -> None:
    result = cli("apply", PLAYBOOK, "-i", INVENTORY, "--limit", "cm-pub-01")
    assert result.exit_code == 0
    assert result.stdout.endswith("\nRecap: ok 0, changed 1, failed 0\n")
    first = snapshot(project / ".provision")
    result = cli("apply", PLAYBOOK, "-i", INVENTORY, "--format", "json")
    document = json.loads(result.stdout)
    assert_summary(document, {"ok": 1, "changed": 2, "failed": 0})
    assert document["hosts"]["cm-pub-01"]["status"] == "ok"
    after = snapshot(project / ".provision")
    assert {k: v for k, v in after.items() if k.startswith("fleet/cm-pub-01/")} == first


def test_mounting_subcommands_is_idempotent() -> None:
    """Tests run the CLI in-process hundreds of times: each call must cost the same."""
    from provision.cli import _mount_subcommands, app

    _mount_subcommands()
    count = len(app.registered_groups)
    _mount_subcommands()
    _mount_subcommands()
    assert len(app.registered_groups) == count
