"""The ACME network's retry policy against a real HTTP server on loopback that answers as a
busy or rate-limiting CA does (Pebble has no rate limits to provoke): ``Retry-After`` is
honoured, a bounded number of times, and a long one fails at once naming when to return."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from acme import client, messages
from cryptography.hazmat.primitives.asymmetric import ec
from httpkit import serving
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from provision.acmeclient.network import BUSY_TRIES, Network, RetryLater

DIRECTORY = {"newNonce": "http://x/n", "newAccount": "http://x/a", "newOrder": "http://x/o"}


class Ca:
    """Answers GET /dir: ``busy`` answers first (status, Retry-After), then the directory."""

    def __init__(self) -> None:
        self.busy: list[tuple[int, str | None]] = []
        self.requests = 0
        ca = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ca.requests += 1
                if ca.busy:
                    status, after = ca.busy.pop(0)
                    body = json.dumps(
                        {"type": "urn:ietf:params:acme:error:rateLimited", "detail": "slow down"}
                    ).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/problem+json")
                    if after is not None:
                        self.send_header("Retry-After", after)
                else:
                    body = json.dumps(DIRECTORY).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.handler = Handler
        self.url = ""  # once served


@pytest.fixture
def ca() -> Iterator[Ca]:
    answering = Ca()
    with serving(answering.handler) as server:
        answering.url = f"http://127.0.0.1:{server.server_address[1]}/dir"
        yield answering


def _network() -> tuple[Network, list[float]]:
    net = Network(JWKEC(key=ec.generate_private_key(ec.SECP256R1())), alg=ES256)
    waits: list[float] = []
    net.sleep = waits.append  # the waits asked for, recorded instead of slept
    return net, waits


def test_retry_after_in_seconds_is_waited_for_then_the_request_succeeds(ca: Ca) -> None:
    ca.busy = [(503, "2"), (429, "1")]
    net, waits = _network()
    directory = client.ClientV2.get_directory(ca.url, net)
    assert isinstance(directory, messages.Directory)
    assert waits == [2.0, 1.0] and ca.requests == 3


def test_retry_after_as_an_http_date(ca: Ca) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    ca.busy = [(503, email.utils.format_datetime(when, usegmt=True))]
    net, waits = _network()
    client.ClientV2.get_directory(ca.url, net)
    assert len(waits) == 1 and 25 <= waits[0] <= 31


def test_retries_are_bounded(ca: Ca) -> None:
    ca.busy = [(503, "1")] * (BUSY_TRIES + 1)
    net, waits = _network()
    with pytest.raises(RetryLater) as raised:
        client.ClientV2.get_directory(ca.url, net)
    assert len(waits) == BUSY_TRIES and ca.requests == BUSY_TRIES + 1
    assert "rateLimited" in raised.value.problem


def test_a_long_retry_after_fails_at_once_naming_when(ca: Ca) -> None:
    ca.busy = [(429, "3600")]
    net, waits = _network()
    with pytest.raises(RetryLater) as raised:
        client.ClientV2.get_directory(ca.url, net)
    assert waits == [] and ca.requests == 1
    assert raised.value.when is not None
    later = raised.value.when - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=59) < later <= dt.timedelta(hours=1)
