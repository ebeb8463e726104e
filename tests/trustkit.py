"""Helpers for the trust tests: a real nginx on loopback serving given certificates, and curl
trusting only a given bundle."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import require_tool


@dataclass(frozen=True)
class Served:
    name: str  # the server_name clients ask for
    certificate: Path  # full chain PEM
    key: Path
    port: int


def nginx_conf(prefix: Path, servers: str) -> Path:
    """A test nginx's nginx.conf in ``prefix`` (its temp folders there, workers as root when
    the tests run as root), with the ``server`` blocks given."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers default to nobody otherwise
    conf = prefix / "nginx.conf"
    conf.write_text(f"""{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 32; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
{servers}}}
""")
    return conf


@contextmanager
def running_nginx(prefix: Path, servers: str, ports: Sequence[int]) -> Iterator[None]:
    """nginx (daemon off, its own prefix) with the ``server`` blocks given, from the moment
    each of ``ports`` on 127.0.0.1 answers until the block ends."""
    binary = require_tool("nginx")
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    conf = nginx_conf(prefix, servers)
    process = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        for port in ports:
            while True:
                if process.poll() is not None:
                    log = prefix / "error.log"
                    logged = log.read_text() if log.exists() else ""
                    stderr = process.stderr.read().decode() if process.stderr else ""
                    pytest.fail(f"nginx exited with {process.returncode}: {stderr} {logged}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail("nginx did not open its ports within 10 s")
                    time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


@contextmanager
def nginx(prefix: Path, sites: list[Served]) -> Iterator[None]:
    """nginx serving each site on 127.0.0.1:port."""
    servers = "".join(
        f"""    server {{
        listen 127.0.0.1:{s.port} ssl;
        server_name {s.name};
        ssl_certificate {s.certificate};
        ssl_certificate_key {s.key};
        return 200 "ok {s.name}\\n";
    }}
"""
        for s in sites
    )
    with running_nginx(prefix, servers, [s.port for s in sites]):
        yield


def curl(site: Served, bundle: Path) -> subprocess.CompletedProcess[str]:
    """curl trusting only ``bundle`` (no system store, no CA path)."""
    binary = require_tool("curl")
    return subprocess.run(
        [
            binary, "--silent", "--show-error", "--max-time", "10",
            "--cacert", str(bundle), "--capath", "/nonexistent",
            "--resolve", f"{site.name}:{site.port}:127.0.0.1",
            f"https://{site.name}:{site.port}/",
        ],
        capture_output=True, text=True, check=False,
        env={"PATH": os.environ.get("PATH", ""), "SSL_CERT_FILE": str(bundle)},
    )  # fmt: skip
