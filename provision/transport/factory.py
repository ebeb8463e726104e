"""Choose and build a host's transport from its inventory entry."""

from __future__ import annotations

from provision.errors import ProvisionError
from provision.model.inventory import Host
from provision.transport.base import ConnectOptions, Transport
from provision.transport.local import LocalTransport

__all__ = ["ConnectOptions", "make_transport"]  # ConnectOptions lives in base (no cycle)


def make_transport(host: Host, options: ConnectOptions | None = None) -> Transport:
    if host.os == "windows":
        # Before the connection kind: no transport reaches Windows yet, whatever it names.
        from provision.transport.windows import WindowsHost

        return WindowsHost(host.name)
    if host.connection == "local":
        return LocalTransport(host.name)
    if host.connection == "ssh":
        # Imported here: asyncssh is only loaded by runs that reach an SSH host.
        from provision.transport.ssh import SSHTransport

        return SSHTransport(host, options)
    raise ProvisionError(f"{host.name}: connection {host.connection!r} is not supported yet")
