"""CA rotation (issue 18, item 3): `provision ca rotate` on a fleet of three nginx sites on
loopback. curl, trusting only the bundle a host holds at each phase, reaches every site
before, during and after every phase, and so does a client still holding the previous
phase's bundle where the phases promise it (one updated in phase 1 reaches phase-2 sites);
phase 3 is refused while one host still serves a leaf of the old CA; the cross-signed root
is judged by `openssl verify`; the old CA's CRL stays its own."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Cli
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from ports import free_port
from test_servers import Nginx, leaf_of_pem, nginx, served_leaf
from thirdparty import assert_refused, openssl_ok, openssl_text, pem_certificates
from trustkit import Served, curl

__all__ = ["nginx"]  # a fixture, imported to be found

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("openssl")]

PLAYBOOK = "playbooks/rotate.yml"
INVENTORY = "inventory/rotate.yml"
HOSTS = ("r1", "r2", "r3")
ROOT = "CN=Rotate Root CA,O=Example Rotate"


def short(root: x509.Certificate) -> str:
    """How a plan names a root: the start of its SHA-256 fingerprint."""
    return "sha256:" + root.fingerprint(hashes.SHA256()).hex().upper()[:16]


class Fleet:
    """Three local hosts, each with an nginx site on its own loopback port, one authority,
    and a trust bundle per host."""

    def __init__(self, project: Path, server: Nginx, stores: Path) -> None:
        self.project = project
        self.cli = Cli(project)
        self.ports = {host: free_port() for host in HOSTS}
        self.stores = stores
        book = {
            "name": "Rotating fleet",
            "hosts": "fleet",
            "certificates_dir": "{{ certificates_dir }}",
            "authorities": [
                {
                    "name": "rotate-root",
                    "dir": "pki/rotate-root",
                    "create": True,
                    "subject": {"common_name": "Rotate Root CA", "organization": "Example Rotate"},
                    "key": {"type": "ecdsa", "curve": "p256"},
                    "crl": {"dir": "pki/crl"},
                }
            ],
            "certificates": [
                {
                    "name": "web",
                    "source": {"type": "ca", "authority": "rotate-root"},
                    "key": {"type": "ecdsa", "curve": "p256"},
                    "subject": {"common_name": "{{ host.fqdn }}"},
                    "names": ["{{ host.fqdn }}", "localhost", "127.0.0.1"],
                    "validity_days": 90,
                    "outputs": [
                        {"file": "web.pem", "format": "pem", "content": "fullchain"},
                        {"file": "web.key", "format": "pem", "content": "key"},
                    ],
                }
            ],
            "sites": [
                {
                    "name": "web",
                    "server": "nginx",
                    "config": f"{server.sites}/{{{{ host.name }}}}.conf",
                    "test_command": server.test_command,
                    "reload_command": server.reload_command,
                    "bindings": [
                        {
                            "protocol": "https",
                            "address": "127.0.0.1",
                            "port": "{{ tls_port }}",
                            "certificate": "web",
                        }
                    ],
                    # apply waits until each name is served the new leaf
                    "verify": True,
                }
            ],
            "trust": [
                {
                    "name": "fleet-roots",
                    "roots": [{"authority": "rotate-root"}],
                    "stores": [
                        {"type": "bundle", "path": f"{stores}/{{{{ host.name }}}}/ca-bundle.pem"}
                    ],
                }
            ],
        }
        hosts = {
            h: {"address": "127.0.0.1", "fqdn": f"{h}.rotate.test", "tls_port": self.ports[h]}
            for h in HOSTS
        }
        inventory = {
            "all": {
                "vars": {
                    "connection": "local",
                    "certificates_dir": ".provision/{{ host.name }}/certificates",
                },
                "children": {"fleet": {"hosts": hosts}},
            }
        }
        (project / PLAYBOOK).write_text(yaml.safe_dump(book, sort_keys=False))
        (project / INVENTORY).write_text(yaml.safe_dump(inventory, sort_keys=False))

    @property
    def authority(self) -> Path:
        return self.project / "playbooks" / "pki" / "rotate-root"

    def leaf(self, host: str) -> Path:
        return self.project / ".provision" / host / "certificates" / "web.pem"

    def bundle(self, host: str = "r1") -> Path:
        return self.stores / host / "ca-bundle.pem"

    def keep_bundle(self, label: str) -> Path:
        """A client's copy of the bundle as it is now (the client updates no further)."""
        copy = self.stores.parent / f"client-{label}.pem"
        shutil.copyfile(self.bundle(), copy)
        return copy

    def run(self, *args: str) -> Any:
        result = self.cli(*args)
        assert "Traceback" not in result.stdout + result.stderr
        return result

    def apply(self, *extra: str) -> None:
        result = self.run("apply", PLAYBOOK, "-i", INVENTORY, *extra)
        assert result.exit_code == 0, result.stdout + result.stderr
        for host in self.limited(extra):
            self.settle(host)

    @staticmethod
    def limited(extra: tuple[str, ...]) -> tuple[str, ...]:
        if "--limit" in extra:
            return tuple(extra[extra.index("--limit") + 1].split(","))
        return HOSTS

    def settle(self, host: str) -> None:
        """Until five connections in a row get the leaf on disk (an old nginx worker may
        answer once after a reload); the assertions below then judge what is served."""
        want, streak = leaf_of_pem(self.leaf(host)), 0
        deadline = time.monotonic() + 20
        while streak < 5 and time.monotonic() < deadline:
            streak = streak + 1 if served_leaf(self.ports[host]) == want else 0
            if streak < 5:
                time.sleep(0.05)
        assert served_leaf(self.ports[host]) == want, f"{host} never served its new leaf"

    def plan(self) -> dict[str, Any]:
        result = self.run("plan", PLAYBOOK, "-i", INVENTORY, "--format", "json")
        assert result.exit_code == 0, result.stdout + result.stderr
        document = json.loads(result.stdout)
        assert isinstance(document, dict)
        return document

    def rotate(self, *args: str) -> Any:
        return self.run("ca", "rotate", PLAYBOOK, "rotate-root", *args)

    def fetch(self, host: str, bundle: Path) -> Any:
        site = Served(f"{host}.rotate.test", Path(), Path(), self.ports[host])
        return curl(site, bundle)

    def reaches_all(self, bundle: Path) -> None:
        for host in HOSTS:
            fetched = self.fetch(host, bundle)
            assert fetched.returncode == 0, f"{host} with {bundle.name}: {fetched.stderr}"


