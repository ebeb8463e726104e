"""Renewal and key rotation, with the clock moved forward through `provision.api` (`now=`),
and supplied certificates that expire too soon."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot
from thirdparty import (
    CA_PLAYBOOK,
    ENV,
    INVENTORY,
    SELF_SIGNED,
    Corp,
    assert_refused,
    certs_dir,
    example,
    fresh,
    openssl,
    plan_json,
    provided_playbook,
    public_key_of,
    shared_corp,
    supply,
    write_playbook,
)

from provision import api
from provision.api import HostReport

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="session")
def corp(openssl: str, tmp_path_factory: pytest.TempPathFactory) -> Corp:
    return shared_corp(tmp_path_factory)


@pytest.fixture
def here(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The api resolves the inventory's relative certificates_dir from the current folder."""
    fresh(project)
    monkeypatch.chdir(project)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return project


def run_at(playbook: str, now: dt.datetime, *, apply: bool) -> HostReport:
    loaded = api.load(playbook, INVENTORY, limit="cm-pub-01", now=now)
    _, report = api.run(loaded, apply=apply, now=now)
    (host,) = report.hosts
    assert host.status != "failed", host.error
    return host


def certificate_change(host: HostReport) -> tuple[str, str] | None:
    for change in host.plan.changes:
        if change.resource == "certificate httpscert":
            return change.action, change.reason
    return None


def verify_at(project: Path, moment: dt.datetime) -> None:
    ca = project / "playbooks" / "pki" / "voice-root" / "ca.crt"
    openssl(
        "verify",
        "-attime",
        str(int(moment.timestamp())),
        "-CAfile",
        ca,
        certs_dir(project) / "httpscert.pem",
    )


def rotate(project: Path, policy: str) -> str:
    data = example(project)
    data["certificates"][0]["key"]["rotate"] = policy
    return write_playbook(project, f"rotate-{policy}.yml", data)


@pytest.mark.parametrize("policy", ["always", "never"])
def test_renewal_window_reissues(here: Path, policy: str) -> None:
    playbook = rotate(here, policy)  # validity_days 397, renew_before_days 30
    assert run_at(playbook, T0, apply=True).status == "changed"
    key = certs_dir(here) / "httpscert.key"
    old_key, old_leaf = public_key_of(key), (certs_dir(here) / "httpscert.pem").read_bytes()
    key_state = snapshot(certs_dir(here))["httpscert.key"]

    assert certificate_change(run_at(playbook, T0 + 360 * DAY, apply=False)) is None
    later = T0 + 380 * DAY
    planned = certificate_change(run_at(playbook, later, apply=False))
    assert planned is not None
    action, reason = planned
    assert action == "update"
    match = re.fullmatch(r"expires in (\d+) days \(< 30\)", reason)
    assert match, reason
    assert int(match.group(1)) in (16, 17)

    host = run_at(playbook, later, apply=True)
    assert host.status == "changed"
    assert (certs_dir(here) / "httpscert.pem").read_bytes() != old_leaf
    verify_at(here, later)
    if policy == "always":
        assert public_key_of(key) != old_key
    else:
        assert public_key_of(key) == old_key
        assert snapshot(certs_dir(here))["httpscert.key"] == key_state  # not even rewritten
    # The PFX carries the key the .key file holds.
    pfx_key = openssl(
        "pkey",
        "-pubout",
        input=openssl(
            "pkcs12",
            "-in",
            certs_dir(here) / "httpscert.pfx",
            "-passin",
            "env:PFX_PASSWORD",
            "-nocerts",
            "-nodes",
        ),
    )
    assert pfx_key == openssl("pkey", "-in", key, "-pubout")

    settled = run_at(playbook, later, apply=False)
    assert not settled.plan.changes
    # Reissued at `later` (backdated an hour) for 397 days: the reason names the new date.
    until = (later - dt.timedelta(hours=1) + 397 * DAY).strftime("%Y-%m-%d %H:%M UTC")
    assert f"valid until {until}" in [u.reason for u in settled.plan.unchanged]


