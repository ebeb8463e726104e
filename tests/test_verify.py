"""Verification after apply (issue 5, item 4) against a live nginx.

A real nginx runs on a free loopback port with its own main config, which includes the site
file provision renders (``tests/test_servers.py`` starts it and stops it in teardown, even on
failure). The playbook's site has ``verify:``; after apply, provision connects to every name
(SNI set to the name, none for the IP address) and checks that the served certificate is the
one just written. A reload is asynchronous, so verification asks again for up to
``provision.verify.SETTLE_SECONDS``: the tests that expect a failure lower it in-process.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Cli, Result
from ports import free_port
from test_servers import Nginx, leaf_of_pem, nginx, run_checked, served_leaf

__all__ = ["nginx"]  # a fixture, imported to be found

pytestmark = pytest.mark.integration

FQDN = "web1.example.test"
NAMES = [FQDN, "localhost", "127.0.0.1"]
SITE = "web on nginx"
PLAYBOOK = "playbooks/verify.yml"
INVENTORY = "inventory/verify.yml"


class Verified:
    """A local-transport playbook and inventory driving the test's nginx on ``port``."""

    def __init__(self, project: Path, server: Nginx) -> None:
        self.project = project
        self.server = server
        self.port = free_port()
        self.cli = Cli(project)

    @property
    def certificates(self) -> Path:
        return self.project / ".provision" / "web1" / "certificates"

    def leaf(self) -> bytes:
        return leaf_of_pem(self.certificates / "web.pem")

    def write(
        self,
        names: list[str],
        *,
        verify: Any = True,
        reload_command: str | None = None,
        address: str = "127.0.0.1",
    ) -> None:
        self.save(self.book(names, verify=verify, reload_command=reload_command), address=address)

    def book(
        self, names: list[str], *, verify: Any = True, reload_command: str | None = None
    ) -> dict[str, Any]:
        """The playbook: one self-signed certificate, one nginx site on 127.0.0.1:port."""
        return {
            "name": "A verified site",
            "hosts": "web",
            "certificates_dir": "{{ certificates_dir }}",
            "certificates": [
                {
                    "name": "web",
                    "source": "self-signed",
                    "key": {"type": "ecdsa", "curve": "p256"},
                    "subject": {"common_name": "{{ host.fqdn }}"},
                    "names": names,
                    "validity_days": 90,
                    "outputs": [
                        {"file": "web.cer", "format": "der", "content": "root"},
                        {"file": "web.pem", "format": "pem", "content": "fullchain"},
                        {"file": "web.key", "format": "pem", "content": "key"},
                    ],
                }
            ],
            "sites": [
                {
                    "name": SITE,
                    "server": "nginx",
                    "config": f"{self.server.sites}/web.conf",
                    "reload": True,
                    "test_command": self.server.test_command,
                    "reload_command": reload_command or self.server.reload_command,
                    "bindings": [
                        {
                            "protocol": "https",
                            "address": "127.0.0.1",
                            "port": self.port,
                            "certificate": "web",
                        }
                    ],
                    "verify": verify,
                }
            ],
        }

    def save(self, book: dict[str, Any], *, address: str = "127.0.0.1") -> None:
        inventory = {
            "all": {
                "vars": {
                    "connection": "local",
                    "certificates_dir": ".provision/{{ host.name }}/certificates",
                },
                "children": {"web": {"hosts": {"web1": {"address": address, "fqdn": FQDN}}}},
            }
        }
        (self.project / PLAYBOOK).write_text(yaml.safe_dump(book, sort_keys=False))
        (self.project / INVENTORY).write_text(yaml.safe_dump(inventory, sort_keys=False))

    def apply(self) -> tuple[Result, dict[str, Any]]:
        result = self.cli("apply", PLAYBOOK, "-i", INVENTORY, "--format", "json")
        assert "Traceback" not in result.stdout + result.stderr
        try:
            return result, json.loads(result.stdout)["hosts"]["web1"]
        except (json.JSONDecodeError, KeyError):
            raise AssertionError(f"no JSON report:\n{result.stdout}\n{result.stderr}") from None

    def verify(self, *extra: str) -> Result:
        result = self.cli("verify", PLAYBOOK, "-i", INVENTORY, *extra)
        assert "Traceback" not in result.stdout + result.stderr
        return result

    def checks(self, names: list[str], *, address: str = "127.0.0.1") -> list[dict[str, Any]]:
        return [
            {"site": SITE, "name": n, "address": address, "port": self.port, "ok": True}
            for n in names
        ]


