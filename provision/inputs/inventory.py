"""Ansible-compatible inventories: groups, children, variable precedence, host patterns.

Variables merge as Ansible does: ``all`` first, then groups from parent to child (groups at
the same depth by name), then the host's own. ``group_vars/`` and ``host_vars/`` beside the
inventory file are read too, and win over the inventory file at the same level.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from provision.errors import InputError, Location, PatternError
from provision.inputs.files import UnreadableFile, read_regular
from provision.inputs.manifest import Manifest, read
from provision.inputs.validation import raise_for
from provision.inputs.yaml_lines import Document, PathKey, load_file
from provision.model.inventory import Group, Host, InventoryFile

# Aliases Ansible users already write; ours win when both are given at the same level. Each
# level is read as if its alias were our key, so a host's ``ansible_user`` still beats a
# group's ``user``: precedence is by level first, as in Ansible.
_ALIASES = {
    "ansible_host": "address",
    "ansible_port": "port",
    "ansible_user": "user",
    "ansible_connection": "connection",
    "ansible_ssh_private_key_file": "ssh_key",
    "ansible_become": "become",
}


@dataclass(frozen=True)
class _GroupInfo:
    name: str
    parents: frozenset[str]
    vars: Mapping[str, Any]
    hosts: tuple[str, ...]
    children: tuple[str, ...]


@dataclass(frozen=True)
class Inventory:
    file: str
    hosts: Mapping[str, Host]
    groups: Mapping[str, frozenset[str]]  # group -> every host in it or its descendants

    def select(self, pattern: str) -> list[Host]:
        """Hosts matching an Ansible pattern, in inventory order."""
        names = match_pattern(pattern, self.hosts.keys(), self.groups)
        return [host for name, host in self.hosts.items() if name in names]


def load_inventory(
    path: Path, display: str | None = None, reads: Manifest | None = None
) -> Inventory:
    doc = load_file(path, display, reads)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise InputError(Location(doc.file, 1), "an inventory must be a mapping of groups")
    try:
        InventoryFile.model_validate(data)
    except ValidationError as exc:
        raise_for(exc, doc, InventoryFile)
    groups = _collect_groups(data, doc)
    base = path.parent
    return _resolve(doc, groups, base, reads)


def _collect_groups(data: dict[str, Any], doc: Document) -> dict[str, _GroupInfo]:
    parents: dict[str, set[str]] = {"all": set()}
    raw: dict[str, list[tuple[dict[str, Any], PathKey]]] = {}

    def visit(name: str, body: dict[str, Any] | None, path: PathKey, parent: str | None) -> None:
        parents.setdefault(name, set())
        if parent is not None:
            if name == parent or _is_ancestor(name, parent, parents):
                raise InputError(doc.locate(path), f"group {name!r} is its own ancestor")
            parents[name].add(parent)
        raw.setdefault(name, []).append((body or {}, path))
        for child, child_body in ((body or {}).get("children") or {}).items():
            visit(str(child), child_body, (*path, "children", child), name)

    visit("all", data.get("all"), ("all",), None)
    for name, body in data.items():
        if name != "all":
            visit(str(name), body, (name,), "all")

    infos: dict[str, _GroupInfo] = {}
    for name, bodies in raw.items():
        merged_vars: dict[str, Any] = {}
        hosts: list[str] = []
        children: list[str] = []
        for body, _ in bodies:
            merged_vars.update(body.get("vars") or {})
            hosts.extend(str(h) for h in (body.get("hosts") or {}))
            children.extend(str(c) for c in (body.get("children") or {}))
        infos[name] = _GroupInfo(
            name,
            frozenset(parents[name]),
            merged_vars,
            tuple(dict.fromkeys(hosts)),
            tuple(dict.fromkeys(children)),
        )
    return infos


def _is_ancestor(candidate: str, group: str, parents: Mapping[str, set[str]]) -> bool:
    seen: set[str] = set()
    todo = [group]
    while todo:
        current = todo.pop()
        if current == candidate:
            return True
        if current not in seen:
            seen.add(current)
            todo.extend(parents.get(current, ()))
    return False


def _depths(groups: Mapping[str, _GroupInfo]) -> dict[str, int]:
    depth: dict[str, int] = {"all": 0}

    def of(name: str) -> int:
        if name not in depth:
            depth[name] = 1 + max((of(p) for p in groups[name].parents), default=0)
        return depth[name]

    for name in groups:
        of(name)
    return depth


def _host_entries(
    data: dict[str, Any], doc: Document
) -> dict[str, list[tuple[dict[str, Any], PathKey]]]:
    """Every place a host is listed, with its inline variables and where they are."""
    found: dict[str, list[tuple[dict[str, Any], PathKey]]] = {}

    def visit(body: dict[str, Any] | None, path: PathKey) -> None:
        for host, host_vars in ((body or {}).get("hosts") or {}).items():
            found.setdefault(str(host), []).append((host_vars or {}, (*path, "hosts", host)))
        for child, child_body in ((body or {}).get("children") or {}).items():
            visit(child_body, (*path, "children", child))

    visit(data.get("all"), ("all",))
    for name, body in data.items():
        if name != "all":
            visit(body, (name,))
    return found


def _resolve(
    doc: Document, groups: dict[str, _GroupInfo], base: Path, reads: Manifest | None
) -> Inventory:
    data: dict[str, Any] = doc.data or {}
    entries = _host_entries(data, doc)
    depth = _depths(groups)

    host_groups: dict[str, set[str]] = {name: {"all"} for name in entries}
    for info in groups.values():
        for host in info.hosts:
            host_groups.setdefault(host, {"all"}).add(info.name)
    # A host in a child group is in every ancestor group too.
    members: dict[str, set[str]] = {name: set() for name in groups}
    for host, direct in host_groups.items():
        for group in list(direct):
            for ancestor in _ancestors(group, groups):
                members[ancestor].add(host)
            members[group].add(host)

    group_files = {name: _vars_dir_file(base / "group_vars", name, reads) for name in groups}
    ordered_groups = sorted(groups, key=lambda g: (depth[g], g))
    hosts: dict[str, Host] = {}
    for host_name, places in entries.items():
        merged: dict[str, Any] = {}
        for group in ordered_groups:
            if host_name in members[group]:
                merged.update(_with_aliases(groups[group].vars))
                merged.update(_with_aliases(group_files[group]))
        for inline, _ in places:
            merged.update(_with_aliases(inline))
        merged.update(_with_aliases(_vars_dir_file(base / "host_vars", host_name, reads)))
        hosts[host_name] = _make_host(
            host_name,
            merged,
            tuple(sorted(g for g in members if host_name in members[g] and g != "all")),
            doc,
            places[0][1],
        )
    return Inventory(doc.file, hosts, {name: frozenset(found) for name, found in members.items()})


def _ancestors(group: str, groups: Mapping[str, _GroupInfo]) -> set[str]:
    found: set[str] = set()
    todo = list(groups[group].parents)
    while todo:
        parent = todo.pop()
        if parent not in found:
            found.add(parent)
            todo.extend(groups[parent].parents)
    return found


def _vars_dir_file(folder: Path, name: str, reads: Manifest | None) -> dict[str, Any]:
    """``group_vars/NAME.yml`` (or .yaml, or no suffix) or every YAML file in ``NAME/``."""
    result: dict[str, Any] = {}
    candidates = [folder / name, folder / f"{name}.yml", folder / f"{name}.yaml"]
    files: list[Path] = []
    for candidate in candidates:
        read(reads, candidate)  # there or not: one created later would be read
        if candidate.is_dir():
            if reads is not None:
                reads.listed(candidate)
            files.extend(sorted(p for p in candidate.iterdir() if p.suffix in (".yml", ".yaml")))
        elif candidate.is_file():
            files.append(candidate)
    for file in files:
        doc = load_file(file, reads=reads)
        if doc.data is None:
            continue
        if not isinstance(doc.data, dict):
            raise InputError(Location(doc.file, 1), "a variables file must be a mapping")
        result.update(doc.data)
    return result


def _with_aliases(layer: Mapping[str, Any]) -> dict[str, Any]:
    """One level's variables, each alias also set as our key unless the level gives ours."""
    result = dict(layer)
    for alias, field in _ALIASES.items():
        if alias in layer and field not in layer:
            result[field] = layer[alias]
    return result