def reasons(document: dict[str, Any], host: str) -> dict[str, str]:
    return {c["resource"]: c["reason"] for c in document["hosts"][host]["changes"]}


def roots_in(bundle: Path) -> list[str]:
    return sorted(c.fingerprint(_sha256()).hex() for c in pem_certificates(bundle))


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def test_rotation_keeps_every_site_reachable_through_three_phases(
    project: Path, nginx: Nginx, tmp_path: Path
) -> None:
    fleet = Fleet(project, nginx, tmp_path / "stores")
    fleet.apply()
    before = fleet.keep_bundle("before")
    (old_root,) = pem_certificates(before)
    fleet.reaches_all(before)

    # Start: a new key and root beside the old, cross-signed by the old key.
    started = fleet.rotate("--cross-sign")
    assert started.exit_code == 0, started.stdout + started.stderr
    assert "phase 1 (trust)" in started.stdout
    new_dir = fleet.authority / "next"
    assert (new_dir / "ca.key").stat().st_mode & 0o777 == 0o600
    (new_root,) = pem_certificates(new_dir / "ca.crt")
    assert new_root.public_key() != old_root.public_key()
    again = fleet.rotate()
    assert_refused(again, "rotating already (phase 1, trust)")

    # Phase 1: every bundle gains the new root; no leaf changes.
    document = fleet.plan()
    for host in HOSTS:
        changes = reasons(document, host)
        bundle = f"trust fleet-roots bundle {fleet.bundle(host)}"
        assert changes == {bundle: f"roots changed: +{ROOT} {short(new_root)}"}, changes
    fleet.apply("--limit", "r1")  # during phase 1: r1's bundle has both roots, r2's the old
    assert len(roots_in(fleet.bundle("r1"))) == 2 and len(roots_in(fleet.bundle("r2"))) == 1
    fleet.reaches_all(fleet.bundle("r1"))
    fleet.reaches_all(fleet.bundle("r2"))
    fleet.apply()
    phase1 = fleet.keep_bundle("phase1")
    assert len(roots_in(phase1)) == 2
    fleet.reaches_all(phase1)
    fleet.reaches_all(before)  # leaves are still the old CA's
    status = fleet.run("status", PLAYBOOK, "-i", INVENTORY, "--format", "json")
    (row,) = json.loads(status.stdout)["authorities"]
    assert row["rotation"].startswith("rotating, phase 1 of 3 (trust)"), row

    # Phase 3 cannot be skipped to.
    assert_refused(fleet.rotate("--phase", "3", "-i", INVENTORY), "move to phase 2 first")

    # Phase 2: every leaf reissued by the new CA; the plan says why.
    moved = fleet.rotate("--phase", "2")
    assert moved.exit_code == 0, moved.stdout + moved.stderr
    document = fleet.plan()
    for host in HOSTS:
        reason = reasons(document, host)["certificate web"]
        assert reason == "authority rotate-root rotating, phase 2: issued by the old CA, " \
            "reissued by the new one", reason  # fmt: skip
    old_serials = {h: pem_certificates(fleet.leaf(h))[0].serial_number for h in HOSTS}
    fleet.apply("--limit", "r1,r2")
    assert fleet.bundle("r1").read_bytes() == phase1.read_bytes()  # stores unchanged
    # During phase 2: two hosts serve new leaves, one an old leaf; the phase-1 client
    # reaches all three.
    fleet.reaches_all(phase1)

    # Phase 3 is refused while r3 serves a leaf of the old CA, naming host, binding, serial.
    refused = fleet.rotate("--phase", "3", "-i", INVENTORY)
    output = assert_refused(
        refused,
        f"host r3, site 'web', binding 127.0.0.1:{fleet.ports['r3']} serves serial "
        f"{old_serials['r3']:X}, a leaf of the old CA (asked as 127.0.0.1, localhost, "
        "r3.rotate.test)",
    )
    assert "host r1" not in output and "host r2" not in output
    status = fleet.run("status", PLAYBOOK, "-i", INVENTORY, "--format", "json")
    (row,) = json.loads(status.stdout)["authorities"]
    assert row["rotation"].startswith("rotating, phase 2 of 3 (issue)"), row

    fleet.apply()
    for host in HOSTS:
        (leaf,) = pem_certificates(fleet.leaf(host))[:1]
        assert leaf.serial_number != old_serials[host]
        ok, text = openssl_ok("verify", "-CAfile", new_dir / "ca.crt", fleet.leaf(host))
        assert ok, text
    fleet.reaches_all(phase1)
    # A client that never took the new root is cut off from new leaves: the test can fail.
    assert fleet.fetch("r1", before).returncode == 60
    # ... unless it is given the cross-signed root: leaf -> cross-signed -> old root.
    cross = new_dir / "cross-signed.crt"
    ok, text = openssl_ok("verify", "-CAfile", before, "-untrusted", cross, fleet.leaf("r1"))
    assert ok, text
    ok, text = openssl_ok("verify", "-CAfile", before, fleet.leaf("r1"))
    assert not ok, text
    # The replaced leaves are superseded on the old CA's own CRL, signed by the old key.
    previous_crl = project / "playbooks" / "pki" / "crl" / "crl-previous.pem"
    listing = openssl_text("crl", "-in", previous_crl, "-CAfile", before, "-noout", "-text")
    for serial in old_serials.values():
        assert f"{serial:X}" in listing.replace(":", "").upper()
    current_crl = project / "playbooks" / "pki" / "crl" / "crl.pem"
    openssl_text("crl", "-in", current_crl, "-CAfile", new_dir / "ca.crt", "-noout")

    # Phase 3: the old root leaves every bundle.
    moved = fleet.rotate("--next", "-i", INVENTORY)
    assert moved.exit_code == 0, moved.stdout + moved.stderr
    document = fleet.plan()
    for host in HOSTS:
        (reason,) = reasons(document, host).values()
        assert reason == f"roots changed: -{ROOT} {short(old_root)}", reason
    fleet.apply("--limit", "r1")  # during phase 3: r1's bundle has the new root alone
    assert len(roots_in(fleet.bundle("r1"))) == 1 and len(roots_in(fleet.bundle("r2"))) == 2
    fleet.reaches_all(fleet.bundle("r1"))
    fleet.reaches_all(fleet.bundle("r2"))
    fleet.apply()
    phase3 = fleet.keep_bundle("phase3")
    assert len(roots_in(phase3)) == 1 and roots_in(phase3) == roots_in(new_dir / "ca.crt")
    fleet.reaches_all(phase3)
    fleet.reaches_all(phase1)  # the previous phase's client: a superset of the roots

    # Finish: the old CA is archived, the new one is the authority; nothing else changes.
    finished = fleet.rotate("--finish")
    assert finished.exit_code == 0, finished.stdout + finished.stderr
    (archive,) = (fleet.authority / "retired").iterdir()
    assert pem_certificates(archive / "ca.crt") == [old_root]
    assert (archive / "ca.key").stat().st_mode & 0o777 == 0o600
    assert pem_certificates(fleet.authority / "ca.crt") == [new_root]
    assert not new_dir.exists() and not (fleet.authority / "rotation.json").exists()
    document = fleet.plan()
    assert all(not document["hosts"][h]["changes"] for h in HOSTS), document
    fleet.reaches_all(phase3)


