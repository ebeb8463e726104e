"""Rendered configs checked by the real servers, and apply driving live nginx and Apache.

- ``nginx -t`` and ``apache2 -t`` accept every nginx and Apache config the golden cases render
  (with their ports moved to free loopback ports: ``nginx -t`` binds them);
- end to end: nginx and Apache run as daemons on free loopback ports with their own main
  configs in the test's folder; ``provision apply`` writes the certificate and the sites, tests
  and reloads both servers through the site's test_command/reload_command, and each server
  then serves every virtual directory over TLS, verified against the DER root provision
  wrote, for the FQDN, localhost and 127.0.0.1; new certificate names are served after the
  next apply; a config the server rejects is rolled back while the server keeps serving.

Every server started here is stopped in teardown by the pid in its pid file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from conftest import IN_CI, Cli, require_tool
from cryptography import x509
from httpkit import serving
from ports import free_port
from sitecases import CASES, apply, prepare

pytestmark = pytest.mark.integration

T = TypeVar("T")
MODULES = "/usr/lib/apache2/modules"
APACHE_MODULES = [
    "mpm_event",
    "authz_core",
    "alias",
    "dir",
    "mime",
    "ssl",
    "proxy",
    "proxy_http",
    "headers",
    "rewrite",
]
FQDN = "cm-pub-01.voice.example.com"
NO_SUCH_ROOT = "/nonexistent-provision-test-root"
DIRECTORIES = {
    "/CCMAdmin": "Cisco CallManager Administration",
    "/CCMUser": "Cisco IP Phone User Option Pages",
}


# --- helpers ------------------------------------------------------------------------------


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 15.0) -> T:
    """Poll ``probe`` until it returns something other than None (or fail at the deadline)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            result = probe()
            if result is not None:
                return result
        except (OSError, ssl.SSLError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f": {last}" if last else ""))
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def stop_by_pid_file(pid_file: Path) -> None:
    """End the daemon whose pid the file holds: TERM, a short wait, then KILL."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def run_checked(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    leaf: bytes | None = None  # the served certificate, DER


def _response(raw: bytes, leaf: bytes | None = None) -> Response:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(int(status_line.split()[1]), headers, body, leaf)


def _exchange(sock: socket.socket, name: str, port: int, path: str) -> bytes:
    request = f"GET {path} HTTP/1.1\r\nHost: {name}:{port}\r\nConnection: close\r\n\r\n"
    sock.sendall(request.encode())
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def http_get(port: int, name: str, path: str) -> Response:
    """GET over plain http from 127.0.0.1:port, with ``name`` as the Host."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return _response(_exchange(sock, name, port, path))


def fetch(port: int, name: str, path: str, root_der: bytes) -> Response:
    """GET ``path`` over TLS from 127.0.0.1:port as ``name`` (SNI and Host), verifying the
    server against ``root_der`` and the name against the certificate."""
    context = ssl.create_default_context(cadata=root_der)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        leaf = tls.getpeercert(binary_form=True)
        assert leaf is not None
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        return _response(_exchange(tls, name, port, path), leaf)


def served_leaf(port: int) -> bytes | None:
    """The certificate the server presents, unverified (to watch for a reload)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.getpeercert(binary_form=True)


def leaf_of_pem(path: Path) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificates(path.read_bytes())[0].public_bytes(Encoding.DER)


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _service_user() -> tuple[str, str]:
    for user, group in (("www-data", "www-data"), ("nobody", "nogroup")):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return user, group
    return "nobody", "nobody"


# --- servers ------------------------------------------------------------------------------


class Nginx:
    """An nginx of the test's own: main config, prefix, pid and logs in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.binary = require_tool("nginx")
        self.folder = folder
        self.sites = folder / "sites"
        self.sites.mkdir(parents=True)
        self.conf = folder / "nginx.conf"
        self.pid_file = folder / "nginx.pid"
        self.error_log = folder / "error.log"

    def main_config(self, include: str) -> str:
        return (
            f"pid {self.pid_file};\n"
            f"error_log {self.error_log};\n"
            "worker_processes 1;\n"
            "events { worker_connections 64; }\n"
            "http {\n"
            "    access_log off;\n"
            "    default_type text/html;\n"
            # A request no location claims is answered 404, as by an installed nginx whose
            # html/ lacks the file: the default root (the prefix's html/) would lie under
            # pytest's 0700 folder, which the workers cannot enter (403).
            f"    root {NO_SUCH_ROOT};\n"
            f"    include {include};\n"
            "}\n"
        )

    def args(self, conf: Path | None = None) -> list[str]:
        return [
            self.binary,
            "-c",
            str(conf or self.conf),
            "-p",
            f"{self.folder}/",
            "-e",
            str(self.error_log),
        ]

    def test(self, conf: Path) -> subprocess.CompletedProcess[str]:
        return run_checked([*self.args(conf), "-t"])

    @property
    def test_command(self) -> str:
        return shlex.join([*self.args(), "-t"])

    @property
    def reload_command(self) -> str:
        return shlex.join([*self.args(), "-s", "reload"])

    def start(self) -> None:
        self.conf.write_text(self.main_config(f"{self.sites}/*.conf"))
        result = run_checked(self.args())
        assert result.returncode == 0, result.stderr
        wait_for("nginx's pid file", lambda: self.pid_file.exists() or None)

    def stop(self) -> None:
        stop_by_pid_file(self.pid_file)


