"""ACME certificates ordered from a real Pebble on loopback, served by a real nginx.

Pebble keeps its randomised behaviour: a share of nonces is rejected (PEBBLE_WFE_NONCEREJECT)
in every test here, and one CA validates with its random sleeps on (no PEBBLE_VA_NOSLEEP).
DNS-01 goes through hooks that set TXT records on pebble-challtestsrv, the DNS Pebble asks.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Cli, require_tool
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pebble import Pebble, running
from ports import free_port
from test_servers import Nginx, nginx

__all__ = ["nginx"]  # the fixture, imported to be found

pytestmark = pytest.mark.integration

NAMES = ["acme.test", "www.acme.test"]
BASE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PEBBLE_AUTHZREUSE": "0"}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    env = {**BASE_ENV, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "30"}
    with running(tmp_path_factory.mktemp("pebble"), env) as pebble:
        yield pebble


def _book(ca: Pebble, nginx: Nginx, port: int, **source: Any) -> dict[str, Any]:
    acme = {
        "type": "acme",
        "directory": ca.directory,
        "email": "ops@acme.test",
        "accept_terms": True,
        "challenge": "dns-01",
        "dns_hook": {"set": ca.set_hook(), "clear": ca.clear_hook()},
        "resolvers": [ca.dns],
        "ca_bundle": str(ca.ca_bundle),
        **source,
    }
    return {
        "name": "ACME",
        "hosts": "web",
        "certificates_dir": "{{ certificates_dir }}",
        "certificates": [
            {
                "name": "web",
                "source": acme,
                "key": {"type": "ecdsa", "curve": "p256"},
                "names": NAMES,
                "outputs": [
                    {"file": "web.pem", "format": "pem", "content": "fullchain"},
                    {"file": "web.key", "format": "pem", "content": "key"},
                ],
            }
        ],
        "sites": [
            {
                "name": "acme-site",
                "server": "nginx",
                "config": str(nginx.sites / "acme.conf"),
                "test_command": nginx.test_command,
                "reload_command": nginx.reload_command,
                "bindings": [
                    {"protocol": "https", "address": "127.0.0.1", "port": port,
                     "certificate": "web"},
                ],
            }
        ],
    }  # fmt: skip


class Project:
    def __init__(self, folder: Path, ca: Pebble, nginx: Nginx) -> None:
        self.folder = folder
        self.ca, self.nginx = ca, nginx
        self.port = free_port()
        self.cli = Cli(folder)
        inventory = {
            "all": {
                "vars": {"connection": "local", "certificates_dir": "certs/{{ host.name }}"},
                "children": {"web": {"hosts": {"web-01": {"address": "127.0.0.1"}}}},
            }
        }
        (folder / "inventory.yml").write_text(yaml.safe_dump(inventory))
        self.certs = folder / "certs" / "web-01"

    def write(self, **source: Any) -> None:
        book = _book(self.ca, self.nginx, self.port, **source)
        (self.folder / "playbook.yml").write_text(yaml.safe_dump(book, sort_keys=False))

    def run(self, *command: str) -> Any:
        return self.cli(*command, "playbook.yml", "-i", "inventory.yml")

    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates((self.certs / "web.pem").read_bytes())[0]

    def served(self) -> subprocess.CompletedProcess[str]:
        """curl over TLS to the site, trusting Pebble's root alone."""
        root = self.folder / "pebble-root.pem"
        root.write_bytes(self.ca.root())
        return subprocess.run(
            [
                require_tool("curl"), "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                "--cacert", str(root), "--resolve", f"acme.test:{self.port}:127.0.0.1",
                f"https://acme.test:{self.port}/",
            ],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip

    def serves(self, serial: int, timeout: float = 15.0) -> bool:
        """Whether nginx comes to serve ``serial`` on five connections in a row (after a
        reload, old workers may still take a few connections with the old certificate)."""
        deadline = time.monotonic() + timeout
        streak = 0
        while time.monotonic() < deadline:
            streak = streak + 1 if self.served_serial() == serial else 0
            if streak == 5:
                return True
            time.sleep(0.05)
        return False

    def served_serial(self) -> int:
        out = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{self.port}",
             "-servername", "acme.test"],
            input="", capture_output=True, text=True, timeout=30, check=False,
        ).stdout  # fmt: skip
        pem = out[out.index("-----BEGIN CERTIFICATE-----") : out.index("-----END CERTIFICATE-----")]
        return x509.load_pem_x509_certificate(
            (pem + "-----END CERTIFICATE-----\n").encode()
        ).serial_number


@pytest.fixture
def project(tmp_path: Path, ca: Pebble, nginx: Nginx) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, ca, nginx)