# --- the record and the commands' refusals (no server needed) ----------------------------------

CA_BOOK = "playbooks/callmanager-https-ca.yml"
EXAMPLE_INVENTORY = "inventory/example.yml"
ENV = {"PFX_PASSWORD": "output pfx pass"}


def started(project: Path) -> tuple[Cli, Path]:
    """The example's authority made, applied once, and a rotation started."""
    shutil.rmtree(project / "playbooks" / "pki", ignore_errors=True)
    cli = Cli(project)
    result = cli("apply", CA_BOOK, "-i", EXAMPLE_INVENTORY, env=ENV)
    assert result.exit_code == 0, result.stdout + result.stderr
    result = cli("ca", "rotate", CA_BOOK, "voice-root")
    assert result.exit_code == 0, result.stdout + result.stderr
    return cli, project / "playbooks" / "pki" / "voice-root" / "rotation.json"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not a rotation record (not JSON)"),
        ('{"version": 1}', "not a rotation record (authority: Field required)"),
        ("PHASE9", "not a rotation record (phase: Input should be less than or equal to 3)"),
        ("OTHER", "is for authority 'other-root', not 'voice-root'"),
        ("SWAPPED", "names the old root sha256:"),
        ("LINK", "the rotation record is not a regular file"),
    ],
)
def test_a_damaged_or_hostile_record_is_a_clean_error(
    project: Path, content: str, problem: str
) -> None:
    from conftest import snapshot

    cli, record = started(project)
    data = json.loads(record.read_text())
    if content == "PHASE9":
        record.write_text(json.dumps({**data, "phase": 9}))
    elif content == "OTHER":
        record.write_text(json.dumps({**data, "authority": "other-root"}))
    elif content == "SWAPPED":
        swapped = {"old_root_sha256": data["new_root_sha256"]}
        record.write_text(json.dumps({**data, **swapped}))
    elif content == "LINK":
        target = project / "elsewhere.json"
        target.write_text(record.read_text())
        record.unlink()
        record.symlink_to(target)
    else:
        record.write_text(content)
    hosts = snapshot(project / ".provision")
    for command in ("plan", "apply"):
        assert_refused(
            cli(command, CA_BOOK, "-i", EXAMPLE_INVENTORY, env=ENV), "rotation.json", problem
        )
    assert_refused(cli("ca", "rotate", CA_BOOK, "voice-root", "--next"), problem)
    assert snapshot(project / ".provision") == hosts


