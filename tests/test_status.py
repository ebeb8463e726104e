"""`provision status`: every host's certificates, soonest expiry first; exit 1 if one is
missing, expired or does not cover a name of the playbook.

The fleet is staggered: cm-sub-02 is applied first with a 100-day certificate, the other two
with the example's 825 days, so the order by expiry differs from the inventory's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Cli
from cryptography import x509

from provision.api import load
from provision.report.document import CertificateEntry
from provision.status import fleet_status

PLAYBOOK = "playbooks/callmanager-https.yml"
INVENTORY = "inventory/example.yml"
ENVELOPE = ["kind", "shard", "limit", "playbook", "inventory"]
HOSTS = ("cm-pub-01", "cm-sub-01", "cm-sub-02")
SHORT = "cm-sub-02"  # the host with the 100-day certificate
FIELDS = {"host", "certificate", "issuer", "not_after", "days_left", "names_missing"}


def leaf(project: Path, host: str) -> x509.Certificate:
    path = project / ".provision" / "fleet" / host / "certificates" / "httpscert.cer"
    return x509.load_der_x509_certificate(path.read_bytes())


def expected_days(cert: x509.Certificate, now: dt.datetime) -> float:
    return (cert.not_valid_after_utc - now) / dt.timedelta(days=1)


def set_in_playbook(project: Path, old: str, new: str) -> None:
    path = project / PLAYBOOK
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture
def staggered(project: Path, cli: Cli) -> Path:
    set_in_playbook(project, "validity_days: 825", "validity_days: 100")
    first = cli("apply", PLAYBOOK, "-i", INVENTORY, "--limit", SHORT)
    assert first.exit_code == 0, first.stdout + first.stderr
    set_in_playbook(project, "validity_days: 100", "validity_days: 825")
    rest = cli("apply", PLAYBOOK, "-i", INVENTORY, "--limit", "cm-pub-01,cm-sub-01")
    assert rest.exit_code == 0, rest.stdout + rest.stderr
    assert rest.stdout.endswith("Recap: ok 0, changed 2, failed 0\n"), rest.stdout
    return project


@pytest.fixture
def in_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The api resolves the example's relative paths against the current folder."""
    monkeypatch.chdir(project)
    yield project


def status_json(cli: Cli) -> tuple[int, list[dict[str, object]]]:
    result = cli("status", PLAYBOOK, "-i", INVENTORY, "--format", "json")
    document = json.loads(result.stdout)
    assert list(document) == [
        "schema_version",
        *ENVELOPE[:2],
        "merged_shards",
        *ENVELOPE[2:],
        "generated_at",
        "certificates",
        "authorities",
        "hosts",
        "summary",
    ]
    rows: list[dict[str, object]] = document["certificates"]
    return result.exit_code, rows


def table_rows(stdout: str) -> list[list[str]]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines[0].split() == ["host", "certificate", "issuer", "expires", "names"], lines[0]
    return [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]


# --- before any apply -----------------------------------------------------------------------


def test_before_apply_every_certificate_is_missing(project: Path, cli: Cli) -> None:
    result = cli("status", PLAYBOOK, "-i", INVENTORY)
    assert result.exit_code == 1, result.stdout + result.stderr
    rows = table_rows(result.stdout)
    assert [r[0] for r in rows] == list(HOSTS)
    for row in rows:
        assert row[1:] == ["httpscert", "-", "missing", "-"], row
    code, data = status_json(cli)
    assert code == 1
    assert [(r["host"], r["certificate"]) for r in data] == [(h, "httpscert") for h in HOSTS]
    for r in data:
        assert r["problem"] == "missing"
        assert r["issuer"] is None and r["not_after"] is None and r["days_left"] is None
    assert not (project / ".provision").exists()  # status reads, never writes


# --- after apply ----------------------------------------------------------------------------


def test_after_apply_table_sorted_by_expiry(staggered: Path, cli: Cli) -> None:
    now = dt.datetime.now(dt.UTC)
    result = cli("status", PLAYBOOK, "-i", INVENTORY)
    assert result.exit_code == 0, result.stdout + result.stderr
    rows = table_rows(result.stdout)
    assert [r[0] for r in rows] == [SHORT, "cm-pub-01", "cm-sub-01"]
    days = []
    for host, certificate, issuer, expires, names in rows:
        assert certificate == "httpscert"
        assert issuer == f"CN={host}.voice.example.com,O=Example Voice Operations"
        match = re.fullmatch(r"in (\d+) days", expires)
        assert match, expires
        days.append(int(match.group(1)))
        assert abs(days[-1] - expected_days(leaf(staggered, host), now)) <= 1
        assert names == "covered"
    assert days == sorted(days)
    assert days[0] in (99, 100) and days[1] in (824, 825)