def test_dns01_certificate_is_served_verifies_converges_and_renews(project: Project) -> None:
    require_tool("openssl")
    project.write()
    first = project.run("apply")
    assert first.exit_code == 0, first.stdout + first.stderr
    served = project.served()
    assert served.returncode == 0, served.stderr  # curl verified the chain to Pebble's root
    leaf = project.leaf()
    assert project.serves(leaf.serial_number)
    # The account key: made once on the controller, 0600, never printed.
    keys = list((project.folder / "acme").glob("*/account.key"))
    assert len(keys) == 1 and keys[0].stat().st_mode & 0o777 == 0o600
    account = keys[0].read_text()
    body = "".join(account.splitlines()[1:-1])
    # A second apply orders nothing.
    second = project.run("apply")
    assert second.exit_code == 0, second.stdout + second.stderr
    assert project.leaf() == leaf
    # A renewal window that has opened orders again, with the same account.
    project.write()
    book = yaml.safe_load((project.folder / "playbook.yml").read_text())
    book["certificates"][0]["renew_before_days"] = 100000
    (project.folder / "playbook.yml").write_text(yaml.safe_dump(book, sort_keys=False))
    plan = project.run("plan")
    assert "(< 100000)" in plan.stdout, plan.stdout
    third = project.run("apply")
    assert third.exit_code == 0, third.stdout + third.stderr
    renewed = project.leaf()
    assert renewed.serial_number != leaf.serial_number
    assert project.serves(renewed.serial_number)
    assert keys[0].read_text() == account
    for result in (first, second, plan, third):
        assert body[:40] not in result.stdout + result.stderr


def test_refused_challenge_fails_the_host_and_keeps_the_old_certificate(project: Project) -> None:
    project.write()
    first = project.run("apply")
    assert first.exit_code == 0, first.stdout + first.stderr
    before = {p.name: p.read_bytes() for p in project.certs.iterdir() if p.is_file()}
    serial = project.served_serial()
    # The hook publishes a wrong value, and nothing checks before Pebble looks.
    wrong = project.ca.set_hook().replace("$PROVISION_ACME_VALUE", "not-the-value")
    project.write(dns_hook={"set": wrong, "clear": project.ca.clear_hook()}, propagation_timeout=0)
    book = yaml.safe_load((project.folder / "playbook.yml").read_text())
    book["certificates"][0]["renew_before_days"] = 100000
    (project.folder / "playbook.yml").write_text(yaml.safe_dump(book, sort_keys=False))
    failed = project.run("apply")
    assert failed.exit_code == 1, failed.stdout + failed.stderr
    said = failed.stdout + failed.stderr
    assert "urn:ietf:params:acme:error:unauthorized" in said, said
    assert "Traceback" not in said
    after = {p.name: p.read_bytes() for p in project.certs.iterdir() if p.is_file()}
    assert after == before
    assert project.served_serial() == serial
    assert project.served().returncode == 0


def test_validation_with_pebble_sleeping_and_rejecting_half_the_nonces(
    tmp_path: Path, nginx: Nginx
) -> None:
    env = {**BASE_ENV, "PEBBLE_WFE_NONCEREJECT": "50"}  # PEBBLE_VA_NOSLEEP off
    with running(tmp_path / "pebble", env) as sleepy:
        folder = tmp_path / "project"
        folder.mkdir()
        project = Project(folder, sleepy, nginx)
        project.write()
        result = project.run("apply")
        assert result.exit_code == 0, result.stdout + result.stderr
        assert project.served().returncode == 0


# Made for this test (base64url of random bytes): Pebble's key for kid "kid-1".
EAB_HMAC = "q3Jm0Xo5u1T9KcV2hZ8bLw4YpE7sNfA6dGiR0tUyWxMzQeHjKlPvB1nCoS5aDrF2"
WRONG_HMAC = "Zx9vQ2mL7nB4kR1tY6pW3sD8fG5hJ0aC2eI9uO4yT7rE1wQ6zX3cV8bN5mK0lP2j"


def test_eab_account_and_no_secret_in_any_output(tmp_path: Path, nginx: Nginx) -> None:
    """A CA that requires external account binding: a wrong HMAC key fails the host with the
    CA's words, the right one opens the account; neither, nor the account key, appears in
    anything printed or in any file but the account key's own."""
    from test_secrets import secret_fragments

    env = {**BASE_ENV, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "30"}
    with running(tmp_path / "pebble", env, eab={"kid-1": EAB_HMAC}) as strict:
        folder = tmp_path / "project"
        folder.mkdir()
        project = Project(folder, strict, nginx)
        project.write(eab={"kid": "kid-1", "hmac_key": {"env": "ACME_EAB_HMAC"}})
        cli = project.cli
        refused = cli("apply", "playbook.yml", "-i", "inventory.yml",
                      env={"ACME_EAB_HMAC": WRONG_HMAC})  # fmt: skip
        assert refused.exit_code == 1, refused.stdout + refused.stderr
        assert "urn:ietf:params:acme:error:" in refused.stdout + refused.stderr
        assert not (project.certs / "web.pem").exists()
        printed = [refused.stdout + refused.stderr]
        for command in (("plan",), ("apply",), ("apply", "--format", "json"), ("plan", "-v")):
            result = cli(*command, "playbook.yml", "-i", "inventory.yml",
                         env={"ACME_EAB_HMAC": EAB_HMAC})  # fmt: skip
            assert result.exit_code in (0, 2), result.stdout + result.stderr
            printed.append(result.stdout + result.stderr)
        assert project.served().returncode == 0
        account_file = next((folder / "acme").glob("*/account.key"))
        keys = [
            serialization.load_pem_private_key(path.read_bytes(), None)
            for path in (account_file, project.certs / "web.key")
        ]
        # What is public (the certificates, the public keys) is no leak, as in test_secrets.
        public = [(project.certs / "web.pem").read_text().replace("\n", "")]
        for key in keys:
            spki = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            public += [base64.b64encode(spki).decode(), spki.hex()]
        fragments = secret_fragments(keys, "\n".join(public).lower())  # type: ignore[arg-type]
        fragments.update({EAB_HMAC: "the EAB HMAC key", WRONG_HMAC: "the wrong HMAC key"})
        # Every file but key files (the key output, its backups, the account key).
        texts = {
            **{f"output {index}": text for index, text in enumerate(printed)},
            **{
                str(path): path.read_text(errors="replace")
                for path in folder.rglob("*")
                if path.is_file() and path.suffix != ".key"
            },
        }
        leaks = [
            f"{where}: {what}"
            for where, text in texts.items()
            for piece, what in fragments.items()
            if piece in text
        ]
        assert not leaks, leaks
        assert all("PRIVATE KEY-----" not in text for text in texts.values())


