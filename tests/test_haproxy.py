"""HAProxy sites checked by the real ``haproxy -c`` and served by a real HAProxy.

- ``haproxy -c`` accepts the golden haproxy case as applied (ports moved to free loopback
  ones), loaded beside a main config; and refuses it once a key no longer sits beside its
  certificate (proof that the check reads the certificates);
- end to end: HAProxy runs in master-worker mode on free loopback ports with its main config
  in the test's folder and the site folder beside it (``-f main.cfg -f sites/``);
  ``provision apply`` writes two certificates, the site and its crt-list, tests and reloads
  HAProxy through the site's test_command/reload_command; a real TLS client then gets the
  certificate of each SNI name (verified against the DER root provision wrote), an http
  binding redirects to https, and the proxied directories reach a local HTTP backend by their
  ACLs; a config HAProxy rejects is rolled back and the host fails, while HAProxy keeps serving.

Every HAProxy started here is stopped in teardown by the pid in its pid file.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Cli, require_tool
from ports import free_port
from sitecases import apply, prepare
from test_servers import (
    Backend,
    backend,  # noqa: F401 - the fixture, used by name
    fetch,
    fingerprint,
    http_get,
    ipv6_loopback,
    leaf_of_pem,
    run_checked,
    served_leaf,
    stop_by_pid_file,
    wait_for,
)

from provision.servers.haproxy import haproxy_crt_list, haproxy_quote
from provision.servers.render import RenderError

pytestmark = pytest.mark.integration

FQDN = "cm-pub-01.voice.example.com"
ADMIN = "admin.example.com"


class Haproxy:
    """An HAProxy of the test's own: main config, site folder and pid file in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.binary = require_tool("haproxy")
        self.folder = folder
        self.sites = folder / "sites"
        self.sites.mkdir(parents=True)
        self.conf = folder / "haproxy.cfg"
        self.pid_file = folder / "haproxy.pid"
        self.control_port = free_port()

    def main_config(self, *, listen: bool = True) -> str:
        lines = [
            "global",
            "    maxconn 200",
            "defaults",
            "    mode http",
            "    timeout connect 5s",
            "    timeout client 30s",
            "    timeout server 30s",
        ]
        if listen:
            # A port of its own, so HAProxy starts before any site gives it one.
            lines += [
                "frontend control",
                f"    bind 127.0.0.1:{self.control_port}",
                "    http-request return status 200",
            ]
        return "\n".join(lines) + "\n"

    def args(self, *config: Path) -> list[str]:
        files = config or (self.conf, self.sites)
        return [self.binary, *(arg for path in files for arg in ("-f", str(path)))]

    def test(self, *config: Path) -> subprocess.CompletedProcess[str]:
        return run_checked([*self.args(*config), "-c"])

    @property
    def test_command(self) -> str:
        return shlex.join([*self.args(), "-c"])

    @property
    def reload_command(self) -> str:
        # Master-worker mode: USR2 makes the master read its files again and hand over.
        return f"kill -USR2 $(cat {shlex.quote(str(self.pid_file))})"

    def start(self) -> None:
        self.conf.write_text(self.main_config())
        result = run_checked([*self.args(), "-W", "-D", "-p", str(self.pid_file)])
        assert result.returncode == 0, result.stderr + result.stdout
        wait_for("HAProxy's pid file", lambda: self.pid_file.exists() or None)
        wait_for("HAProxy's port", lambda: http_get(self.control_port, "localhost", "/").status)

    def stop(self) -> None:
        stop_by_pid_file(self.pid_file)


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Haproxy]:
    server = Haproxy(tmp_path / "haproxy")
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --- haproxy -c --------------------------------------------------------------------------


def _applied_golden_case(project: Path) -> Path:
    """The golden haproxy case, applied with its ports moved to free loopback ones."""
    ports = {port: free_port() for port in (80, 443, 8080, 8443)}
    addresses = {"10.0.0.5": "127.0.0.1", "127.0.0.1": "127.0.0.1"}
    if not ipv6_loopback():
        addresses["::1"] = "127.0.0.2"
    apply(project, prepare(project, "haproxy", ports=ports, addresses=addresses))
    (config,) = (project / ".provision").rglob("haproxy/*.cfg")
    return config


