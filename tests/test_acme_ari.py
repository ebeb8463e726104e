"""The CA's renewal information (ARI, RFC 9773).

Pebble 2.4.0 (Debian's) offers no ``renewalInfo`` in its directory, so the two halves are
tested apart, each for real: fetching and recording against an HTTP server on loopback that
answers as RFC 9773 says (the request path is the RFC's certificate identifier), and
planning from a record against a certificate a real Pebble issued: renewed once the
suggested moment has passed, with the plan saying why, and not before.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import yaml
from acme import client
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from httpkit import serving
from josepy.jwa import ES256
from josepy.jwk import JWKEC
from pebble import Pebble
from test_acme import Project, ca
from test_servers import Nginx, nginx

from provision.acmeclient import renewal
from provision.acmeclient.network import Network
from provision.model.playbook import AcmeSource, Certificate

__all__ = ["ca", "nginx"]  # the fixtures, imported to be found

START = dt.datetime(2031, 1, 10, tzinfo=dt.UTC)
END = dt.datetime(2031, 1, 12, tzinfo=dt.UTC)


class AriCa:
    """A directory with renewalInfo, and the renewal information of any certificate."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        ca = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ca.paths.append(self.path)
                base = ca.url.removesuffix("/dir")
                if self.path == "/dir":
                    body: dict[str, object] = {
                        "newNonce": f"{base}/nonce",
                        "newAccount": f"{base}/account",
                        "newOrder": f"{base}/order",
                        "renewalInfo": f"{base}/ari",
                    }
                else:
                    window = {"start": START.isoformat(), "end": END.isoformat()}
                    body = {"suggestedWindow": window}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Retry-After", "21600")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.handler = Handler
        self.url = ""  # once served


@pytest.fixture
def ari() -> Iterator[AriCa]:
    answering = AriCa()
    with serving(answering.handler) as server:
        answering.url = f"http://127.0.0.1:{server.server_address[1]}/dir"
        yield answering


def _leaf() -> x509.Certificate:
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ari.test")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ARI test CA")]))
        .public_key(key.public_key())
        .serial_number(0x0123456789ABCDEF)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
        .sign(issuer_key, hashes.SHA256())
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_the_suggested_window_is_fetched_by_certificate_id_and_recorded(
    ari: AriCa, tmp_path: Path
) -> None:
    source = AcmeSource.model_validate(
        {"type": "acme", "directory": "https://ca.test/dir", "dns_hook": {"set": "x", "clear": "x"}}
    )
    net = Network(JWKEC(key=ec.generate_private_key(ec.SECP256R1())), alg=ES256)
    acme = client.ClientV2(client.ClientV2.get_directory(ari.url, net), net)
    leaf = _leaf()
    renewal.fetch_and_record(acme, source, tmp_path, "web-01/web", leaf)
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier is not None
    # The serial as the content octets of its DER INTEGER: two's complement, minimal.
    serial = leaf.serial_number.to_bytes((leaf.serial_number.bit_length() + 8) // 8, "big")
    assert serial == bytes.fromhex("0123456789abcdef")
    assert ari.paths[-1] == f"/ari/{_b64(aki.key_identifier)}.{_b64(serial)}"
    recorded = renewal.recorded(source, tmp_path, "web-01/web")
    assert recorded is not None
    assert recorded[0] == leaf.serial_number
    assert START <= recorded[1] <= END  # a moment drawn within the window, as the RFC asks
    assert renewal.recorded(source, tmp_path, "web-01/other") is None


@pytest.mark.integration
def test_a_plan_renews_once_the_cas_suggested_moment_has_passed(
    tmp_path: Path, ca: Pebble, nginx: Nginx
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    project = Project(folder, ca, nginx)
    project.write()
    assert project.run("apply").exit_code == 0
    leaf = project.leaf()
    book = yaml.safe_load((folder / "playbook.yml").read_text())
    source = Certificate.model_validate(book["certificates"][0]).source
    assert isinstance(source, AcmeSource)
    # Pebble records nothing (no renewalInfo in its directory).
    path = renewal.record_path(source, folder, "web-01/web")
    assert not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)

    def record(serial: int, moment: dt.datetime) -> None:
        text = {"serial": f"{serial:x}", "renew_at": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}
        path.write_text(json.dumps(text))

    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    record(leaf.serial_number, later)
    assert "ARI" not in project.run("plan").stdout
    record(leaf.serial_number + 1, dt.datetime(2020, 1, 1, tzinfo=dt.UTC))  # another's word
    assert "ARI" not in project.run("plan").stdout
    record(leaf.serial_number, dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    plan = project.run("plan")
    assert (
        "the CA's renewal information (ARI) suggests renewing from 2020-01-01 00:00 UTC"
        in plan.stdout
    ), plan.stdout
    applied = project.run("apply")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    assert project.leaf().serial_number != leaf.serial_number
    assert "ARI" not in project.run("plan").stdout  # the record speaks of the old one