class Apache:
    """An Apache of the test's own: ServerRoot, main config, pid and logs in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.binary = require_tool("apache2")
        if not Path(MODULES, "mod_ssl.so").exists():
            message = f"Apache's modules (mod_ssl.so) are not in {MODULES}"
            pytest.fail(message) if IN_CI else pytest.skip(message)
        self.folder = folder
        self.sites = folder / "sites"
        self.sites.mkdir(parents=True)
        (folder / "logs").mkdir()
        self.conf = folder / "apache2.conf"
        self.pid_file = folder / "httpd.pid"
        self.control_port = free_port()

    def main_config(self, include: str, *, listen: bool = True) -> str:
        user, group = _service_user()
        lines = [
            f'ServerRoot "{self.folder}"',
            f'DefaultRuntimeDir "{self.folder}/logs"',
            f'PidFile "{self.pid_file}"',
            f'ErrorLog "{self.folder}/error.log"',
            "LogLevel warn",
            "ServerName localhost",
            f"User {user}",
            f"Group {group}",
            *(f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in APACHE_MODULES),
            "TypesConfig /etc/mime.types"
            if Path("/etc/mime.types").exists()
            else "TypesConfig /dev/null",
            # A port of its own, so Apache starts before any site gives it one.
            *([f"Listen 127.0.0.1:{self.control_port}"] if listen else []),
            f'IncludeOptional "{include}"',
        ]
        return "\n".join(lines) + "\n"

    def test(self, conf: Path) -> subprocess.CompletedProcess[str]:
        return run_checked([self.binary, "-t", "-f", str(conf)])

    @property
    def test_command(self) -> str:
        return shlex.join([self.binary, "-t", "-f", str(self.conf)])

    @property
    def reload_command(self) -> str:
        return shlex.join([self.binary, "-k", "graceful", "-f", str(self.conf)])

    def start(self) -> None:
        self.conf.write_text(self.main_config(f"{self.sites}/*.conf"))
        result = run_checked([self.binary, "-k", "start", "-f", str(self.conf)])
        assert result.returncode == 0, result.stderr + result.stdout
        wait_for("Apache's pid file", lambda: self.pid_file.exists() or None)

        def listening() -> bool:
            with socket.create_connection(("127.0.0.1", self.control_port), timeout=1):
                return True

        wait_for("Apache's port", listening)

    def stop(self) -> None:
        stop_by_pid_file(self.pid_file)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    server = Nginx(tmp_path / "nginx")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def apache(tmp_path: Path) -> Iterator[Apache]:
    server = Apache(tmp_path / "apache")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def www() -> Iterator[Path]:
    """Document folders the servers' unprivileged workers can read (pytest's tmp is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="provision-www-"))
    try:
        folder.chmod(0o755)
        for path, application in DIRECTORIES.items():
            (folder / path.strip("/")).mkdir(mode=0o755)
            (folder / path.strip("/") / "index.html").write_text(f"<h1>{application}</h1>\n")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Backend:
    """A plain http server a site proxies to; it answers with the path it was asked for."""

    port: int
    requests: list[tuple[str, str | None]] = field(default_factory=list)


@pytest.fixture
def backend() -> Iterator[Backend]:
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("X-Forwarded-Proto")))
            body = f"backend got {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as server:
        yield Backend(int(server.server_address[1]), seen)


