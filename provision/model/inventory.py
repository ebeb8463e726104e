"""The shape of an Ansible-style YAML inventory, as a model (also the source of its JSON Schema).

Host and group variables are free-form, as in Ansible; only the keys `provision` itself reads
are typed, on the resolved ``Host``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from provision.model.base import Strict


class Group(Strict):
    """A group of hosts, as in Ansible."""

    hosts: dict[str, dict[str, Any] | None] | None = None
    """The group's hosts by name, each with its own variables (or nothing)."""
    vars: dict[str, Any] | None = None
    """Variables every host of the group (and of its children) gets."""
    children: dict[str, Group | None] | None = None
    """Groups inside this one, by name."""


class InventoryFile(Strict):
    """The top level: `all`, and optionally other groups Ansible treats as children of all."""

    model_config = Strict.model_config | {"extra": "allow"}
    # Every other top-level key is a group too: typing the extras validates each one with its
    # own path (``web.hostz``), so an error names the key and line a person wrote.
    __pydantic_extra__: dict[str, Group | None] = Field(init=False)
    all: Group | None = None
    """The group every host belongs to."""


class Host(Strict):
    """A resolved host: its name, groups and merged variables."""

    name: str
    """The host's inventory name; host.name in templates."""
    address: str
    """How provision reaches the host (default: its inventory name); host.address in
    templates."""
    fqdn: str | None = None
    """The host's fully qualified name; host.fqdn in templates."""
    # winrm and psrp are Ansible's Windows connections: they make the host Windows (below),
    # which no transport reaches yet.
    connection: Literal["local", "ssh", "winrm", "psrp"] = "local"
    """local (this machine) or ssh; winrm and psrp (Ansible's Windows connections) make the
    host Windows, which no transport reaches yet (`provision render`)."""
    # Decides how the host's paths are spelled (provision.transport.base.PathFlavour).
    os: Literal["posix", "windows"] = "posix"
    """posix (default) or windows: how the host spells paths. Windows hosts take absolute
    paths (C:\\...); no transport reaches them yet, `provision render` writes their files."""
    port: int = Field(default=22, ge=1, le=65535)
    """The SSH port."""
    user: str | None = None
    """The SSH user."""
    ssh_key: str | None = None
    """The SSH private key file."""
    become: bool = False
    """Run commands with sudo."""
    become_user: str | None = None
    """Whom become runs as: root (the default; provision becomes no other user)."""
    ssh_args: str | None = None
    """Extra OpenSSH options (Ansible's ansible_ssh_common_args, with ansible_ssh_extra_args
    added after them): -o StrictHostKeyChecking=accept-new, -o UserKnownHostsFile=FILE and
    -o ConnectTimeout=N are honoured; options that only tune the connection are ignored; any
    other is an error."""
    groups: tuple[str, ...] = ()
    """The groups the host belongs to; host.groups in templates."""
    vars: dict[str, Any] = Field(default_factory=dict)
    """The host's merged variables."""