def test_haproxy_accepts_the_rendered_site(project: Path, tmp_path: Path) -> None:
    server = Haproxy(tmp_path / "check")
    server.conf.write_text(server.main_config(listen=False))
    config = _applied_golden_case(project)
    result = server.test(server.conf, config)
    assert result.returncode == 0, f"haproxy -c rejected {config}:\n{result.stderr}"
    assert "Configuration file is valid" in result.stdout + result.stderr

    # The check reads the certificates: without the key beside one, it fails on that file.
    certificates = project / ".provision" / "web-01" / "certificates"
    (certificates / "admin.pem.key").rename(certificates / "admin.key")
    result = server.test(server.conf, config)
    assert result.returncode != 0
    assert "admin.pem" in result.stderr, result.stderr


def test_quoting_filters() -> None:
    assert haproxy_quote("/etc/ssl/site.pem") == "/etc/ssl/site.pem"
    assert haproxy_quote("a b'c#") == "'a b'\\''c#'"
    assert haproxy_quote('back\\slash "q"') == "'back\\slash \"q\"'"
    assert haproxy_quote("") == "''"
    with pytest.raises(RenderError):
        haproxy_quote("x\nbind :1")
    assert haproxy_crt_list("/srv/certs/a.pem") == "/srv/certs/a.pem"
    for bad in ("/srv/with space/a.pem", "#a.pem", "!a", "[ssl]", "a\tb"):
        with pytest.raises(RenderError):
            haproxy_crt_list(bad)


def test_a_key_not_beside_its_certificate_fails_the_host_with_what_to_write(
    project: Path, cli: Cli
) -> None:
    book = yaml.safe_load((project / "playbooks" / "callmanager-https.yml").read_text())
    site = book["sites"][0]
    site.update(server="haproxy", config="{{ certificates_dir }}/../haproxy/site.cfg")
    site["virtual_directories"] = [{"path": "/", "proxy_to": "http://127.0.0.1:9000/"}]
    (project / "playbooks" / "haproxy.yml").write_text(yaml.safe_dump(book, sort_keys=False))
    result = cli("apply", "playbooks/haproxy.yml", "-i", "inventory/example.yml", "-l", "cm-pub-01")
    assert result.exit_code == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert (
        "cm-pub-01: failed: site 'Default Web Site' (haproxy) binds certificate 'httpscert', "
        "which needs a PEM output with content key named httpscert.pem.key (its key output "
        "is httpscert.key): HAProxy loads a certificate's key from the certificate's file "
        "name with .key appended"
    ) in result.stdout
    assert not (project / ".provision" / "fleet" / "cm-pub-01" / "haproxy").exists()


def test_hostile_names_stay_inside_comments_and_words(project: Path, tmp_path: Path) -> None:
    book = {
        "name": "Hostile",
        "hosts": "cm-pub-01",
        "certificates_dir": "{{ certificates_dir }}",
        "certificates": [_certificate("c", ["a.example"])],
        "sites": [
            {
                "name": "Evil\nbind :1 \\",
                "server": "haproxy",
                "config": "{{ certificates_dir }}/../haproxy/site.cfg",
                "reload": False,
                "bindings": [{"port": free_port(), "address": "127.0.0.1", "certificate": "c"}],
                "virtual_directories": [
                    {
                        "path": "/x",
                        "application": "App\nbackend evil \\",
                        "proxy_to": "http://127.0.0.1:9/a%20b\\c",
                    }
                ],
            }
        ],
    }
    (project / "playbooks" / "hostile.yml").write_text(yaml.safe_dump(book))
    result = Cli(project)("apply", "playbooks/hostile.yml", "-i", "inventory/example.yml")
    assert result.exit_code == 0, result.stdout + result.stderr
    config = project / ".provision" / "fleet" / "cm-pub-01" / "haproxy" / "site.cfg"
    lines = config.read_text().splitlines()
    assert "frontend Evil_bind_:1__" in lines
    assert not any(line.startswith(("bind :1", "backend evil")) for line in lines)
    assert "# App backend evil" in lines
    assert "    http-request replace-path ^/x/(.*) '/a%%20b\\c/\\1'" in lines
    server = Haproxy(tmp_path / "check")
    server.conf.write_text(server.main_config(listen=False))
    checked = server.test(server.conf, config)
    assert checked.returncode == 0, checked.stderr