# --- the servers accept what provision renders ----------------------------------------------


def _moved(project: Path, case: str) -> list[Any]:
    """Prepare and apply the case with every port moved to a free one, every address to
    loopback (nginx -t binds what it listens on)."""
    ports = {port: free_port() for port in (80, 443, 8080, 8443)}
    addresses = {"10.0.0.5": "127.0.0.1", "127.0.0.1": "127.0.0.1"}
    if not ipv6_loopback():
        addresses["::1"] = "127.0.0.2"
    runs = prepare(project, case, ports=ports, addresses=addresses)
    apply(project, runs)
    return runs


def _rendered(project: Path, server: str) -> list[Path]:
    found = sorted(p for p in (project / ".provision").rglob(f"{server}/*.conf"))
    assert found, f"no {server} config rendered"
    return found


# The golden cases nginx and Apache render (the portal with case_insensitive_paths too).
SERVER_CASES = (*CASES, "insensitive")


@pytest.mark.parametrize("case", SERVER_CASES)
def test_nginx_accepts_every_rendered_config(project: Path, tmp_path: Path, case: str) -> None:
    server = Nginx(tmp_path / "nginx-check")
    _moved(project, case)
    for config in _rendered(project, "nginx"):
        conf = server.folder / f"{config.stem}.main.conf"
        conf.write_text(server.main_config(str(config)))
        result = server.test(conf)
        assert result.returncode == 0, f"nginx -t rejected {config}:\n{result.stderr}"
        assert "test is successful" in result.stderr


@pytest.mark.parametrize("case", SERVER_CASES)
def test_apache_accepts_and_starts_every_rendered_config(
    project: Path, tmp_path: Path, case: str
) -> None:
    """``apache2 -t``, then a real start: -t does not bind, and only binding shows a Listen
    that clashes with another ("Address already in use")."""
    server = Apache(tmp_path / "apache-check")
    _moved(project, case)
    for config in _rendered(project, "apache"):
        conf = server.folder / f"{config.stem}.main.conf"
        conf.write_text(server.main_config(str(config), listen=False))
        result = server.test(conf)
        assert result.returncode == 0, f"apache2 -t rejected {config}:\n{result.stderr}"
        assert "Syntax OK" in result.stdout + result.stderr
        try:
            started = run_checked([server.binary, "-k", "start", "-f", str(conf)])
            log = server.folder / "error.log"
            assert started.returncode == 0, (
                f"Apache did not start with {config}:\n{started.stderr}{started.stdout}"
                f"{log.read_text() if log.exists() else ''}"
            )
            wait_for("Apache's pid file", lambda: server.pid_file.exists() or None)
        finally:
            server.stop()
        wait_for("Apache to stop", lambda: None if server.pid_file.exists() else True)


def test_apache_sites_sharing_a_port_listen_once(project: Path, tmp_path: Path) -> None:
    """Two Apache sites on the same address:port: one Listen between them (a second would be
    "Cannot define multiple Listeners on the same IP:port")."""
    port = free_port()
    first = _site("apache", port, www=tmp_path, folder=tmp_path / "apache-sites")
    second = {
        **first,
        "name": "Second on Apache",
        "config": f"{tmp_path}/apache-sites/b.conf",
        "bindings": [{**first["bindings"][0], "host": "localhost"}],
    }
    first["config"] = f"{tmp_path}/apache-sites/a.conf"
    book = _book([FQDN, "localhost"], [first, second])
    (project / "playbooks" / "shared.yml").write_text(yaml.safe_dump(book, sort_keys=False))
    (project / "inventory" / "servers.yml").write_text(yaml.safe_dump(INVENTORY))
    result = Cli(project)("apply", "playbooks/shared.yml", "-i", "inventory/servers.yml")
    assert result.exit_code == 0, result.stdout + result.stderr
    server = Apache(tmp_path / "apache-check")
    conf = server.folder / "main.conf"
    conf.write_text(server.main_config(f"{tmp_path}/apache-sites/*.conf", listen=False))
    checked = server.test(conf)
    assert checked.returncode == 0, checked.stderr
    texts = [(tmp_path / "apache-sites" / name).read_text() for name in ("a.conf", "b.conf")]
    assert all(f"Listen 127.0.0.1:{port} https" in text for text in texts)


