"""Free loopback ports for the test servers: one helper, never the same port twice in a run.

Binding port 0 and closing the socket gets a port nobody holds at that moment; asked again at
once, the kernel may hand out the same one (it did: an HAProxy case got one port for its http
and its https binding, and the playbook was refused). So every port handed out is remembered
for the life of the test process and not handed out again.
"""

from __future__ import annotations

import socket

_GIVEN: set[int] = set()


def free_port() -> int:
    for _ in range(1000):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port
    raise RuntimeError("no loopback port left that this test run has not handed out already")
