"""Choose and build a host's transport from its inventory entry."""

from __future__ import annotations

from dataclasses import dataclass

from provision.errors import ProvisionError
from provision.model.inventory import Host
from provision.transport.base import Transport
from provision.transport.local import LocalTransport


@dataclass(frozen=True)
class ConnectOptions:
    """Run-wide connection settings, from the command line."""

    known_hosts: str | None = None  # an extra known_hosts file (also written by accept_new)
    accept_new_host_keys: bool = False  # OpenSSH's StrictHostKeyChecking=accept-new
    connect_timeout: float = 10.0
    command_timeout: float = 60.0


def make_transport(host: Host, options: ConnectOptions | None = None) -> Transport:
    if host.connection == "local":
        return LocalTransport(host.name)
    if host.connection == "ssh":
        # Imported here: asyncssh is only loaded by runs that reach an SSH host.
        from provision.transport.ssh import SSHTransport

        return SSHTransport(host, options)
    raise ProvisionError(f"{host.name}: connection {host.connection!r} is not supported yet")