# --- end to end -----------------------------------------------------------------------------

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


def _site(
    server: str,
    port: int,
    *,
    www: Path,
    folder: Path,
    commands: Nginx | Apache | None = None,
    http_port: int | None = None,
    backend_port: int | None = None,
    case_insensitive: bool = False,
) -> dict[str, Any]:
    """A CallManager-like site on 127.0.0.1:port; with ``http_port``, an http binding that
    redirects to it; with ``backend_port``, /api proxied to that backend's /backend."""
    bindings: list[dict[str, Any]] = [
        {"protocol": "https", "address": "127.0.0.1", "port": port, "certificate": "httpscert"}
    ]
    if http_port is not None:
        bindings.append(
            {
                "protocol": "http",
                "address": "127.0.0.1",
                "port": http_port,
                "redirect_to_https": True,
            }
        )
    directories: list[dict[str, Any]] = [
        {"path": path, "application": application, "physical_path": f"{www}/{path.strip('/')}"}
        for path, application in DIRECTORIES.items()
    ]
    if backend_port is not None:
        directories.append(
            {
                "path": "/api",
                "application": "A backend",
                "proxy_to": f"http://127.0.0.1:{backend_port}/backend",
            }
        )
    entry: dict[str, Any] = {
        "name": f"CallManager on {server}",
        "server": server,
        "config": f"{folder}/callmanager.conf",
        "reload": commands is not None,
        "bindings": bindings,
        "virtual_directories": directories,
    }
    if commands is not None:
        entry["test_command"] = commands.test_command
        entry["reload_command"] = commands.reload_command
    if case_insensitive:
        entry["case_insensitive_paths"] = True
    return entry


def _book(names: list[str], sites: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "CallManager HTTPS on real servers",
        "hosts": "callmanager",
        "certificates_dir": "{{ certificates_dir }}",
        "certificates": [
            {
                "name": "httpscert",
                "source": "self-signed",
                "key": {"type": "ecdsa", "curve": "p256"},
                "subject": {"common_name": "{{ host.fqdn }}"},
                "names": names,
                "validity_days": 90,
                "outputs": [
                    {"file": "httpscert.cer", "format": "der", "content": "root"},
                    {"file": "httpscert.pem", "format": "pem", "content": "fullchain"},
                    {"file": "httpscert.key", "format": "pem", "content": "key"},
                ],
            }
        ],
        "sites": sites,
    }


@dataclass
class Deployment:
    project: Path
    nginx: Nginx
    apache: Apache
    www: Path
    backend: Backend
    ports: dict[str, int]

    @property
    def certificates(self) -> Path:
        return self.project / ".provision" / "cm-pub-01" / "certificates"

    def write(
        self,
        names: list[str],
        templates: dict[str, str] | None = None,
        reload_commands: dict[str, str] | None = None,
        case_insensitive: bool = False,
    ) -> None:
        sites = [
            _site(
                server,
                self.ports[server],
                www=self.www,
                folder=commands.sites,
                commands=commands,
                http_port=self.ports[f"{server}-http"],
                backend_port=self.backend.port,
                case_insensitive=case_insensitive,
            )
            for server, commands in (("nginx", self.nginx), ("apache", self.apache))
        ]
        for site in sites:
            if templates and site["server"] in templates:
                site["template"] = templates[site["server"]]
            if reload_commands and site["server"] in reload_commands:
                site["reload_command"] = reload_commands[site["server"]]
        book = _book(names, sites)
        (self.project / "playbooks" / "servers.yml").write_text(
            yaml.safe_dump(book, sort_keys=False)
        )
        (self.project / "inventory" / "servers.yml").write_text(yaml.safe_dump(INVENTORY))

    def apply(self) -> Any:
        return Cli(self.project)("apply", "playbooks/servers.yml", "-i", "inventory/servers.yml")

    def root(self) -> bytes:
        return (self.certificates / "httpscert.cer").read_bytes()

    def leaf(self) -> bytes:
        return leaf_of_pem(self.certificates / "httpscert.pem")

    def wait_until_serving(self, server: str, leaf: bytes, timeout: float = 15.0) -> None:
        """Until the server presents ``leaf`` on several connections in a row: after a reload,
        old workers may still accept a few connections with the old certificate."""
        port = self.ports[server]
        streak = [0]

        def settled() -> bool | None:
            streak[0] = streak[0] + 1 if served_leaf(port) == leaf else 0
            return True if streak[0] >= 5 else None

        wait_for(
            f"{server} on port {port} to serve certificate {fingerprint(leaf)[:16]}",
            settled,
            timeout,
        )

    def assert_serves(self, server: str, names: list[str]) -> None:
        """Every directory, for every name, verified against the root provision wrote."""
        root, leaf = self.root(), self.leaf()
        for name in names:
            for path, application in DIRECTORIES.items():
                response = fetch(self.ports[server], name, f"{path}/", root)
                assert response.status == 200, (server, name, path, response)
                assert response.body == (self.www / path.strip("/") / "index.html").read_bytes()
                assert application.encode() in response.body
                assert fingerprint(response.leaf) == fingerprint(leaf), (server, name)


