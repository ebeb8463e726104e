"""The test servers' port helper: a port is handed out once per test run."""

from __future__ import annotations

import socket

from ports import free_port


def test_no_port_is_handed_out_twice() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # free when handed out: nothing holds it