def test_the_commands_refuse_what_the_phase_does_not_allow(project: Path) -> None:
    shutil.rmtree(project / "playbooks" / "pki", ignore_errors=True)
    cli = Cli(project)
    assert cli("ca", "init", CA_BOOK, "voice-root").exit_code == 0
    rotate = ("ca", "rotate", CA_BOOK, "voice-root")
    assert_refused(cli(*rotate, "--phase", "2"), "authority 'voice-root' is not rotating")
    assert_refused(cli(*rotate, "--finish"), "authority 'voice-root' is not rotating")
    assert cli(*rotate).exit_code == 0
    assert_refused(cli(*rotate, "--finish"), "is in phase 1 (trust)")
    assert_refused(cli(*rotate, "--phase", "2", "--next"), "give one of --phase, --next")
    assert_refused(cli(*rotate, "--next", "--cross-sign"), "--cross-sign is given when")
    assert cli(*rotate, "--next").exit_code == 0
    assert_refused(cli(*rotate, "--phase", "2"), "is in phase 2 (issue) already")
    assert_refused(cli(*rotate, "--phase", "3"), "give the inventory (-i INVENTORY)")
    record = json.loads((project / "playbooks/pki/voice-root/rotation.json").read_text())
    assert [step["phase"] for step in record["history"]] == [1, 2]