def _make_host(
    name: str, merged: dict[str, Any], groups: tuple[str, ...], doc: Document, where: PathKey
) -> Host:
    typed: dict[str, Any] = {}
    for field in ("address", "fqdn", "connection", "port", "user", "ssh_key", "become", "os"):
        if field in merged:
            typed[field] = merged[field]
    typed.setdefault("address", name)
    implied = _implies_windows(merged)
    if implied is not None:
        if typed.get("os", "windows") != "windows":
            raise InputError(
                doc.locate(where),
                f"host {name!r}: os: {typed['os']!r} contradicts {implied}, which only "
                "Windows hosts use",
            )
        typed["os"] = "windows"
    try:
        return Host(name=name, groups=groups, vars=merged, **typed)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        raise InputError(
            doc.locate(where), f"host {name!r}: {key}: {error['msg']} (got {error['input']!r})"
        ) from None


def _implies_windows(merged: Mapping[str, Any]) -> str | None:
    """The Ansible variable that makes a host Windows without ``os: windows``, if any."""
    if str(merged.get("ansible_shell_type", "")).lower() == "powershell":
        return "ansible_shell_type: powershell"
    connection = str(merged.get("connection", "")).lower()
    if connection in ("winrm", "psrp"):
        return f"connection: {connection}"
    return None


