"""Why a certificate or file is (re)written: every reason, as `plan` reports it, and apply
settling each one so that the next plan is empty.

One host of the example (cm-pub-01) keeps each test to one or two RSA keys.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Cli, snapshot
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from provision import api

PLAYBOOK = "playbooks/callmanager-https.yml"
INVENTORY = "inventory/example.yml"
HOST = "cm-pub-01"
FQDN = "cm-pub-01.voice.example.com"
SUBJECT = f"CN={FQDN},O=Example Voice Operations"
REISSUED = [
    ("file httpscert.cer", "update", "certificate httpscert is reissued"),
    ("file httpscert.pem", "update", "certificate httpscert is reissued"),
    ("file httpscert.key", "update", "certificate httpscert is reissued"),
]

Change = tuple[str, str, str]


@dataclass
class Fleet:
    """The example applied to cm-pub-01 in a temporary project."""

    project: Path
    cli: Cli

    @property
    def certs(self) -> Path:
        return self.project / ".provision" / "fleet" / HOST / "certificates"

    @property
    def conf(self) -> Path:
        return self.project / ".provision" / "fleet" / HOST / "nginx" / "default-web-site.conf"

    def plan(self) -> list[Change]:
        result = self.cli("plan", PLAYBOOK, "-i", INVENTORY, "-l", HOST, "--format", "json")
        assert result.exit_code == 0, result.stderr
        document = json.loads(result.stdout)
        return [
            (c["resource"], c["action"], c["reason"]) for c in document["hosts"][HOST]["changes"]
        ]

    def apply(self) -> str:
        result = self.cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", HOST)
        assert result.exit_code == 0, result.stderr + result.stdout
        assert result.stdout.endswith("Recap: ok 0, changed 1, failed 0\n"), result.stdout
        return result.stdout

    def settle(self) -> None:
        """Apply, then prove the host is settled: the next plan is empty."""
        self.apply()
        assert self.plan() == []

    def edit(self, old: str, new: str) -> None:
        path = self.project / PLAYBOOK
        text = path.read_text()
        assert text.count(old) == 1, old
        path.write_text(text.replace(old, new))

    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.certs / "httpscert.pem").read_bytes())

    def key(self) -> object:
        return serialization.load_pem_private_key((self.certs / "httpscert.key").read_bytes(), None)

    def key_matches(self) -> bool:
        public = self.key().public_key()  # type: ignore[attr-defined]
        return public == self.leaf().public_key()  # type: ignore[no-any-return]

    def files(self) -> dict[str, tuple[bytes, int, int]]:
        return {k: v for k, v in snapshot(self.certs).items() if not k.startswith(".")}


@pytest.fixture
def fleet(project: Path, cli: Cli) -> Fleet:
    fleet = Fleet(project, cli)
    assert fleet.plan() == [
        ("certificate httpscert", "create", "missing"),
        ("file httpscert.cer", "create", "missing"),
        ("file httpscert.pem", "create", "missing"),
        ("file httpscert.key", "create", "missing"),
        ("site Default Web Site", "create", "missing"),
    ]
    fleet.settle()
    return fleet


@pytest.fixture
def at_project(project: Path) -> Iterator[None]:
    """The api resolves relative paths from the current folder, as the CLI does."""
    old = Path.cwd()
    os.chdir(project)
    try:
        yield
    finally:
        os.chdir(old)


def api_run(now: dt.datetime, *, apply: bool = False) -> tuple[list[Change], list[str]]:
    loaded = api.load(PLAYBOOK, INVENTORY, limit=HOST, now=now)
    _, report = api.run(loaded, apply=apply, now=now)
    [host] = report.hosts
    assert host.error is None, host.error
    changes = [(c.resource, c.action, c.reason) for c in host.plan.changes]
    return changes, [u.reason for u in host.plan.unchanged]


# --- the certificate itself -------------------------------------------------------------------


def test_certificate_missing_keeps_the_key(fleet: Fleet) -> None:
    key = (fleet.certs / "httpscert.key").read_bytes()
    (fleet.certs / "httpscert.cer").unlink()
    (fleet.certs / "httpscert.pem").unlink()
    changes = fleet.plan()
    assert changes[:3] == [
        ("certificate httpscert", "create", "certificate missing"),
        ("file httpscert.cer", "create", "missing"),
        ("file httpscert.pem", "create", "missing"),
    ]
    # The key file holds the key that is kept: it may be rewritten, never with other bytes.
    assert set(changes[3:]) <= {
        ("file httpscert.key", "update", "certificate httpscert is reissued")
    }
    fleet.settle()
    assert (fleet.certs / "httpscert.key").read_bytes() == key
    assert fleet.key_matches()


def test_key_missing(fleet: Fleet) -> None:
    old = fleet.leaf()
    (fleet.certs / "httpscert.key").unlink()
    assert fleet.plan() == [
        ("certificate httpscert", "replace", "key missing"),
        ("file httpscert.cer", "update", "certificate httpscert is reissued"),
        ("file httpscert.pem", "update", "certificate httpscert is reissued"),
        ("file httpscert.key", "create", "missing"),
    ]
    fleet.settle()
    assert fleet.key_matches()
    assert fleet.leaf().public_key() != old.public_key()


def test_key_does_not_match_certificate(fleet: Fleet) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    (fleet.certs / "httpscert.key").write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert fleet.plan() == [
        ("certificate httpscert", "replace", "key does not match certificate"),
        *REISSUED,
    ]
    fleet.settle()
    assert fleet.key_matches()
    assert isinstance(fleet.key(), rsa.RSAPrivateKey)  # the playbook's type, not the intruder's


def test_key_unreadable_says_so(fleet: Fleet) -> None:
    """A key file that is there but cannot be read is not "missing": the plan says which."""
    (fleet.certs / "httpscert.key").write_text("garbage\n")
    [first, *rest] = fleet.plan()
    assert first[:2] == ("certificate httpscert", "replace")
    assert first[2].startswith("unreadable: httpscert.key"), first
    assert rest == REISSUED
    fleet.settle()
    assert fleet.key_matches()


def test_key_type_changed(fleet: Fleet) -> None:
    fleet.edit("key: {type: rsa, size: 2048}", "key: {type: ecdsa, curve: p256}")
    assert fleet.plan() == [
        ("certificate httpscert", "replace", "key changed: rsa-2048 -> ecdsa-p256"),
        *REISSUED,
    ]
    fleet.settle()
    key = fleet.key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    assert fleet.key_matches()


def test_key_size_changed(fleet: Fleet) -> None:
    fleet.edit("size: 2048", "size: 3072")
    assert fleet.plan()[0] == (
        "certificate httpscert",
        "replace",
        "key changed: rsa-2048 -> rsa-3072",
    )


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (
            "localhost, 127.0.0.1]",
            "localhost, 127.0.0.1, new.example.com]",
            "names changed: +new.example.com",
        ),
        ("localhost, 127.0.0.1]", "127.0.0.1]", "names changed: -localhost"),
        (
            "localhost, 127.0.0.1]",
            'new.example.com, 127.0.0.1, "::1"]',
            "names changed: +new.example.com +::1 -localhost",
        ),
    ],
)
def test_names_changed(fleet: Fleet, old: str, new: str, reason: str) -> None:
    fleet.edit(old, new)
    assert fleet.plan() == [("certificate httpscert", "replace", reason), *REISSUED]


def test_names_changed_settles(fleet: Fleet) -> None:
    fleet.edit("localhost, 127.0.0.1]", "localhost, 127.0.0.1, new.example.com]")
    fleet.settle()
    san = fleet.leaf().extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "new.example.com" in san.get_values_for_type(x509.DNSName)


def test_names_in_another_spelling_are_the_same_names(fleet: Fleet) -> None:
    """Case, a trailing dot and IP spelling do not change meaning, so nothing is reissued."""
    fleet.edit(
        '"{{ host.fqdn }}", "{{ host.name }}", "{{ host.address }}", localhost, 127.0.0.1',
        '"{{ host.fqdn | upper }}.", "{{ host.name }}", "{{ host.address }}", '
        "LOCALHOST, 127.0.0.1, localhost",
    )
    assert fleet.plan() == []


def test_subject_changed(fleet: Fleet) -> None:
    fleet.edit("organization: Example Voice Operations", "organization: New Org")
    assert fleet.plan() == [
        ("certificate httpscert", "replace", f"subject changed: {SUBJECT} -> CN={FQDN},O=New Org"),
        *REISSUED,
    ]
    fleet.settle()
    assert fleet.leaf().subject.rfc4514_string() == f"CN={FQDN},O=New Org"


def test_validity_changed(fleet: Fleet) -> None:
    fleet.edit("validity_days: 825", "validity_days: 397")
    assert fleet.plan() == [
        ("certificate httpscert", "update", "validity changed: 825 -> 397 days"),
        *REISSUED,
    ]
    fleet.settle()
    leaf = fleet.leaf()
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert abs(lifetime - dt.timedelta(days=397)) <= dt.timedelta(days=1)


# --- time -------------------------------------------------------------------------------------


def test_renewal_window(fleet: Fleet, at_project: None) -> None:
    not_after = fleet.leaf().not_valid_after_utc
    soon = not_after - dt.timedelta(days=10, hours=12)
    changes, _ = api_run(soon)
    assert changes == [("certificate httpscert", "update", "expires in 10 days (< 30)"), *REISSUED]
    changes, _ = api_run(soon, apply=True)
    assert changes[0][2] == "expires in 10 days (< 30)"
    renewed = fleet.leaf()
    assert renewed.not_valid_after_utc > not_after
    # Settled at that moment: a plan then is empty.
    assert api_run(soon)[0] == []


def test_expired(fleet: Fleet, at_project: None) -> None:
    late = fleet.leaf().not_valid_after_utc + dt.timedelta(days=5, hours=12)
    changes, _ = api_run(late)
    assert changes == [("certificate httpscert", "update", "expired 5 days ago"), *REISSUED]
    api_run(late, apply=True)
    assert api_run(late)[0] == []


def test_one_day_left_is_singular(fleet: Fleet, at_project: None) -> None:
    moment = fleet.leaf().not_valid_after_utc - dt.timedelta(days=1, hours=1)
    assert api_run(moment)[0][0] == ("certificate httpscert", "update", "expires in 1 day (< 30)")


def test_time_passing_alone_changes_nothing(fleet: Fleet, at_project: None) -> None:
    leaf = fleet.leaf()
    issued = leaf.not_valid_before_utc
    until = leaf.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
    for days in (1, 100, 400, 790):
        changes, unchanged = api_run(issued + dt.timedelta(days=days, hours=2))
        assert changes == [], days
        # A date, not a count of days: the same words every day until something changes.
        assert unchanged[0] == f"valid until {until}"


def test_just_outside_the_renewal_window(fleet: Fleet, at_project: None) -> None:
    moment = fleet.leaf().not_valid_after_utc - dt.timedelta(days=30, hours=1)
    assert api_run(moment)[0] == []


def test_not_valid_yet(fleet: Fleet, at_project: None) -> None:
    """A clock behind the certificate's start (a host restored from a snapshot, a skewed
    controller) reissues it rather than serving a certificate clients would refuse."""
    start = fleet.leaf().not_valid_before_utc
    changes, _ = api_run(start - dt.timedelta(days=2))
    assert changes[0][:2] == ("certificate httpscert", "update")
    assert changes[0][2] == f"not valid until {start:%Y-%m-%d %H:%M} UTC"


# --- outputs derived from an unchanged certificate --------------------------------------------


def test_one_output_deleted_only_that_file_is_written(fleet: Fleet) -> None:
    before = fleet.files()
    (fleet.certs / "httpscert.pem").unlink()
    assert fleet.plan() == [("file httpscert.pem", "create", "missing")]
    fleet.settle()
    after = fleet.files()
    assert after["httpscert.cer"] == before["httpscert.cer"]  # bytes, mode and mtime
    assert after["httpscert.key"] == before["httpscert.key"]
    assert after["httpscert.pem"][0] == before["httpscert.pem"][0]  # the same certificate


@pytest.mark.parametrize(
    ("file", "reason"),
    [
        ("httpscert.cer", "does not hold the current root"),
        ("httpscert.pem", "does not hold the current fullchain"),
    ],
)
def test_corrupted_output_gets_its_own_update(fleet: Fleet, file: str, reason: str) -> None:
    before = fleet.files()
    (fleet.certs / file).write_bytes(b"garbage\n")
    assert fleet.plan() == [(f"file {file}", "update", reason)]
    fleet.settle()
    after = fleet.files()
    assert after == {**before, file: after[file]}  # nothing else touched, not even mtimes
    assert after[file][0] == before[file][0]


def test_output_holding_another_certificate(fleet: Fleet) -> None:
    """A PEM that parses but holds something else (a stale copy) is rewritten too."""
    (fleet.certs / "httpscert.pem").write_bytes((fleet.certs / "httpscert.pem").read_bytes() * 2)
    assert fleet.plan() == [("file httpscert.pem", "update", "does not hold the current fullchain")]
    fleet.settle()


@pytest.mark.parametrize(
    ("file", "mode", "reason"),
    [
        ("httpscert.key", 0o644, "mode 0644, want 0600"),
        ("httpscert.cer", 0o600, "mode 0600, want 0644"),
    ],
)
def test_wrong_mode(fleet: Fleet, file: str, mode: int, reason: str) -> None:
    content = (fleet.certs / file).read_bytes()
    (fleet.certs / file).chmod(mode)
    assert fleet.plan() == [(f"file {file}", "update", reason)]
    fleet.settle()
    assert stat.S_IMODE((fleet.certs / file).stat().st_mode) == (
        0o600 if file.endswith(".key") else 0o644
    )
    assert (fleet.certs / file).read_bytes() == content


def test_site_config_edited_by_hand(fleet: Fleet) -> None:
    rendered = fleet.conf.read_bytes()
    fleet.conf.write_bytes(rendered.replace(b"listen 443 ssl;", b"listen 8443 ssl;"))
    assert fleet.plan() == [("site Default Web Site", "update", "rendered config differs")]
    result = fleet.cli("plan", PLAYBOOK, "-i", INVENTORY, "-l", HOST)
    assert "-    listen 8443 ssl;\n" in result.stdout
    assert "+    listen 443 ssl;\n" in result.stdout
    certs = fleet.files()
    fleet.settle()
    assert fleet.conf.read_bytes() == rendered
    assert fleet.files() == certs


def test_site_config_deleted(fleet: Fleet) -> None:
    fleet.conf.unlink()
    assert fleet.plan() == [("site Default Web Site", "create", "missing")]
    fleet.settle()