@pytest.fixture
def site(project: Path, nginx: Nginx) -> Verified:
    return Verified(project, nginx)


def settle_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing name is asked again for SETTLE_SECONDS (10 s, name after name): half a
    second is plenty when the answer cannot change."""
    monkeypatch.setattr("provision.verify.SETTLE_SECONDS", 0.5)


# --- verification passes, and waits for the reload ------------------------------------------


def test_apply_verifies_every_name_and_waits_for_the_reload(site: Verified) -> None:
    site.write(NAMES)
    result, host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert host["status"] == "changed"
    assert host["verified"] == site.checks(NAMES)
    first = site.leaf()
    assert served_leaf(site.port) == first

    # A new name: the certificate is replaced, nginx reloaded, all four names verified.
    names = [*NAMES, "new.example.test"]
    site.write(names)
    result, host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert host["status"] == "changed"
    assert any(
        c["action"] == "replace" and "names changed" in c["reason"] for c in host["changes"]
    ), host["changes"]
    assert host["verified"] == site.checks(names)
    second = site.leaf()
    assert second != first
    assert served_leaf(site.port) == second

    # A reload that happens 1.5 s after its command returned: verification must wait for it
    # (its first look sees the old certificate), then pass.
    names = [*names, "late.example.test"]
    delayed = f"(sleep 1.5; {site.server.reload_command}) >/dev/null 2>&1 &"
    site.write(names, reload_command=f"sh -c {shlex.quote(delayed)}")
    started = time.monotonic()
    result, host = site.apply()
    took = time.monotonic() - started
    assert result.exit_code == 0, result.stdout + result.stderr
    assert host["verified"] == site.checks(names)
    assert took >= 1.5  # it waited for the server to take the new certificate
    assert served_leaf(site.port) == site.leaf() != second

    # `provision verify` alone: every name, ok.
    alone = site.verify()
    assert alone.exit_code == 0, alone.stdout + alone.stderr
    for name in names:
        assert f"web1: {SITE}: {name} (127.0.0.1:{site.port}) ok\n" in alone.stdout
    assert "Verified: 1 hosts ok, 0 failed" in alone.stdout

    # And in the text recap of an apply with nothing to change.
    recap = site.cli("apply", PLAYBOOK, "-i", INVENTORY)
    assert recap.exit_code == 0, recap.stdout
    assert "web1: ok" in recap.stdout
    for name in names:
        assert f"  verified {name} on 127.0.0.1:{site.port}" in recap.stdout


# --- verification fails ---------------------------------------------------------------------


def test_a_server_that_was_not_reloaded_fails_verification(
    site: Verified, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.write(NAMES)
    result, _host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    old = site.leaf()

    # The reload "succeeds" but does nothing: nginx keeps serving the old certificate.
    settle_quickly(monkeypatch)
    names = [*NAMES, "new.example.test"]
    site.write(names, reload_command="true")
    result, host = site.apply()
    assert result.exit_code == 1, result.stdout
    assert host["status"] == "failed"
    assert host["error"].startswith("verification failed: ")
    assert served_leaf(site.port) == old
    new = site.leaf()
    assert new != old  # the files were written; only the server is behind
    for check in host["verified"]:
        assert check["ok"] is False
        assert check["problem"].endswith("; was the server reloaded?")
        assert "not the certificate written" in check["problem"]
    assert [c["name"] for c in host["verified"]] == names
    for name in names:
        assert f"{name} (127.0.0.1:{site.port}): serves " in host["error"]
    assert host["error"].count("was the server reloaded?") == len(names)
    assert (site.project / "playbooks" / "verify.retry").read_text() == "web1\n"

    alone = site.verify()
    assert alone.exit_code == 1, alone.stdout
    for name in names:
        assert f"web1: {SITE}: {name} (127.0.0.1:{site.port}) FAILED: serves " in alone.stdout
    assert "Verified: 0 hosts ok, 1 failed" in alone.stdout

    # A real reload brings the server up to date: `provision verify` passes again.
    reloaded = run_checked([*site.server.args(), "-s", "reload"])
    assert reloaded.returncode == 0, reloaded.stderr
    deadline = time.monotonic() + 10
    while served_leaf(site.port) != new and time.monotonic() < deadline:
        time.sleep(0.1)
    again = site.verify()
    assert again.exit_code == 0, again.stdout


def test_a_stopped_server_fails_verification(
    site: Verified, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.write(NAMES)
    result, _host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr

    site.server.stop()
    settle_quickly(monkeypatch)
    refused = f"cannot fetch certificates from 127.0.0.1:{site.port}: Connection refused"
    alone = site.verify()
    assert alone.exit_code == 1, alone.stdout
    for name in NAMES:
        assert f"web1: {SITE}: {name} (127.0.0.1:{site.port}) FAILED: " in alone.stdout
    assert alone.stdout.count(refused) == len(NAMES)

    # Apply has nothing to change, yet the host fails: its names are not served.
    result, host = site.apply()
    assert result.exit_code == 1, result.stdout
    assert host["status"] == "failed"
    assert host["changes"] == []
    assert host["error"].startswith("verification failed: ")
    assert host["error"].count(refused) == len(NAMES)
    assert [c["name"] for c in host["verified"] if not c["ok"]] == NAMES


# --- what verify: checks ---------------------------------------------------------------------


def test_verify_names_port_and_address_narrow_the_checks(
    site: Verified, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the names asked for.
    site.write(NAMES, verify={"names": ["localhost"], "port": site.port})
    result, host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert host["verified"] == site.checks(["localhost"])
    alone = site.verify()
    assert alone.exit_code == 0, alone.stdout
    assert f"web1: {SITE}: localhost (127.0.0.1:{site.port}) ok" in alone.stdout
    assert FQDN not in alone.stdout

    # The binding listens on 127.0.0.1: clients connect there, whatever the host's address
    # in the inventory; `address` says where instead (nothing listens on 127.0.0.2).
    settle_quickly(monkeypatch)
    site.write(NAMES, verify={"names": ["localhost"]}, address="127.0.0.2")
    found = site.verify()
    assert found.exit_code == 0, found.stdout
    assert f"web1: {SITE}: localhost (127.0.0.1:{site.port}) ok" in found.stdout
    site.write(NAMES, verify={"names": ["localhost"], "address": "127.0.0.2"})
    missed = site.verify()
    assert missed.exit_code == 1, missed.stdout
    assert f"localhost (127.0.0.2:{site.port}) FAILED: " in missed.stdout
    assert "Connection refused" in missed.stdout
    site.write(NAMES, verify={"names": ["localhost"], "address": "127.0.0.1"}, address="127.0.0.2")
    result, host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert host["verified"] == site.checks(["localhost"])

    # A name the certificate does not cover is caught even though the right leaf is served.
    site.write(NAMES, verify={"names": ["other.example.test"]})
    result, host = site.apply()
    assert result.exit_code == 1, result.stdout
    [check] = host["verified"]
    assert check["name"] == "other.example.test" and check["ok"] is False
    assert "other.example.test" in host["error"]

    # A port no https binding of the site uses: no certificate to compare with.
    other = free_port()
    site.write(NAMES, verify={"names": ["localhost"], "port": other})
    alone = site.verify()
    assert alone.exit_code == 1, alone.stdout
    assert (
        f"localhost (127.0.0.1:{other}) FAILED: no certificate on the host for port {other}"
        in alone.stdout
    )


def test_verify_on_a_port_without_a_binding_is_not_a_silent_pass(site: Verified) -> None:
    site.write(NAMES)
    result, _host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    other = free_port()  # a typo'd port, say: no binding of the site uses it
    site.write(NAMES, verify={"port": other})
    alone = site.verify()
    assert alone.exit_code == 1, alone.stdout
    assert str(other) in alone.stdout + alone.stderr


def test_a_failed_verification_leaves_the_reload_owed(
    site: Verified, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files match after a reload that did nothing; fixing the reload command must still
    bring the server up to date on the next run."""
    site.write(NAMES)
    result, _host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    settle_quickly(monkeypatch)
    names = [*NAMES, "new.example.test"]
    site.write(names, reload_command="true")
    result, host = site.apply()
    assert result.exit_code == 1 and host["status"] == "failed", result.stdout
    new = site.leaf()

    site.write(names)  # the real reload command again; nothing else to change
    result, host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert [c["reason"] for c in host["changes"]] == [
        "reload owed: an earlier run did not finish it, or the server did not serve what "
        "was written"
    ]
    assert all(check["ok"] for check in host["verified"]), host["verified"]
    assert served_leaf(site.port) == new


