"""Choose and build a host's transport from its inventory entry."""

from __future__ import annotations

import dataclasses

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

        return SSHTransport(host, _with_host_ssh_args(host, options))
    raise ProvisionError(f"{host.name}: connection {host.connection!r} is not supported yet")


def _with_host_ssh_args(host: Host, options: ConnectOptions | None) -> ConnectOptions | None:
    """The run's options, with what the host's ``ssh_args`` (ansible_ssh_common_args) sets."""
    if host.ssh_args is None:
        return options
    from provision.inputs.connection_vars import parse_ssh_args

    args = parse_ssh_args(host.ssh_args)  # checked when the inventory was loaded
    base = options or ConnectOptions()
    return dataclasses.replace(
        base,
        accept_new_host_keys=base.accept_new_host_keys or bool(args.accept_new_host_keys),
        known_hosts=args.known_hosts or base.known_hosts,
        connect_timeout=args.connect_timeout or base.connect_timeout,
    )