def test_after_apply_json(staggered: Path, cli: Cli) -> None:
    now = dt.datetime.now(dt.UTC)
    code, data = status_json(cli)
    assert code == 0
    assert [r["host"] for r in data] == [SHORT, "cm-pub-01", "cm-sub-01"]
    for r in data:
        assert set(r) >= FIELDS, r
        host = str(r["host"])
        cert = leaf(staggered, host)
        assert r["certificate"] == "httpscert"
        assert r["issuer"] == cert.issuer.rfc4514_string()
        assert r["not_after"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert isinstance(r["days_left"], int)
        assert abs(r["days_left"] - math.floor(expected_days(cert, now))) <= 1
        assert r["names_missing"] == []
        assert r["problem"] is None
    lefts = [r["days_left"] for r in data]
    assert lefts == sorted(lefts)  # type: ignore[type-var]


def test_a_name_added_to_the_playbook_is_missing_everywhere(staggered: Path, cli: Cli) -> None:
    set_in_playbook(staggered, "localhost, 127.0.0.1]", "localhost, 127.0.0.1, new.example.com]")
    result = cli("status", PLAYBOOK, "-i", INVENTORY)
    assert result.exit_code == 1, result.stdout + result.stderr
    rows = table_rows(result.stdout)
    assert sorted(r[0] for r in rows) == sorted(HOSTS)
    for row in rows:
        assert row[-1] == "missing: new.example.com", row
        assert row[3].startswith("in ")  # not expired, only a name missing
    code, data = status_json(cli)
    assert code == 1
    assert sorted(str(r["host"]) for r in data) == sorted(HOSTS)
    for r in data:
        assert r["names_missing"] == ["new.example.com"], r
        assert r["problem"] is None


# --- expiry, with the clock moved forward ---------------------------------------------------


def rows_at(now: dt.datetime) -> list[CertificateEntry]:
    loaded = load(PLAYBOOK, INVENTORY)
    return asyncio.run(fleet_status(loaded, now=now))


def test_expired_certificate_leads_with_a_problem(staggered: Path, in_project: Path) -> None:
    now = dt.datetime.now(dt.UTC) + dt.timedelta(days=200)
    rows = rows_at(now)
    assert [r.host for r in rows] == [SHORT, "cm-pub-01", "cm-sub-01"]
    expired, *valid = rows
    assert expired.days_left is not None and expired.days_left < 0
    assert abs(expired.days_left - expected_days(leaf(staggered, SHORT), now)) <= 1
    assert expired.problem == f"expired {-expired.days_left} days ago"
    assert expired.bad and expired.names_missing == []
    for row in valid:
        assert row.days_left is not None and 600 < row.days_left < 630
        assert row.problem is None and not row.bad


def test_everything_expired_far_in_the_future(staggered: Path, in_project: Path) -> None:
    now = dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)
    rows = rows_at(now)
    assert [r.host for r in rows] == [SHORT, "cm-pub-01", "cm-sub-01"]
    lefts = [r.days_left for r in rows]
    assert all(d is not None and d < 0 for d in lefts)
    assert lefts == sorted(lefts)  # type: ignore[type-var]
    for row in rows:
        assert row.problem == f"expired {-row.days_left} days ago"  # type: ignore[operator]
        assert row.bad


def test_missing_rows_lead_expired_ones(staggered: Path, in_project: Path) -> None:
    (staggered / ".provision" / "fleet" / "cm-sub-01" / "certificates" / "httpscert.cer").unlink()
    (staggered / ".provision" / "fleet" / "cm-sub-01" / "certificates" / "httpscert.pem").unlink()
    rows = rows_at(dt.datetime.now(dt.UTC) + dt.timedelta(days=200))
    assert [r.host for r in rows] == ["cm-sub-01", SHORT, "cm-pub-01"]
    assert rows[0].days_left is None and rows[0].problem is not None and rows[0].bad
    assert rows[1].problem is not None and rows[1].problem.startswith("expired ")


def test_table_shows_expired_rows(
    staggered: Path, in_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from provision.cli.run import _status_table

    rows = rows_at(dt.datetime.now(dt.UTC) + dt.timedelta(days=200))
    capsys.readouterr()
    _status_table(rows)
    shown = table_rows(capsys.readouterr().out)
    assert shown[0][0] == SHORT
    assert re.fullmatch(r"expired \d+ days ago", shown[0][3]), shown[0]
    assert shown[0][3] == rows[0].problem
    assert all(re.fullmatch(r"in \d+ days", row[3]) for row in shown[1:])