@pytest.fixture
def deployment(
    project: Path, nginx: Nginx, apache: Apache, www: Path, backend: Backend
) -> Deployment:
    ports = {name: free_port() for name in ("nginx", "apache", "nginx-http", "apache-http")}
    return Deployment(project, nginx, apache, www, backend, ports)


NAMES = ["{{ host.fqdn }}", "localhost", "127.0.0.1"]
NEW_NAMES = ["{{ host.fqdn }}", "callmanager.voice.example.com", "localhost", "127.0.0.1"]


def test_apply_configures_live_servers_and_reloads_them_for_a_new_certificate(
    deployment: Deployment,
) -> None:
    deployment.write(NAMES)
    result = deployment.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "create   site CallManager on nginx" in result.stdout
    assert "create   site CallManager on apache" in result.stdout
    first = deployment.leaf()
    for server in ("nginx", "apache"):
        deployment.wait_until_serving(server, first)
        deployment.assert_serves(server, [FQDN, "localhost", "127.0.0.1"])
        port = deployment.ports[server]
        # The http binding sends clients to the https one, path and query kept.
        moved = http_get(deployment.ports[f"{server}-http"], "localhost", "/CCMAdmin/?a=1")
        assert (moved.status, moved.headers.get("location")) == (
            301,
            f"https://localhost:{port}/CCMAdmin/?a=1",
        ), (server, moved)
        # /api is proxied: the directory's path is replaced by the target's.
        root = deployment.root()
        assert fetch(port, FQDN, "/api", root).headers["location"].endswith("/api/")
        proxied = fetch(port, FQDN, "/api/users?id=7", root)
        assert (proxied.status, proxied.body) == (200, b"backend got /backend/users?id=7")
        assert deployment.backend.requests[-1] == ("/backend/users?id=7", "https")

    # New names: the certificate is replaced, the configs are not, both servers reload.
    deployment.write(NEW_NAMES)
    result = deployment.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "names changed" in result.stdout
    assert "site CallManager" not in result.stdout  # the configs did not change
    second = deployment.leaf()
    assert fingerprint(second) != fingerprint(first)
    for server in ("nginx", "apache"):
        deployment.wait_until_serving(server, second)
        deployment.assert_serves(server, ["callmanager.voice.example.com", FQDN, "127.0.0.1"])

    # Nothing left to do: nothing written, nothing reloaded.
    result = deployment.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "changed 0" in result.stdout