# --- end to end ------------------------------------------------------------------------------

INVENTORY = {
    "all": {
        "vars": {
            "connection": "local",
            "certificates_dir": ".provision/{{ host.name }}/certificates",
        },
        "children": {
            "callmanager": {"hosts": {"cm-pub-01": {"address": "127.0.0.1", "fqdn": FQDN}}}
        },
    }
}


def _certificate(name: str, names: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "source": "self-signed",
        "key": {"type": "ecdsa", "curve": "p256"},
        "subject": {"common_name": names[0]},
        "names": names,
        "validity_days": 90,
        "outputs": [
            {"file": f"{name}.cer", "format": "der", "content": "root"},
            {"file": f"{name}.pem", "format": "pem", "content": "fullchain"},
            # HAProxy reads the key from beside the certificate: <certificate file>.key.
            {"file": f"{name}.pem.key", "format": "pem", "content": "key"},
        ],
    }


@dataclass
class Deployment:
    project: Path
    haproxy: Haproxy
    backend: Backend
    https_port: int
    http_port: int

    @property
    def certificates(self) -> Path:
        return self.project / ".provision" / "cm-pub-01" / "certificates"

    @property
    def config(self) -> Path:
        return self.haproxy.sites / "callmanager.cfg"

    def write(self, names: list[str], template: str | None = None) -> None:
        https: dict[str, Any] = {"protocol": "https", "address": "127.0.0.1"}
        site: dict[str, Any] = {
            "name": "CallManager on HAProxy",
            "server": "haproxy",
            "config": str(self.config),
            "test_command": self.haproxy.test_command,
            "reload_command": self.haproxy.reload_command,
            "bindings": [
                {**https, "port": self.https_port, "certificate": "httpscert"},
                {**https, "port": self.https_port, "host": ADMIN, "certificate": "admin"},
                {
                    "protocol": "http",
                    "address": "127.0.0.1",
                    "port": self.http_port,
                    "redirect_to_https": True,
                },
            ],
            "virtual_directories": [
                {"path": "/", "proxy_to": f"http://127.0.0.1:{self.backend.port}/home"},
                {
                    "path": "/api",
                    "application": "A backend",
                    "proxy_to": f"http://127.0.0.1:{self.backend.port}/backend",
                },
            ],
        }
        if template is not None:
            site["template"] = template
        book = {
            "name": "CallManager HTTPS on HAProxy",
            "hosts": "callmanager",
            "certificates_dir": "{{ certificates_dir }}",
            "certificates": [_certificate("httpscert", names), _certificate("admin", [ADMIN])],
            "sites": [site],
        }
        (self.project / "playbooks" / "haproxy.yml").write_text(
            yaml.safe_dump(book, sort_keys=False)
        )
        (self.project / "inventory" / "haproxy.yml").write_text(yaml.safe_dump(INVENTORY))

    def apply(self) -> Any:
        return Cli(self.project)("apply", "playbooks/haproxy.yml", "-i", "inventory/haproxy.yml")

    def root(self, name: str) -> bytes:
        return (self.certificates / f"{name}.cer").read_bytes()

    def leaf(self, name: str) -> bytes:
        return leaf_of_pem(self.certificates / f"{name}.pem")

    def wait_until_serving(self, leaf: bytes, timeout: float = 15.0) -> None:
        """Until HAProxy presents ``leaf`` by default on several connections in a row: after
        a reload, the old worker may still accept a few connections."""
        streak = [0]

        def settled() -> bool | None:
            streak[0] = streak[0] + 1 if served_leaf(self.https_port) == leaf else 0
            return True if streak[0] >= 5 else None

        wait_for(f"HAProxy to serve {fingerprint(leaf)[:16]}", settled, timeout)

    def assert_serves(self, names: list[str]) -> None:
        """Each SNI name gets its certificate, verified against the root provision wrote,
        and the root directory reaches the backend."""
        for name in names:
            certificate = "admin" if name == ADMIN else "httpscert"
            response = fetch(self.https_port, name, "/index.html", self.root(certificate))
            assert (response.status, response.body) == (200, b"backend got /home/index.html")
            assert response.leaf is not None
            assert fingerprint(response.leaf) == fingerprint(self.leaf(certificate)), name