# --- issue 15: every https binding by default, every name a client may use --------------------


def _lines(result: Result) -> set[str]:
    return {line for line in result.stdout.splitlines() if line.startswith("web1: ")}


def test_verify_without_verify_sections_checks_every_binding_by_every_name(
    site: Verified, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No site says `verify:`; `provision verify` still connects to each https binding, by
    the certificate's names, the binding's own address, the host's inventory address (for a
    binding on every address) and a binding's host (SNI, with its own certificate)."""
    other = free_port()
    book = site.book([FQDN, "localhost", "127.0.0.1", "127.0.0.2"], verify=None)
    book["certificates"].append(
        {
            **book["certificates"][0],
            "name": "sni",
            "subject": {"common_name": "sni.example.test"},
            "names": ["sni.example.test"],
            "outputs": [
                {"file": "sni.pem", "format": "pem", "content": "fullchain"},
                {"file": "sni.key", "format": "pem", "content": "key"},
            ],
        }
    )
    book["sites"][0]["bindings"] = [
        {"protocol": "https", "address": "127.0.0.2", "port": site.port, "certificate": "web"},
        {"protocol": "https", "port": other, "certificate": "web"},
        {"protocol": "https", "port": other, "host": "sni.example.test", "certificate": "sni"},
    ]
    site.save(book)
    result, host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "verified" not in host  # apply checks the sites that ask, as before

    alone = site.verify()
    assert alone.exit_code == 0, alone.stdout + alone.stderr
    assert _lines(alone) == {
        # the binding on 127.0.0.2: the certificate's names and the binding's address
        *(f"web1: {SITE}: {n} (127.0.0.2:{site.port}) ok" for n in (FQDN, "localhost")),
        f"web1: {SITE}: 127.0.0.1 (127.0.0.2:{site.port}) ok",
        f"web1: {SITE}: 127.0.0.2 (127.0.0.2:{site.port}) ok",
        # the binding on every address: the same names at the host's address
        *(f"web1: {SITE}: {n} (127.0.0.1:{other}) ok" for n in (FQDN, "localhost")),
        f"web1: {SITE}: 127.0.0.1 (127.0.0.1:{other}) ok",
        f"web1: {SITE}: 127.0.0.2 (127.0.0.1:{other}) ok",
        # the SNI binding, served its own certificate
        f"web1: {SITE}: sni.example.test (127.0.0.1:{other}) ok",
    }
    assert "Verified: 1 hosts ok, 0 failed" in alone.stdout

    # The binding's address is a name clients use: without it among the certificate's names,
    # lint, validate and plan say so at the binding's line, and verify fails that name.
    book["certificates"][0]["names"] = [FQDN, "localhost", "127.0.0.1"]
    site.save(book)
    line = (site.project / PLAYBOOK).read_text().splitlines().index("  - protocol: https") + 2
    where = f"{PLAYBOOK}:{line}: sites[0].bindings[0].address: "
    lint = site.cli("lint", PLAYBOOK, "-i", INVENTORY)
    assert f"{PLAYBOOK}:{line}: [name-not-covered] sites[0].bindings[0].address: " in lint.stdout
    validate = site.cli("validate", PLAYBOOK, "-i", INVENTORY)
    assert validate.exit_code == 0, validate.stdout + validate.stderr
    assert "warning: [name-not-covered] sites[0].bindings[0].address:" in validate.stdout
    plan = site.cli("plan", PLAYBOOK, "-i", INVENTORY)
    assert f"  warning  {where}" in plan.stdout
    assert "does not cover 127.0.0.2" in plan.stdout
    result, host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert [w.startswith(where) for w in host["warnings"]] == [True]
    settle_quickly(monkeypatch)
    failed = site.verify()
    assert failed.exit_code == 1, failed.stdout
    assert (
        f"web1: {SITE}: 127.0.0.2 (127.0.0.2:{site.port}) FAILED: 127.0.0.2: not covered "
        "(no IP Address SAN 127.0.0.2)" in failed.stdout
    )