def test_the_examples_in_docs_acme_validate(tmp_path: Path) -> None:
    """Every YAML example of docs/acme.md is a whole playbook that `provision validate`
    accepts (with an inventory of the groups it names)."""
    from conftest import ROOT

    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "acme.md").read_text(), re.S)
    assert len(blocks) == 2
    inventory = {
        "all": {
            "children": {
                "web": {"hosts": {"web-01": {"fqdn": "portal.example.com"}}},
                "api": {"hosts": {"api-01": {"fqdn": "api.internal.example"}}},
            }
        }
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    cli = Cli(tmp_path)
    for index, block in enumerate(blocks):
        book = yaml.safe_load(block)
        assert book["certificates"][0]["source"]["type"] == "acme"
        (tmp_path / f"example-{index}.yml").write_text(block)
        result = cli("validate", f"example-{index}.yml", "-i", "inventory.yml")
        assert result.exit_code == 0, block + result.stdout + result.stderr


def test_revoke_an_acme_certificate(project: Project) -> None:
    """`provision revoke` revokes the certificate the host holds, through the account that
    ordered it; Pebble then refuses to revoke it again, in its own words."""
    project.write()
    assert project.run("apply").exit_code == 0
    revoke = ("revoke", "playbook.yml", "-i", "inventory.yml", "--limit", "web-01")
    done = project.cli(*revoke, "--reason", "keyCompromise")
    assert done.exit_code == 0, done.stdout + done.stderr
    assert f"serial {project.leaf().serial_number:x}" in done.stdout
    again = project.cli(*revoke)
    assert again.exit_code == 1, again.stdout + again.stderr
    assert "urn:ietf:params:acme:error:alreadyRevoked" in again.stderr, again.stderr
    assert "Traceback" not in again.stdout + again.stderr
    wrong = project.cli(*revoke, "--reason", "becauseISaidSo")
    assert wrong.exit_code == 1 and "is not one of" in wrong.stderr


def test_unreachable_directory_and_failing_hook_fail_only_that_host(project: Project) -> None:
    """A directory nobody answers, or a DNS hook that fails, fails the host in one paragraph
    and leaves its certificate and files as they were."""
    project.write()
    assert project.run("apply").exit_code == 0
    before = {p.name: p.read_bytes() for p in project.certs.iterdir() if p.is_file()}
    book = yaml.safe_load((project.folder / "playbook.yml").read_text())
    book["certificates"][0]["renew_before_days"] = 100000
    closed = f"https://127.0.0.1:{free_port()}/dir"
    book["certificates"][0]["source"]["directory"] = closed
    (project.folder / "playbook.yml").write_text(yaml.safe_dump(book, sort_keys=False))
    gone = project.run("apply")
    assert gone.exit_code == 1, gone.stdout + gone.stderr
    assert f"the ACME directory {closed} cannot be reached" in gone.stdout + gone.stderr
    book["certificates"][0]["source"]["directory"] = project.ca.directory
    book["certificates"][0]["source"]["dns_hook"]["set"] = "echo 'zone is frozen' >&2; exit 3"
    (project.folder / "playbook.yml").write_text(yaml.safe_dump(book, sort_keys=False))
    hook = project.run("apply")
    assert hook.exit_code == 1, hook.stdout + hook.stderr
    said = hook.stdout + hook.stderr
    assert re.search(r"dns_hook set for (www\.)?acme\.test exited with 3: zone is frozen", said)
    for result in (gone, hook):
        assert "Traceback" not in result.stdout + result.stderr
    after = {p.name: p.read_bytes() for p in project.certs.iterdir() if p.is_file()}
    assert after == before
    assert project.served().returncode == 0