# --- patterns ---------------------------------------------------------------------------

_SPLIT = re.compile(r"[,:]")


def match_pattern(
    pattern: str, host_names: Iterable[str], groups: Mapping[str, frozenset[str]]
) -> set[str]:
    """Ansible host patterns: names, groups, globs, ``!exclude``, ``&intersect``, comma lists.

    Each term is matched in one pass over the hosts and groups, so a pattern costs
    O(terms x (hosts + groups)), never O(hosts^2). As in Ansible, a pattern of only
    exclusions and intersections starts from ``all`` (``--limit '!cm-pub-01'``).
    """
    all_hosts = list(host_names)
    terms = [t.strip() for t in _split_terms(pattern) if t.strip()]
    if not terms:
        raise PatternError(f"host pattern {pattern!r} is empty")
    included: set[str] = set()
    intersections: list[set[str]] = []
    excluded: set[str] = set()
    for term in terms:
        if not term.lstrip("!&"):
            # '!', '&', '!!': operators with nothing to act on would select every host.
            raise PatternError(f"host pattern {pattern!r}: {term!r} needs a name after it")
        if term.startswith("!"):
            excluded |= _match_term(term[1:], all_hosts, groups)
        elif term.startswith("&"):
            intersections.append(_match_term(term[1:], all_hosts, groups))
        else:
            included |= _match_term(term, all_hosts, groups)
    if not any(not t.startswith(("!", "&")) for t in terms):
        included = set(all_hosts)
    for subset in intersections:
        included &= subset
    return included - excluded


def _split_terms(pattern: str) -> list[str]:
    # Ansible accepts ':' as a separator too, except inside IPv6 addresses; we split on ','
    # always and on ':' only when the pattern has no ',' and does not look like IPv6.
    if "," in pattern or (pattern.count(":") > 1 and "::" in pattern):
        return pattern.split(",")
    return _SPLIT.split(pattern)


def _match_term(term: str, hosts: list[str], groups: Mapping[str, frozenset[str]]) -> set[str]:
    if term in ("all", "*"):
        return set(hosts)
    if term in groups:
        return set(groups[term])
    if term.startswith("~"):
        # Before globs: a regex may hold '*', '?' or '[' (``~cm-(pub|sub)-0[12]``).
        try:
            regex = re.compile(term[1:])
        except re.error as exc:
            raise PatternError(f"host pattern {term!r} is not a valid regex: {exc}") from None
        return {h for h in hosts if regex.search(h)}
    if any(ch in term for ch in "*?["):
        found = {h for h in hosts if fnmatch.fnmatchcase(h, term)}
        for group, members in groups.items():
            if fnmatch.fnmatchcase(group, term):
                found |= members
        return found
    return {term} if term in set(hosts) else set()


# A retry file names the failed hosts of one run: a megabyte is a very large fleet.
MAX_LIMIT_FILE_BYTES = 1024 * 1024


def read_limit(limit: str, reads: Manifest | None = None) -> str:
    """``@FILE`` reads a retry file (one host per line) as a comma-separated pattern."""
    if not limit.startswith("@"):
        return limit
    path = Path(limit[1:])
    read(reads, path)
    try:
        text = read_regular(path, MAX_LIMIT_FILE_BYTES).decode("utf-8")
    except UnreadableFile as exc:
        raise PatternError(f"cannot read the limit file {path}: {exc}") from None
    except UnicodeDecodeError:
        raise PatternError(f"the limit file {path} is not UTF-8 text") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise PatternError(f"the limit file {path} names no host")
    return ",".join(names)


def limit_hosts(
    inventory: Inventory, hosts_pattern: str, limit: str | None, reads: Manifest | None = None
) -> list[Host]:
    """The playbook's hosts, narrowed by ``--limit``; matching nothing is an error."""
    names = match_pattern(hosts_pattern, inventory.hosts.keys(), inventory.groups)
    if limit is not None:
        # An empty --limit (a variable that expanded to nothing) must not mean "every host".
        limit = read_limit(limit, reads)
        names &= match_pattern(limit, inventory.hosts.keys(), inventory.groups)
    if not names:
        what = f"hosts {hosts_pattern!r}" + (f" limited to {limit!r}" if limit else "")
        raise PatternError(f"{what} matched no host in {inventory.file}")
    return [host for name, host in inventory.hosts.items() if name in names]


__all__ = ["Group", "Inventory", "limit_hosts", "load_inventory", "match_pattern"]
