"""Ansible's INI inventory format, read into the shape of a YAML inventory.

``[group]`` lists hosts (``name key=value ...``), ``[group:children]`` names child groups,
``[group:vars]`` sets ``key=value`` variables; hosts before any section are in no group but
``all``. Values follow Ansible's rule: each is read as a Python literal when it is one
(``port=2222`` is a number, ``on=True`` a boolean, ``xs=[1,2]`` a list), else kept as a
string; on host lines the shell-style quotes are removed first, as Ansible does. The result
is a ``Document`` whose paths carry the INI line numbers, so errors name the line written.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any

from provision.errors import InputError, Location
from provision.inputs.yaml_lines import Document, PathKey

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
# Ansible turns each character outside [A-Za-z0-9_] of a group name into '_' (its default
# "force_valid_group_names: never" only warns... but the name in --list output is kept);
# we keep names as written, as ansible-inventory does with its defaults.


def looks_like_ini(text: str) -> bool:
    """Whether the first meaningful line is an INI section header or a bare host line."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        return bool(_SECTION.match(line)) or (":" not in line and not line.startswith("-"))
    return False


def parse_ini(text: str, name: str) -> Document:
    data: dict[str, dict[str, Any]] = {}
    lines: dict[PathKey, int] = {}
    declared: set[str] = {"all", "ungrouped"}
    # (group, line) of each [group:vars] and each child named in [group:children]: such a
    # group must be declared somewhere in the file, before or after.
    wanted: list[tuple[str, int, str]] = []
    group, state = "all", "hosts"

    def body(group_name: str, number: int) -> dict[str, Any]:
        if group_name not in data:
            data[group_name] = {}
            lines[(group_name,)] = number
        return data[group_name]

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        where = Location(name, number)
        section = _SECTION.match(line)
        if section:
            group, state = section.group(1), section.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                raise InputError(
                    where, f"section [{group}:{state}]: {state!r} is not hosts, children or vars"
                )
            body(group, number)
            if state == "vars":
                wanted.append((group, number, f"[{group}:vars] is for a group no section declares"))
            else:
                declared.add(group)
            continue
        if line.startswith("[") and line.endswith("]"):
            raise InputError(where, f"{line!r} is not a section header (no spaces inside [])")
        if state == "hosts":
            host, variables = _host_line(line, where)
            hosts = body(group, number).setdefault("hosts", {})
            known = hosts.get(host)
            hosts[host] = {**(known or {}), **variables} or None
            lines[(group, "hosts", host)] = number
            for key in variables:
                lines[(group, "hosts", host, key)] = number
        elif state == "vars":
            if "=" not in line:
                raise InputError(where, f"expected key=value in [{group}:vars], got {line!r}")
            key, value = (part.strip() for part in line.split("=", 1))
            body(group, number).setdefault("vars", {})[key] = literal(value)
            lines[(group, "vars", key)] = lines[(group, "vars")] = number
        else:
            child = _GROUP_NAME.match(line)
            if not child:
                raise InputError(where, f"expected a group name in [{group}:children]")
            body(group, number).setdefault("children", {})[child.group(1)] = None
            lines[(group, "children", child.group(1))] = number
            wanted.append(
                (
                    child.group(1),
                    number,
                    f"[{group}:children] names {child.group(1)!r}, a group no section declares",
                )
            )
    for needed, number, message in wanted:
        if needed not in declared:
            raise InputError(Location(name, number), message)
    return Document(name, data, lines)


def _host_line(line: str, where: Location) -> tuple[str, dict[str, Any]]:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise InputError(where, f"cannot read the host line: {exc}") from None
    if not tokens:
        raise InputError(where, "expected a host name")
    variables: dict[str, Any] = {}
    for token in tokens[1:]:
        if "=" not in token:
            raise InputError(where, f"expected key=value after the host name, got {token!r}")
        key, value = token.split("=", 1)
        variables[key] = literal(value)
    if tokens[0].endswith(":"):
        raise InputError(where, f"host {tokens[0]!r} ends with ':' but gives no port")
    return tokens[0], variables


def literal(value: str) -> Any:
    """Ansible's reading of an INI value: a Python literal if it is one, else the string."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value
    return _plain(parsed)


def _plain(value: Any) -> Any:
    # What YAML could have said: tuples and sets become lists; complex numbers, bytes and
    # Ellipsis, which no variable holds, become the text written (as Ansible does).
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is ... or isinstance(value, complex):
        return "..." if value is ... else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


__all__ = ["literal", "looks_like_ini", "parse_ini"]
