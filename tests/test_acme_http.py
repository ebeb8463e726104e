"""HTTP-01 through the site itself, against a real Pebble, served by a real nginx, Apache and
HAProxy from the rendered site.

Pebble validates HTTP-01 on its configured ``httpPort`` (a free port here, the playbook's
``http_port``) of each name, which pebble-challtestsrv's DNS answers with 127.0.0.1. The
sites bind https only: provision adds the http binding that serves the challenge, writes and
reloads it before ordering (the plan says so), and removes the tokens afterwards. The
certificates directory sits in a folder the servers' unprivileged workers may cross
(pytest's tmp is 0700), with ``certificates_dir_mode: "0711"`` as docs/acme.md advises.
"""

from __future__ import annotations

import base64
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Cli, require_tool
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from josepy.jwk import JWKEC
from pebble import Pebble, running
from ports import free_port
from sshd import SshdFleet, sshd_fleet
from test_acme import BASE_ENV, NAMES
from test_haproxy import Haproxy, haproxy
from test_servers import Apache, Nginx, apache, nginx

__all__ = ["apache", "haproxy", "nginx", "sshd_fleet"]  # the fixtures, imported to be found

pytestmark = pytest.mark.integration

ServerUnderTest = Nginx | Apache | Haproxy


@pytest.fixture(scope="module")
def http_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory, http_port: int) -> Iterator[Pebble]:
    env = {**BASE_ENV, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "30"}
    with running(tmp_path_factory.mktemp("pebble"), env, http_port=http_port) as pebble:
        yield pebble


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder the servers' workers may cross (pytest's tmp is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="provision-acme-"))
    try:
        folder.chmod(0o755)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Site:
    """A playbook ordering one certificate by HTTP-01 for a site of ``server``."""

    def __init__(
        self,
        folder: Path,
        certs: Path,
        ca: Pebble,
        server: ServerUnderTest,
        kind: str,
        http_port: int,
        connection: dict[str, Any] | None = None,
    ) -> None:
        self.folder, self.certs, self.ca, self.server = folder, certs, ca, server
        self.kind, self.http_port = kind, http_port
        self.port = free_port()
        self.suffix = "cfg" if kind == "haproxy" else "conf"
        self.cli = Cli(folder)
        self.options: tuple[str, ...] = ()
        inventory = {
            "all": {
                "vars": connection or {"connection": "local"},
                "children": {"web": {"hosts": {"web-01": {"address": "127.0.0.1"}}}},
            }
        }
        (folder / "inventory.yml").write_text(yaml.safe_dump(inventory))

    def book(self, **source: Any) -> dict[str, Any]:
        acme = {
            "type": "acme",
            "directory": self.ca.directory,
            "email": "ops@acme.test",
            "accept_terms": True,
            "challenge": "http-01",
            "http_port": self.http_port,
            "ca_bundle": str(self.ca.ca_bundle),
            **source,
        }
        outputs = [
            {"file": "web.pem", "format": "pem", "content": "fullchain"},
            {"file": "web.pem.key" if self.kind == "haproxy" else "web.key", "format": "pem",
             "content": "key"},
        ]  # fmt: skip
        return {
            "name": "ACME http-01",
            "hosts": "web",
            "certificates_dir": str(self.certs),
            "certificates_dir_mode": "0711",
            "certificates": [
                {
                    "name": "web",
                    "source": acme,
                    "key": {"type": "ecdsa", "curve": "p256"},
                    "names": NAMES,
                    "outputs": outputs,
                }
            ],
            "sites": [
                {
                    "name": "acme-site",
                    "server": self.kind,
                    "config": str(self.server.sites / f"acme.{self.suffix}"),
                    "test_command": self.server.test_command,
                    "reload_command": self.server.reload_command,
                    "bindings": [
                        {"protocol": "https", "address": "127.0.0.1", "port": self.port,
                         "certificate": "web"},
                    ],
                }
            ],
        }  # fmt: skip

    def write(self, book: dict[str, Any]) -> None:
        (self.folder / "playbook.yml").write_text(yaml.safe_dump(book, sort_keys=False))

    def run(self, *command: str) -> Any:
        return self.cli(*command, "playbook.yml", "-i", "inventory.yml", *self.options)

    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates((self.certs / "web.pem").read_bytes())[0]

    def curl(self, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
        root = self.folder / "pebble-root.pem"
        root.write_bytes(self.ca.root())
        return subprocess.run(
            [
                require_tool("curl"), "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                "--cacert", str(root),
                "--resolve", f"acme.test:{self.port}:127.0.0.1",
                "--resolve", f"acme.test:{self.http_port}:127.0.0.1",
                *extra, url,
            ],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip

    def served(self) -> subprocess.CompletedProcess[str]:
        """curl over TLS to the site, trusting Pebble's root alone (once the server listens:
        a reload by signal returns before the new listener is up)."""
        deadline = time.monotonic() + 15
        while True:
            result = self.curl(f"https://acme.test:{self.port}/")
            if result.returncode != 7 or time.monotonic() > deadline:  # 7: cannot connect
                return result
            time.sleep(0.1)


def _site(
    kind: str,
    shared: Path,
    ca: Pebble,
    server: ServerUnderTest,
    port: int,
    connection: dict[str, Any] | None = None,
) -> Site:
    folder = shared / "project"
    folder.mkdir()
    return Site(folder, shared / "certs", ca, server, kind, port, connection)


def _first_order_served_and_idle(site: Site) -> None:
    """The first apply orders through the site's own http binding; the second orders
    nothing; the tokens are gone and the challenge folder is readable, not writable, by
    others."""
    site.write(site.book())
    plan = site.run("plan")
    assert plan.exit_code == 0, plan.stdout + plan.stderr
    assert f"serves http on port {site.http_port} for the http-01 challenge of web" in plan.stdout
    assert "written first without the https bindings of web" in plan.stdout, plan.stdout
    first = site.run("apply")
    assert first.exit_code == 0, first.stdout + first.stderr
    served = site.served()
    assert served.returncode == 0, served.stderr  # curl verified the chain to Pebble's root
    challenge = site.certs / ".acme-challenge"
    assert challenge.is_dir() and list(challenge.iterdir()) == []
    assert stat.S_IMODE(challenge.stat().st_mode) == 0o755
    assert stat.S_IMODE(site.certs.stat().st_mode) == 0o711
    # Everything but the challenge is redirected to https.
    redirect = site.curl(f"http://acme.test:{site.http_port}/x")
    assert redirect.stdout == "301", redirect.stdout + redirect.stderr
    leaf = site.leaf()
    second = site.run("apply")
    assert second.exit_code == 0, second.stdout + second.stderr
    assert site.leaf() == leaf
    assert site.run("plan").exit_code == 0


def test_http01_through_a_rendered_nginx_site(
    shared: Path, ca: Pebble, nginx: Nginx, http_port: int
) -> None:
    _first_order_served_and_idle(_site("nginx", shared, ca, nginx, http_port))


def test_http01_over_ssh(
    shared: Path, ca: Pebble, nginx: Nginx, http_port: int, sshd_fleet: SshdFleet
) -> None:
    """The same through an SSH host (a real sshd on loopback, whose files are this
    machine's): the site, the probe and the key authorisations go over SFTP."""
    require_tool("ssh-keygen")
    (server,) = sshd_fleet.start(1)
    connection = {
        "connection": "ssh",
        "ansible_port": server.port,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(sshd_fleet.client_key),
    }
    site = _site("nginx", shared, ca, nginx, http_port, connection)
    known = shared / "known_hosts"
    known.write_text(server.known_hosts_line())
    site.options = ("--known-hosts", str(known))
    _first_order_served_and_idle(site)


def test_http01_through_a_rendered_apache_site_with_pebble_sleeping(
    shared: Path, apache: Apache
) -> None:
    """Pebble with its validation sleeps on (no PEBBLE_VA_NOSLEEP) and half its nonces
    refused: the order waits for it."""
    env = {**BASE_ENV, "PEBBLE_WFE_NONCEREJECT": "50"}
    port = free_port()
    with running(shared / "pebble", env, http_port=port) as sleepy:
        _first_order_served_and_idle(_site("apache", shared, sleepy, apache, port))


def test_http01_answered_by_a_rendered_haproxy_site(
    shared: Path, ca: Pebble, haproxy: Haproxy, http_port: int
) -> None:
    """HAProxy answers from its config (TOKEN.THUMBPRINT): nothing is written to the
    challenge folder for it to serve, and the certificate verifies all the same."""
    site = _site("haproxy", shared, ca, haproxy, http_port)
    site.write(site.book())
    config = site.run("plan")
    assert "lf-string" in config.stdout, config.stdout
    _first_order_served_and_idle(site)
    rendered = (haproxy.sites / "acme.cfg").read_text()
    account = next((site.folder / "acme").glob("*/account.key")).read_bytes()
    key = serialization.load_pem_private_key(account, None)
    thumbprint = base64.urlsafe_b64encode(JWKEC(key=key.public_key()).thumbprint())  # type: ignore[arg-type]
    expected = "abc_-1." + thumbprint.rstrip(b"=").decode()
    assert expected[7:] in rendered
    assert "".join(account.decode().splitlines()[1:3])[:40] not in rendered
    answer = subprocess.run(
        [require_tool("curl"), "-sS", "--fail",
         f"http://127.0.0.1:{site.http_port}/.well-known/acme-challenge/abc_-1"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert answer.stdout == expected, answer.stdout + answer.stderr
    refused = site.curl(f"http://acme.test:{site.http_port}/.well-known/acme-challenge/a%2Fb")
    assert refused.stdout == "301", refused.stdout


def test_a_challenge_the_ca_cannot_reach_fails_the_host_and_keeps_the_old_certificate(
    shared: Path, ca: Pebble, nginx: Nginx, http_port: int
) -> None:
    """A CA that fetches the challenge where the site does not listen (another Pebble,
    validating on a closed port): the host fails with Pebble's own problem, its certificate
    files are as they were, nginx still serves the old certificate, and no token is left."""
    site = _site("nginx", shared, ca, nginx, http_port)
    site.write(site.book())
    assert site.run("apply").exit_code == 0
    assert site.served().returncode == 0  # (keeps the first Pebble's root for curl below)
    before = {p.name: p.read_bytes() for p in site.certs.iterdir() if p.is_file()}
    serial = site.leaf().serial_number
    env = {**BASE_ENV, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "30"}
    with running(shared / "other-pebble", env, http_port=free_port()) as other:
        book = site.book(directory=other.directory, ca_bundle=str(other.ca_bundle))
        book["certificates"][0]["renew_before_days"] = 100000
        site.write(book)
        failed = site.run("apply")
    assert failed.exit_code == 1, failed.stdout + failed.stderr
    said = failed.stdout + failed.stderr
    assert "urn:ietf:params:acme:error:connection" in said, said
    assert "refused the challenge" in said and "Traceback" not in said
    after = {p.name: p.read_bytes() for p in site.certs.iterdir() if p.is_file()}
    assert after == before
    assert list((site.certs / ".acme-challenge").iterdir()) == []
    root = site.folder / "pebble-root.pem"
    verified = subprocess.run(
        [require_tool("curl"), "-sS", "-o", "/dev/null", "--cacert", str(root),
         "--resolve", f"acme.test:{site.port}:127.0.0.1", f"https://acme.test:{site.port}/"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{site.port}", "-servername", "acme.test"],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    pem = out[out.index("-----BEGIN CERTIFICATE-----") : out.index("-----END CERTIFICATE-----")]
    served = x509.load_pem_x509_certificate((pem + "-----END CERTIFICATE-----\n").encode())
    assert served.serial_number == serial


def test_a_site_the_server_refuses_first_orders_nothing_and_is_put_back(
    shared: Path, ca: Pebble, nginx: Nginx, http_port: int
) -> None:
    """The config written first to serve the challenge fails the server's test: the host
    fails naming the test, the previous files (none) are back, and nothing is ordered."""
    site = _site("nginx", shared, ca, nginx, http_port)
    book = site.book()
    book["sites"][0]["test_command"] = "echo 'config refused' >&2; exit 1"
    site.write(book)
    failed = site.run("apply")
    assert failed.exit_code == 1, failed.stdout + failed.stderr
    said = failed.stdout + failed.stderr
    assert "failed for the site that must serve the http-01 challenge first" in said, said
    assert "config refused" in said and "Traceback" not in said
    assert not (nginx.sites / "acme.conf").exists()
    assert not (site.certs / "web.pem").exists()
    assert not list((site.folder / "acme").glob("*/orders/*.json"))
