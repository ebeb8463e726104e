"""A real Pebble (Let's Encrypt's test ACME CA) and its challenge test server on loopback.

Pebble listens with a TLS certificate made here by openssl (the Debian package ships none),
which the playbooks trust through ``ca_bundle``; it resolves every name through
pebble-challtestsrv's DNS, whose management API the DNS-01 hooks call to set TXT records.
Every port is a free one, so concurrent suites never meet. Pebble keeps its randomised
behaviour unless a test turns it off: PEBBLE_WFE_NONCEREJECT rejects a share of nonces, and
without PEBBLE_VA_NOSLEEP each validation waits a random while.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from conftest import require_tool
from ports import free_port


@dataclass
class Pebble:
    folder: Path
    directory: str  # https://127.0.0.1:PORT/dir
    management: str  # https://127.0.0.1:PORT
    challtestsrv: str  # http://127.0.0.1:PORT (management API)
    dns: str  # 127.0.0.1:PORT
    ca_bundle: Path  # the TLS root of Pebble's own listener

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def root(self, index: int = 0) -> bytes:
        """The root Pebble issues under (new at each start); 1, ...: its alternate roots
        (PEBBLE_ALTERNATE_ROOTS)."""
        with urllib.request.urlopen(
            f"{self.management}/roots/{index}", context=self._context(), timeout=10
        ) as answer:
            return bytes(answer.read())

    def set_hook(self) -> str:
        """A dns_hook `set` command: the TXT record, on the challenge test server."""
        return (
            "curl -sf -X POST -d "
            '"{\\"host\\":\\"$PROVISION_ACME_NAME\\",\\"value\\":\\"$PROVISION_ACME_VALUE\\"}" '
            f"{self.challtestsrv}/set-txt"
        )

    def clear_hook(self) -> str:
        return (
            'curl -sf -X POST -d "{\\"host\\":\\"$PROVISION_ACME_NAME\\"}" '
            f"{self.challtestsrv}/clear-txt"
        )


def _tls_certificate(folder: Path) -> tuple[Path, Path]:
    key, cert = folder / "tls.key", folder / "tls.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=pebble test listener",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert


def _wait_listening(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    # Pebble makes its issuers' RSA keys before it listens: several with alternate roots and
    # longer chains, slow on a loaded machine.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not listen on {port}")


@contextlib.contextmanager
def running(
    folder: Path,
    env: Mapping[str, str],
    *,
    http_port: int | None = None,
    eab: Mapping[str, str] | None = None,
) -> Iterator[Pebble]:
    """Pebble and pebble-challtestsrv, stopped (by their own process ids) on leaving.
    ``eab``: key identifier -> base64url HMAC key; Pebble then requires a binding."""
    pebble = require_tool("pebble")
    challtestsrv = require_tool("pebble-challtestsrv")
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = _tls_certificate(folder)
    dns_port, manage_port = free_port(), free_port()
    acme_port, pebble_manage = free_port(), free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{acme_port}",
            "managementListenAddress": f"127.0.0.1:{pebble_manage}",
            "certificate": str(cert),
            "privateKey": str(key),
            # HTTP-01 is validated on this port of each name (the site's http binding).
            "httpPort": http_port or free_port(),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(eab),
            "externalAccountMACKeys": dict(eab or {}),
        }
    }
    (folder / "pebble.json").write_text(json.dumps(config))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        helper = subprocess.Popen(
            [
                challtestsrv,
                "-dns01", f"127.0.0.1:{dns_port}",
                "-management", f"127.0.0.1:{manage_port}",
                "-http01", "", "-https01", "", "-tlsalpn01", "",
                "-defaultIPv6", "",
            ],
            stdout=(folder / "challtestsrv.log").open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        processes.append(helper)
        _wait_listening(manage_port, helper, "pebble-challtestsrv")
        ca = subprocess.Popen(
            [pebble, "-config", str(folder / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns_port}"],
            stdout=(folder / "pebble.log").open("wb"),
            stderr=subprocess.STDOUT,
            env=dict(env),
        )
        processes.append(ca)
        _wait_listening(acme_port, ca, "pebble")
        _wait_listening(pebble_manage, ca, "pebble's management interface")
        yield Pebble(
            folder,
            f"https://127.0.0.1:{acme_port}/dir",
            f"https://127.0.0.1:{pebble_manage}",
            f"http://127.0.0.1:{manage_port}",
            f"127.0.0.1:{dns_port}",
            cert,
        )
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