def test_expired_certificate_is_renewed(here: Path) -> None:
    assert run_at(SELF_SIGNED, T0, apply=True).status == "changed"
    later = T0 + 830 * DAY  # validity_days 825
    planned = certificate_change(run_at(SELF_SIGNED, later, apply=False))
    assert planned is not None
    assert planned[0] == "update"
    assert re.fullmatch(r"expired \d+ days ago", planned[1]), planned[1]
    assert run_at(SELF_SIGNED, later, apply=True).status == "changed"
    assert certificate_change(run_at(SELF_SIGNED, later, apply=False)) is None


def test_provided_certificate_expiring_soon_fails_the_host(
    project: Path, cli: Any, corp: Corp
) -> None:
    fresh(project)
    first = cli("apply", SELF_SIGNED, "-i", INVENTORY, "-l", "cm-pub-01")
    assert first.exit_code == 0
    before = snapshot(project / ".provision")
    assert corp.expiring_soon is not None
    supply(project, corp.expiring_soon.pem, "cm-pub-01.cer")
    supply(project, corp.expiring_soon.key, "cm-pub-01.key")
    supply(project, corp.chain, "corp-ca-chain.pem")
    playbook = provided_playbook(
        project,
        {
            "certificate": "files/cm-pub-01.cer",
            "key": "files/cm-pub-01.key",
            "chain": "files/corp-ca-chain.pem",
        },
    )
    document = plan_json(cli, playbook, "-l", "cm-pub-01", expect=1)
    host = document["hosts"]["cm-pub-01"]
    assert host["status"] == "failed"
    assert "files/cm-pub-01.cer expires in 10 days (< 30)" in host["error"]
    assert "supply a renewed certificate" in host["error"]
    result = cli("apply", playbook, "-i", INVENTORY, "-l", "cm-pub-01", env=ENV)
    assert_refused(
        result, "cm-pub-01: failed", "expires in 10 days (< 30)", "supply a renewed certificate"
    )
    assert snapshot(project / ".provision") == before


def test_provided_certificate_enters_the_renewal_window(here: Path, corp: Corp) -> None:
    """The same check with the clock moved: installed at T0, refused 380 days later."""
    leaf = corp.hosts["cm-pub-01"]
    supply(here, leaf.pem, "cm-pub-01.cer")
    supply(here, leaf.key, "cm-pub-01.key")
    supply(here, corp.chain, "corp-ca-chain.pem")
    playbook = provided_playbook(
        here,
        {
            "certificate": "files/cm-pub-01.cer",
            "key": "files/cm-pub-01.key",
            "chain": "files/corp-ca-chain.pem",
        },
    )
    assert run_at(playbook, T0, apply=True).status == "changed"
    before = snapshot(here / ".provision")
    later = T0 + 380 * DAY
    loaded = api.load(playbook, INVENTORY, limit="cm-pub-01", now=later)
    _, report = api.run(loaded, apply=True, now=later)
    (host,) = report.hosts
    assert host.status == "failed"
    assert host.error is not None
    assert re.search(r"expires in 1[5-7] days \(< 30\)", host.error), host.error
    assert "supply a renewed certificate" in host.error
    assert snapshot(here / ".provision") == before


def test_validity_not_longer_than_renew_before_is_a_validation_error(
    project: Path, cli: Any
) -> None:
    fresh(project)
    data = example(project, "callmanager-https.yml")
    data["certificates"][0].update(validity_days=30, renew_before_days=30)
    playbook = write_playbook(project, "too-short.yml", data)
    for command in ("validate", "plan", "apply"):
        result = cli(command, playbook, "-i", INVENTORY)
        assert_refused(
            result,
            "playbooks/too-short.yml",
            "validity_days (30) must be longer than renew_before_days (30)",
        )
    assert not (project / ".provision").exists()


def test_ca_playbook_renewal_keeps_the_authority(here: Path) -> None:
    assert run_at(CA_PLAYBOOK, T0, apply=True).status == "changed"
    ca = (here / "playbooks" / "pki" / "voice-root" / "ca.crt").read_bytes()
    later = T0 + 380 * DAY
    assert run_at(CA_PLAYBOOK, later, apply=True).status == "changed"
    assert (here / "playbooks" / "pki" / "voice-root" / "ca.crt").read_bytes() == ca
    assert int((here / "playbooks" / "pki" / "voice-root" / "serial").read_text(), 16) == 3
    verify_at(here, later)