def in_phase_3(project: Path) -> tuple[Cli, Path]:
    """A rotation moved to phase 3 by its record (no fleet serves anything here)."""
    cli, record = started(project)
    assert cli("ca", "rotate", CA_BOOK, "voice-root", "--next").exit_code == 0
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "phase": 3}))
    return cli, record


def test_an_interrupted_finish_is_refused_by_plan_and_finished_by_running_it_again(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provision.trust import rotation

    cli, record = in_phase_3(project)
    folder = record.parent
    old_root = pem_certificates(folder / "ca.crt")
    new_root = pem_certificates(folder / "next" / "ca.crt")

    class Killed(Exception):
        pass

    def crash(path: Any) -> None:
        raise Killed  # the process dies between replacing the files and removing next/

    monkeypatch.setattr(rotation.shutil, "rmtree", crash)
    with pytest.raises(Killed):
        cli("ca", "rotate", CA_BOOK, "voice-root", "--finish")
    monkeypatch.undo()
    assert_refused(cli("plan", CA_BOOK, "-i", EXAMPLE_INVENTORY, env=ENV), "an interrupted finish")
    finished = cli("ca", "rotate", CA_BOOK, "voice-root", "--finish")
    assert finished.exit_code == 0, finished.stdout + finished.stderr
    (archive,) = (folder / "retired").iterdir()
    assert pem_certificates(archive / "ca.crt") == old_root
    assert pem_certificates(folder / "ca.crt") == new_root
    assert not record.exists() and not (folder / "next").exists()


def test_a_record_claiming_a_finish_without_its_archive_changes_nothing(project: Path) -> None:
    from conftest import snapshot

    cli, record = in_phase_3(project)
    record.write_text(json.dumps({**json.loads(record.read_text()), "finishing": "/etc"}))
    before = snapshot(record.parent)
    assert_refused(
        cli("ca", "rotate", CA_BOOK, "voice-root", "--finish"), "does not hold the old CA"
    )
    assert snapshot(record.parent) == before


def test_phase_3_is_refused_when_a_binding_cannot_be_asked(project: Path, tmp_path: Path) -> None:
    """No server listens: nothing proves the old leaves are gone, so the old root stays."""
    fleet = Fleet(project, Nginx(tmp_path / "nginx"), tmp_path / "stores")  # never started
    assert fleet.run("ca", "init", PLAYBOOK, "rotate-root").exit_code == 0
    assert fleet.rotate().exit_code == 0
    assert fleet.rotate("--next").exit_code == 0
    refused = fleet.rotate("--next", "-i", INVENTORY)
    for host in HOSTS:
        assert_refused(
            refused, f"host {host}, site 'web', binding 127.0.0.1:{fleet.ports[host]} cannot be "
            "checked: "
        )  # fmt: skip
    assert json.loads((fleet.authority / "rotation.json").read_text())["phase"] == 2
