"""Authority health (issue 18, item 2): an expired or not-yet-valid internal CA refuses to
issue, a leaf never outlives its CA, status lists authorities, lint warns ahead of time.
Judged with the openssl command line."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from thirdparty import (
    CA_PLAYBOOK,
    ENV,
    INVENTORY,
    assert_refused,
    certs_dir,
    example,
    fresh,
    openssl,
    openssl_ok,
    pem_certificates,
    plan_json,
    write_playbook,
)

from provision.crypto import build, encode, keys
from provision.crypto.build import SubjectFields

pytestmark = pytest.mark.usefixtures("openssl")

CA_FILE = "playbooks/pki/voice-root/ca.crt"


def plant_authority(project: Path, not_before: dt.datetime, days: int) -> Path:
    """An authority folder whose certificate runs from ``not_before`` for ``days``."""
    folder = fresh(project) / "playbooks" / "pki" / "voice-root"
    folder.mkdir(parents=True, mode=0o700)
    key = keys.generate("ecdsa", None, "p384")
    subject = SubjectFields(common_name="Example Voice Root CA")
    certificate = build.authority(subject, key, validity_days=days, now=not_before)
    (folder / "ca.key").write_bytes(encode.private_key_pem(key))
    (folder / "ca.key").chmod(0o600)
    (folder / "ca.crt").write_bytes(encode.certificates_pem([certificate]))
    return folder / "ca.crt"


def without_sites(project: Path) -> str:
    data: dict[str, Any] = example(project)
    del data["sites"]
    return write_playbook(project, "ca-only.yml", data)


NOW = dt.datetime.now(dt.UTC)


def test_an_expired_authority_fails_every_host_naming_its_file_and_dates(
    project: Path, cli: Any
) -> None:
    plant_authority(project, NOW - dt.timedelta(days=400), 365)  # ended 35 days ago
    playbook = without_sites(project)
    for command in ("plan", "apply"):
        result = cli(command, playbook, "-i", INVENTORY, env=ENV)
        output = assert_refused(
            result, "authority 'voice-root'", CA_FILE, "expired on", "valid from"
        )
        assert "cm-pub-01" in output
    assert not (certs_dir(project) / "httpscert.pem").exists()  # nothing issued

    status = cli("status", playbook, "-i", INVENTORY, "--format", "json", env=ENV)
    assert status.exit_code == 1
    rows = json.loads(status.stdout)["authorities"]
    assert [r["authority"] for r in rows] == ["voice-root"]
    assert rows[0]["file"].endswith(CA_FILE) and rows[0]["days_left"] < 0
    assert "expired on" in rows[0]["problem"]

    lint = cli("lint", playbook, "-i", INVENTORY, "--format", "json", env=ENV)
    findings = [f for f in json.loads(lint.stdout)["findings"] if f["rule"] == "authority-expiry"]
    assert len(findings) == 1 and findings[0]["file"].endswith("ca-only.yml")
    assert findings[0]["line"] and CA_FILE in findings[0]["message"]


def test_a_not_yet_valid_authority_refuses_too(project: Path, cli: Any) -> None:
    plant_authority(project, NOW + dt.timedelta(days=2), 365)
    result = cli("plan", without_sites(project), "-i", INVENTORY, env=ENV)
    assert_refused(result, CA_FILE, "is not valid until")


def test_a_leaf_is_cut_at_its_authoritys_end_and_the_plan_says_so(project: Path, cli: Any) -> None:
    ca = plant_authority(project, NOW - dt.timedelta(days=300), 400)  # 100 days left
    playbook = without_sites(project)
    document = plan_json(cli, playbook)
    reasons = [c["reason"] for c in document["hosts"]["cm-pub-01"]["changes"]]
    capped = [r for r in reasons if "validity capped at the authority's expiry" in r]
    assert capped and "not 397" in capped[0], reasons

    assert cli("apply", playbook, "-i", INVENTORY, env=ENV).exit_code == 0
    leaf = pem_certificates(certs_dir(project) / "httpscert.pem")[0]
    authority = pem_certificates(ca)[0]
    assert leaf.not_valid_after_utc == authority.not_valid_after_utc
    fullchain = certs_dir(project) / "httpscert.pem"
    openssl("verify", "-CAfile", ca, fullchain)
    # At the authority's last hour the leaf still verifies (it never outlives it).
    last = authority.not_valid_after_utc - dt.timedelta(hours=1)
    ok, text = openssl_ok("verify", "-attime", str(int(last.timestamp())), "-CAfile", ca, fullchain)
    assert ok, text

    # A second run does not churn: the cut leaf is left alone, even inside its renewal window.
    again = plan_json(cli, playbook)
    assert not again["hosts"]["cm-pub-01"]["changes"], again["hosts"]["cm-pub-01"]

    status = cli("status", playbook, "-i", INVENTORY, env=ENV)
    assert status.exit_code == 0, status.stdout
    assert "voice-root" in status.stdout and "in 99 days" in status.stdout

    lint = cli("lint", playbook, "-i", INVENTORY, "--format", "json", env=ENV)
    findings = [f for f in json.loads(lint.stdout)["findings"] if f["rule"] == "authority-expiry"]
    assert len(findings) == 1, lint.stdout
    assert CA_FILE in findings[0]["message"] and "397 days" in findings[0]["message"]


def test_lint_flags_an_authority_to_create_shorter_than_its_leaves(project: Path, cli: Any) -> None:
    fresh(project)
    data = example(project)
    data["authorities"][0]["validity_days"] = 200
    playbook = write_playbook(project, "short.yml", data)
    lint = cli("lint", playbook, "-i", INVENTORY, "--format", "json", env=ENV)
    findings = [f for f in json.loads(lint.stdout)["findings"] if f["rule"] == "authority-expiry"]
    assert len(findings) == 1 and findings[0]["key"].endswith("validity_days"), lint.stdout
    text = (project / "playbooks" / "short.yml").read_text().splitlines()
    assert "validity_days: 200" in text[findings[0]["line"] - 1]


def test_a_healthy_authority_is_not_flagged(project: Path, cli: Any) -> None:
    fresh(project)
    lint = cli("lint", CA_PLAYBOOK, "-i", INVENTORY, "--format", "json", env=ENV)
    assert "authority-expiry" not in lint.stdout