def test_verify_with_nothing_to_check_fails_and_says_so(site: Verified) -> None:
    """A host without an https binding must not read as verified."""
    book = site.book(NAMES, verify=None)
    book["sites"][0]["bindings"] = [{"protocol": "http", "address": "127.0.0.1", "port": site.port}]
    site.save(book)
    result = site.verify()
    assert result.exit_code == 1, result.stdout
    assert "web1: nothing to verify (no https binding)" in result.stdout
    assert "Verified: 0 hosts ok, 0 failed, 1 with nothing to verify" in result.stdout
    assert result.stderr == (
        f"error: {PLAYBOOK}: nothing was verified: no site has an https binding on the 1 "
        "selected host, so no connection was made (verify checks each https binding of each "
        "site)\n"
    )


def _authority_book(site: Verified, subject: str, *, create: bool) -> dict[str, Any]:
    book = site.book(NAMES)
    book["authorities"] = [
        {
            "name": "root",
            "dir": "pki/root",
            "create": create,
            "subject": {"common_name": subject},
            "key": {"type": "ecdsa", "curve": "p256"},
        }
    ]
    book["certificates"][0]["source"] = {"type": "ca", "authority": "root"}
    return book


def test_a_leaf_from_another_ca_is_called_that_not_a_missing_intermediate(
    site: Verified, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.save(_authority_book(site, "Old Root", create=True))
    result, host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert all(check["ok"] for check in host["verified"])
    settle_quickly(monkeypatch)

    # The authority is made anew under another name: the served leaf is the old CA's.
    shutil.rmtree(site.project / "playbooks" / "pki")
    site.save(_authority_book(site, "New Root", create=False))
    made = site.cli("ca", "init", PLAYBOOK, "root")
    assert made.exit_code == 0, made.stdout + made.stderr
    other = site.verify()
    assert other.exit_code == 1, other.stdout
    assert "missing intermediate" not in other.stdout
    assert other.stdout.count(
        "FAILED: signed by another CA: its issuer is CN=Old Root, where CN=New Root is "
        "expected; `provision apply` replaces it"
    ) == len(NAMES), other.stdout

    # Made anew under the same name: another key, which its key identifier tells.
    shutil.rmtree(site.project / "playbooks" / "pki")
    site.save(_authority_book(site, "Old Root", create=False))
    made = site.cli("ca", "init", PLAYBOOK, "root")
    assert made.exit_code == 0, made.stdout + made.stderr
    same = site.verify()
    assert same.exit_code == 1, same.stdout
    assert "FAILED: signed by another CA of the same name CN=Old Root: its authority key " in (
        same.stdout
    )
    assert "so the CA was re-keyed or made anew" in same.stdout

    # Apply issues from the CA the playbook names; verify passes again.
    result, host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert all(check["ok"] for check in host["verified"]), host["verified"]
    assert site.verify().exit_code == 0


def test_a_remote_hosts_loopback_binding_is_not_looked_for_on_this_machine(site: Verified) -> None:
    """An SSH host's 127.0.0.1 is not the controller's: verify says so instead of asking
    whatever listens on this machine's loopback (no connection is made to find out)."""
    from provision.api import load
    from provision.verify import probes

    site.write(NAMES, verify=None)
    inventory = site.project / INVENTORY
    inventory.write_text(
        inventory.read_text().replace("connection: local", "connection: ssh\n    user: nobody")
    )
    loaded = load(site.project / PLAYBOOK, inventory)
    [target] = loaded.targets
    found = probes(target, target.playbook.sites[0])
    assert [(p.name, p.address, p.port) for p in found] == [
        (name, "127.0.0.1", site.port) for name in NAMES
    ]
    for probe in found:
        assert probe.problem is not None
        assert "the loopback of web1, which cannot be reached from this machine" in probe.problem


def test_a_supplied_certificate_is_verified_by_its_own_names(site: Verified, openssl: str) -> None:
    """A `provided` certificate need not list `names`: the names clients use are its SANs."""
    files = site.project / "playbooks" / "files"
    files.mkdir(parents=True)
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(files / "web.key"), "-out", str(files / "web.pem"),
            "-days", "90", "-subj", "/CN=supplied.example.test",
            "-addext", "subjectAltName=DNS:supplied.example.test,IP:127.0.0.1",
            "-addext", "extendedKeyUsage=serverAuth",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    book = site.book([], verify=None)
    certificate = book["certificates"][0]
    certificate["source"] = {
        "type": "provided",
        "certificate": "files/web.pem",
        "key": "files/web.key",
    }
    for unused in ("names", "validity_days", "subject", "key"):
        del certificate[unused]
    site.save(book)
    result, _host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    alone = site.verify()
    assert alone.exit_code == 0, alone.stdout + alone.stderr
    assert _lines(alone) == {
        f"web1: {SITE}: supplied.example.test (127.0.0.1:{site.port}) ok",
        f"web1: {SITE}: 127.0.0.1 (127.0.0.1:{site.port}) ok",
    }
