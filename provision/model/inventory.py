"""The shape of an Ansible-style YAML inventory, as a model (also the source of its JSON Schema).

Host and group variables are free-form, as in Ansible; only the keys `provision` itself reads
are typed, on the resolved ``Host``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from provision.model.base import Strict


class Group(Strict):
    hosts: dict[str, dict[str, Any] | None] | None = None
    vars: dict[str, Any] | None = None
    children: dict[str, Group | None] | None = None


class InventoryFile(Strict):
    """The top level: `all`, and optionally other groups Ansible treats as children of all."""

    model_config = Strict.model_config | {"extra": "allow"}
    # Every other top-level key is a group too: typing the extras validates each one with its
    # own path (``web.hostz``), so an error names the key and line a person wrote.
    __pydantic_extra__: dict[str, Group | None] = Field(init=False)
    all: Group | None = None


class Host(Strict):
    """A resolved host: its name, groups and merged variables."""

    name: str
    address: str
    fqdn: str | None = None
    # winrm and psrp are Ansible's Windows connections: they make the host Windows (below),
    # which no transport reaches yet.
    connection: Literal["local", "ssh", "winrm", "psrp"] = "local"
    # Decides how the host's paths are spelled (provision.transport.base.PathFlavour).
    os: Literal["posix", "windows"] = "posix"
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = None
    ssh_key: str | None = None
    become: bool = False
    groups: tuple[str, ...] = ()
    vars: dict[str, Any] = Field(default_factory=dict)
