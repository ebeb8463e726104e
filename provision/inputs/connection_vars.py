"""Ansible's connection variables (``ansible_host``, ``ansible_connection: smart``, ...) read
as provision's own host keys, and the ``ansible_*`` names provision accepts but does not use.

An Ansible inventory is loaded unchanged: a variable provision has no use for (an interpreter
path, a password it never sends) is kept as a variable and listed by ``validate -v``, never an
error. What would silently reach another machine if ignored (a proxy in the SSH arguments) is
an error instead.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Ansible's name -> ours. Where two Ansible names give one key, the first listed wins at the
# same level, as ``ansible_host`` beats the older ``ansible_ssh_host`` in Ansible.
ALIASES = {
    "ansible_host": "address",
    "ansible_ssh_host": "address",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_user": "user",
    "ansible_ssh_user": "user",
    "ansible_connection": "connection",
    "ansible_ssh_private_key_file": "ssh_key",
    "ansible_become": "become",
    "ansible_become_user": "become_user",
    "ansible_ssh_common_args": "ssh_args",
}
# Added to ansible_ssh_common_args by Ansible's ssh connection, and so read with it (a
# ProxyJump here would otherwise be dropped and the host reached another way).
EXTRA_ARGS = "ansible_ssh_extra_args"
# Read elsewhere: a PowerShell shell makes the host Windows (provision.inputs.inventory).
_READ = frozenset({"ansible_shell_type", EXTRA_ARGS})

# Ansible's connection plugins that are ours under another name; paramiko is another SSH
# client, smart is Ansible's "ssh when it can", both reach the host over SSH as we do.
CONNECTIONS = {
    "ssh": "ssh",
    "smart": "ssh",
    "paramiko": "ssh",
    "paramiko_ssh": "ssh",
    "ansible.builtin.ssh": "ssh",
    "ansible.builtin.paramiko_ssh": "ssh",
    "local": "local",
    "ansible.builtin.local": "local",
    "winrm": "winrm",
    "ansible.builtin.winrm": "winrm",
    "psrp": "psrp",
    "ansible.builtin.psrp": "psrp",
}


def with_aliases(layer: Mapping[str, Any]) -> dict[str, Any]:
    """One level's variables, each alias also set as our key unless the level gives ours."""
    result = dict(layer)
    given: set[str] = set()
    for alias, field in ALIASES.items():
        if alias in layer and field not in layer and field not in given:
            result[field] = layer[alias]
            given.add(field)
    return result


def ignored(variables: Mapping[str, Any]) -> list[str]:
    """The ``ansible_*`` variables provision accepts and does not use, by name."""
    return sorted(
        name
        for name in variables
        if name.startswith("ansible_") and name not in ALIASES and name not in _READ
    )


def ssh_arguments(variables: Mapping[str, Any]) -> str | None:
    """The host's SSH arguments: ``ssh_args`` (ansible_ssh_common_args), then
    ``ansible_ssh_extra_args``, as Ansible's ssh connection puts them on one command line."""
    given = [str(variables[k]) for k in ("ssh_args", EXTRA_ARGS) if variables.get(k) is not None]
    return " ".join(given) if given else None


def unused(variables: Mapping[str, Any]) -> list[str]:
    """What ``validate -v`` lists: the ignored ``ansible_*`` names, and the options of
    ``ansible_ssh_common_args`` (and ``_extra_args``) provision leaves to its own defaults."""
    names = ignored(variables)
    args = ssh_arguments(variables)
    if args is not None:
        with contextlib.suppress(ValueError):  # loading refused it already
            names += [f"ssh_args -o {option}" for option in parse_ssh_args(args).ignored]
    return names


@dataclass(frozen=True)
class SshArgs:
    """What ``ansible_ssh_common_args`` says that provision's SSH client can do."""

    accept_new_host_keys: bool | None = None
    known_hosts: str | None = None
    connect_timeout: float | None = None
    ignored: tuple[str, ...] = ()


# Options that only tune or loosen the connection: keeping provision's behaviour is safe.
_HARMLESS = frozenset(
    {
        "controlmaster",
        "controlpersist",
        "controlpath",
        "serveraliveinterval",
        "serveralivecountmax",
        "forwardagent",
        "compression",
        "loglevel",
        "preferredauthentications",
        "pubkeyauthentication",
        "passwordauthentication",
        "kbdinteractiveauthentication",
        "gssapiauthentication",
        "identitiesonly",
        "tcpkeepalive",
        "addkeystoagent",
    }
)


def parse_ssh_args(text: str) -> SshArgs:
    """``-o Name=value`` options of ``ansible_ssh_common_args``; ValueError says which one
    provision cannot honour (one that would reach the host another way, or not at all)."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot read the arguments: {exc}") from None
    options: list[tuple[str, str]] = []
    position = 0
    while position < len(words):
        word = words[position]
        if word == "-o" and position + 1 < len(words):
            options.append(_option(words[position + 1]))
            position += 2
        elif word.startswith("-o") and len(word) > 2:
            options.append(_option(word[2:]))
            position += 1
        else:
            raise ValueError(f"{word!r}: only -o options are read (give ansible_port, ...)")
    accept: bool | None = None
    known: str | None = None
    timeout: float | None = None
    skipped: list[str] = []
    for name, value in options:
        key = name.lower()
        if key == "stricthostkeychecking":
            # accept-new is ours; "no" would trust any key: provision keeps checking them.
            if value.lower() == "accept-new":
                accept = True
            else:
                skipped.append(f"{name}={value}")
        elif key == "userknownhostsfile":
            if value.split()[0] != "/dev/null":
                known = value.split()[0]
            else:
                skipped.append(f"{name}={value}")
        elif key == "connecttimeout":
            try:
                timeout = float(value)
            except ValueError:
                raise ValueError(f"-o {name}={value}: not a number of seconds") from None
        elif key in _HARMLESS:
            skipped.append(f"{name}={value}")
        else:
            raise ValueError(f"-o {name}={value} is not an option provision's SSH client has")
    return SshArgs(accept, known, timeout, tuple(skipped))


def _option(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        name, _, value = text.partition(" ")
    return name.strip(), value.strip()


__all__ = [
    "ALIASES",
    "CONNECTIONS",
    "SshArgs",
    "ignored",
    "parse_ssh_args",
    "ssh_arguments",
    "unused",
    "with_aliases",
]