def test_case_insensitive_paths_on_live_servers(deployment: Deployment) -> None:
    """nginx and Apache match a directory's path as written: /ccmadmin/ is a 404 where the
    playbook says /CCMAdmin. With case_insensitive_paths, every spelling is served what the
    playbook's spelling serves, files and proxied directories alike."""
    name = "127.0.0.1"  # as `curl https://127.0.0.1:PORT/ccmadmin/` asks

    def status(server: str, path: str) -> int:
        return fetch(deployment.ports[server], name, path, deployment.root()).status

    deployment.write(NAMES)
    result = deployment.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    admin = (deployment.www / "CCMAdmin" / "index.html").read_bytes()
    for server in ("nginx", "apache"):
        deployment.wait_until_serving(server, deployment.leaf())
        assert status(server, "/CCMAdmin/") == 200
        assert status(server, "/ccmadmin/") == 404, server
        assert status(server, "/API/users") == 404, server

    deployment.write(NAMES, case_insensitive=True)
    result = deployment.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "update   site CallManager on nginx" in result.stdout
    assert "update   site CallManager on apache" in result.stdout
    for server in ("nginx", "apache"):
        port = deployment.ports[server]
        # The certificate did not change: wait for the reload by what the new config serves,
        # on several connections in a row (old workers may still take a few after a reload).
        wait_for(
            f"{server} to reload",
            lambda s=server: all(status(s, "/ccmadmin/") == 200 for _ in range(5)) or None,
        )
        for path in ("/CCMAdmin/", "/ccmadmin/", "/CCMADMIN/", "/cCmAdMiN/index.html"):
            response = fetch(port, name, path, deployment.root())
            assert (response.status, response.body) == (200, admin), (server, path)
        user = fetch(port, name, "/ccmuser/", deployment.root())
        assert user.body == (deployment.www / "CCMUser" / "index.html").read_bytes(), server
        # Without the slash: sent to the directory (nginx with the playbook's spelling).
        moved = fetch(port, name, "/ccmadmin", deployment.root())
        assert moved.status == 301, (server, moved)
        assert moved.headers["location"].lower().endswith("/ccmadmin/"), (server, moved)
        # Proxied directories too, query kept; and a longer name is not the directory.
        proxied = fetch(port, name, "/API/users?id=7", deployment.root())
        assert (proxied.status, proxied.body) == (200, b"backend got /backend/users?id=7")
        assert status(server, "/ccmadminx/") == 404, server

    # And back: without the option, the path is matched as written again.
    deployment.write(NAMES)
    assert deployment.apply().exit_code == 0
    for server in ("nginx", "apache"):
        wait_for(
            f"{server} to reload",
            lambda s=server: all(status(s, "/ccmadmin/") == 404 for _ in range(5)) or None,
        )
        assert status(server, "/CCMAdmin/") == 200


BROKEN = {
    "nginx": (
        '{% include "nginx/site.conf.j2" %}\nno_such_directive on;\n',
        'unknown directive "no_such_directive"',
    ),
    "apache": (
        '{% include "apache/site.conf.j2" %}\nNoSuchDirective on\n',
        "Invalid command 'NoSuchDirective'",
    ),
}


@pytest.mark.parametrize("server", ["nginx", "apache"])
def test_a_config_the_server_rejects_is_rolled_back_and_the_host_fails(
    deployment: Deployment, server: str
) -> None:
    deployment.write(NAMES)
    result = deployment.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    before = deployment.leaf()
    deployment.wait_until_serving(server, before)
    sites = deployment.nginx.sites if server == "nginx" else deployment.apache.sites
    config = sites / "callmanager.conf"
    files = {p: p.read_bytes() for p in [config, *deployment.certificates.glob("httpscert.*")]}

    # A broken template and new names in one run: nothing of it may stay.
    template, message = BROKEN[server]
    (deployment.project / "templates" / server / "broken.conf.j2").write_text(template)
    deployment.write(NEW_NAMES, templates={server: f"{server}/broken.conf.j2"})
    result = deployment.apply()
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "cm-pub-01: failed: config test" in result.stdout
    assert message in result.stdout
    assert "previous files restored" in result.stdout
    assert {p: p.read_bytes() for p in files} == files
    # The server never took the broken config: it still serves the old certificate.
    assert served_leaf(deployment.ports[server]) == before
    deployment.assert_serves(server, [FQDN, "localhost", "127.0.0.1"])


def test_the_next_apply_reloads_a_server_whose_reload_failed(deployment: Deployment) -> None:
    """The files are in place after a failed reload, but the server runs the old ones: the
    next apply must reload it even though nothing is left to write."""
    deployment.write(NAMES)
    assert deployment.apply().exit_code == 0
    deployment.wait_until_serving("nginx", deployment.leaf())

    # New names, but the reload fails (say the server was briefly unreachable).
    deployment.write(NEW_NAMES, reload_commands={"nginx": "sh -c 'echo unreachable; exit 3'"})
    result = deployment.apply()
    assert result.exit_code == 1, result.stdout
    assert "reload `sh -c 'echo unreachable; exit 3'` failed" in result.stdout
    assert "unreachable" in result.stdout

    # The reload works again: applying the same playbook must bring the server up to date.
    deployment.write(NEW_NAMES)
    result = deployment.apply()
    assert result.exit_code == 0, result.stdout
    # (Without the reload nginx never serves it: the default deadline only spares a busy machine.)
    deployment.wait_until_serving("nginx", deployment.leaf())