@pytest.fixture
def deployment(project: Path, haproxy: Haproxy, backend: Backend) -> Deployment:  # noqa: F811
    return Deployment(project, haproxy, backend, free_port(), free_port())


NAMES = ["{{ host.fqdn }}", "localhost", "127.0.0.1"]
NEW_NAMES = ["{{ host.fqdn }}", "callmanager.voice.example.com", "localhost", "127.0.0.1"]


def test_apply_configures_a_live_haproxy_and_reloads_it_for_a_new_certificate(
    deployment: Deployment,
) -> None:
    deployment.write(NAMES)
    result = deployment.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "create   site CallManager on HAProxy" in result.stdout
    crt_list = deployment.config.with_suffix(".crt-list").read_text()
    lines = [line for line in crt_list.splitlines() if not line.startswith("#")]
    # The default certificate first, by its own names; then the SNI binding's.
    assert lines == [
        str(deployment.certificates / "httpscert.pem"),
        f"{deployment.certificates / 'admin.pem'} {ADMIN}",
    ]
    first = deployment.leaf("httpscert")
    deployment.wait_until_serving(first)
    deployment.assert_serves([FQDN, "localhost", "127.0.0.1", ADMIN])

    # The http binding sends clients to the https one, path and query kept.
    moved = http_get(deployment.http_port, "localhost", "/CCMAdmin/?a=1")
    assert (moved.status, moved.headers.get("location")) == (
        301,
        f"https://localhost:{deployment.https_port}/CCMAdmin/?a=1",
    ), moved
    # /api is routed by its ACL to its backend, the directory's path replaced by the target's.
    root = deployment.root("httpscert")
    assert fetch(deployment.https_port, FQDN, "/api", root).headers["location"] == "/api/"
    proxied = fetch(deployment.https_port, FQDN, "/api/users?id=7", root)
    assert (proxied.status, proxied.body) == (200, b"backend got /backend/users?id=7")
    assert deployment.backend.requests[-1] == ("/backend/users?id=7", "https")

    # New names: the certificate is replaced, the config is not, HAProxy reloads.
    deployment.write(NEW_NAMES)
    result = deployment.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "names changed" in result.stdout
    assert "site CallManager" not in result.stdout
    second = deployment.leaf("httpscert")
    assert fingerprint(second) != fingerprint(first)
    deployment.wait_until_serving(second)
    deployment.assert_serves(["callmanager.voice.example.com", FQDN, ADMIN])

    # Nothing left to do: nothing written, nothing reloaded.
    result = deployment.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "changed 0" in result.stdout


def test_a_config_haproxy_rejects_is_rolled_back_and_the_host_fails(
    deployment: Deployment,
) -> None:
    deployment.write(NAMES)
    result = deployment.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    before = deployment.leaf("httpscert")
    deployment.wait_until_serving(before)
    crt_list = deployment.config.with_suffix(".crt-list")
    files = {
        p: p.read_bytes()
        for p in [deployment.config, crt_list, *deployment.certificates.glob("httpscert.*")]
    }

    # A broken template and new names in one run: nothing of it may stay.
    (deployment.project / "templates" / "haproxy" / "broken.cfg.j2").write_text(
        '{% include "haproxy/site.cfg.j2" %}\n    no_such_keyword on\n'
    )
    deployment.write(NEW_NAMES, template="haproxy/broken.cfg.j2")
    result = deployment.apply()
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "cm-pub-01: failed: config test" in result.stdout
    assert "no_such_keyword" in result.stdout
    assert "previous files restored" in result.stdout
    assert {p: p.read_bytes() for p in files} == files
    # HAProxy never took the broken config: it still serves the old certificate.
    assert served_leaf(deployment.https_port) == before
    deployment.assert_serves([FQDN, "localhost", ADMIN])
