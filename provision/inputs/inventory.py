"""Ansible-compatible inventories: groups, children, variable precedence, host patterns.

Variables merge as Ansible does: ``all`` first, then groups from parent to child (groups at
the same depth by name), then the host's own. ``group_vars/`` and ``host_vars/`` beside the
inventory file are read too, and win over the inventory file at the same level.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from provision.errors import InputError, Location, PatternError
from provision.inputs.connection_vars import (
    CONNECTIONS,
    parse_ssh_args,
    ssh_arguments,
    with_aliases,
)
from provision.inputs.files import UnreadableFile, read_regular
from provision.inputs.host_ranges import RangeError, expand, split_port
from provision.inputs.inventory_sources import read_sources
from provision.inputs.manifest import Manifest, read
from provision.inputs.validation import raise_for
from provision.inputs.vault import is_vault
from provision.inputs.vault_secrets import VaultKeys
from provision.inputs.yaml_lines import MAX_FILE_BYTES, Document, PathKey, load_bytes
from provision.model.inventory import Group, Host, InventoryFile


@dataclass(frozen=True)
class _GroupInfo:
    name: str
    parents: frozenset[str]
    vars: Mapping[str, Any]
    hosts: tuple[str, ...]
    children: tuple[str, ...]


@dataclass(frozen=True)
class Inventory:
    file: str  # the sources as errors name them: "a, b" for -i a -i b
    hosts: Mapping[str, Host]
    groups: Mapping[str, frozenset[str]]  # group -> every host in it or its descendants
    sources: tuple[str, ...] = ()  # each -i as given, in order

    def select(self, pattern: str) -> list[Host]:
        """Hosts matching an Ansible pattern, in inventory order."""
        names = match_pattern(pattern, self.hosts.keys(), self.groups)
        return [host for name, host in self.hosts.items() if name in names]


def load_inventory(
    path: Path | Sequence[Path],
    display: str | Sequence[str] | None = None,
    reads: Manifest | None = None,
    vault: VaultKeys | None = None,
) -> Inventory:
    """One inventory from each ``-i`` given (a file of any kind, a script, a directory),
    merged in the order given as Ansible merges repeated ``-i``."""
    paths = [path] if isinstance(path, Path) else list(path)
    if display is None:
        names = [str(p) for p in paths]
    else:
        names = [display] if isinstance(display, str) else list(display)
    keys = vault if vault is not None else VaultKeys.of(reads=reads)
    docs: list[Document] = []
    bases: list[Path] = []
    for one, name in zip(paths, names, strict=True):
        found = read_sources(one, name, reads, keys)
        for doc in found.documents:
            docs.append(_expand_hosts(_validated(doc)))
        # One base per source, repeats kept: Ansible reads the vars folders beside each
        # source in turn, so with ``-i a/x -i b/y -i a/z`` a's files win over b's.
        bases.append(found.base)
    groups = _collect_groups(docs)
    resolved = _resolve(", ".join(names), docs, groups, bases, reads, keys)
    return replace(resolved, sources=tuple(names))


def _validated(doc: Document) -> Document:
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise InputError(Location(doc.file, 1), "an inventory must be a mapping of groups")
    try:
        InventoryFile.model_validate(data)
    except ValidationError as exc:
        raise_for(exc, doc, InventoryFile)
    return Document(doc.file, data, doc.lines)


def _expand_hosts(doc: Document) -> Document:
    """Host ranges (``web[01:03]``) and ``name:port`` in host keys, as Ansible reads them."""
    lines = dict(doc.lines)

    def visit(body: dict[str, Any] | None, path: PathKey) -> None:
        if not body:
            return
        hosts = body.get("hosts")
        if hosts and any("[" in str(h) or ":" in str(h) for h in hosts):
            expanded: dict[str, Any] = {}
            for key, host_vars in hosts.items():
                where = doc.locate((*path, "hosts", key))
                try:
                    pattern, port = split_port(str(key))
                    names = expand(pattern)
                except RangeError as exc:
                    raise InputError(where, f"host {key!r}: {exc}") from None
                for name in names:
                    merged = dict(host_vars or {})
                    if port is not None:
                        # Ansible sets the port first: the host's own ansible_port wins.
                        merged = {"ansible_port": port, **merged}
                    expanded[name] = {**(expanded.get(name) or {}), **merged} or None
                    _copy_lines(lines, (*path, "hosts", key), (*path, "hosts", name))
            body["hosts"] = expanded
        for child, child_body in (body.get("children") or {}).items():
            visit(child_body, (*path, "children", child))

    for name, body in doc.data.items():
        visit(body, (name,))
    return Document(doc.file, doc.data, lines)


def _copy_lines(lines: dict[PathKey, int], old: PathKey, new: PathKey) -> None:
    if old == new:
        return
    for path, line in list(lines.items()):
        if path[: len(old)] == old:
            lines[(*new, *path[len(old) :])] = line


def _collect_groups(docs: Sequence[Document]) -> dict[str, _GroupInfo]:
    parents: dict[str, set[str]] = {"all": set()}
    raw: dict[str, list[dict[str, Any]]] = {}

    def visit(
        doc: Document, name: str, body: dict[str, Any] | None, path: PathKey, parent: str | None
    ) -> None:
        parents.setdefault(name, set())
        if parent is not None:
            if name == parent or _is_ancestor(name, parent, parents):
                raise InputError(doc.locate(path), f"group {name!r} is its own ancestor")
            parents[name].add(parent)
        raw.setdefault(name, []).append(body or {})
        for child, child_body in ((body or {}).get("children") or {}).items():
            visit(doc, str(child), child_body, (*path, "children", child), name)

    raw["all"] = []
    for doc in docs:
        visit(doc, "all", doc.data.get("all"), ("all",), None)
        for name, body in doc.data.items():
            if name != "all":
                visit(doc, str(name), body, (name,), "all")

    infos: dict[str, _GroupInfo] = {}
    for name, bodies in raw.items():
        merged_vars: dict[str, Any] = {}
        hosts: list[str] = []
        children: list[str] = []
        for body in bodies:
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


_Place = tuple[dict[str, Any], Document, PathKey]


def _host_entries(docs: Sequence[Document]) -> dict[str, list[_Place]]:
    """Every place a host is listed, with its inline variables and where they are."""
    found: dict[str, list[_Place]] = {}

    def visit(doc: Document, body: dict[str, Any] | None, path: PathKey) -> None:
        for host, host_vars in ((body or {}).get("hosts") or {}).items():
            found.setdefault(str(host), []).append((host_vars or {}, doc, (*path, "hosts", host)))
        for child, child_body in ((body or {}).get("children") or {}).items():
            visit(doc, child_body, (*path, "children", child))

    for doc in docs:
        visit(doc, doc.data.get("all"), ("all",))
        for name, body in doc.data.items():
            if name != "all":
                visit(doc, body, (name,))
    return found


def _resolve(
    file: str,
    docs: Sequence[Document],
    groups: dict[str, _GroupInfo],
    bases: Sequence[Path],
    reads: Manifest | None,
    vault: VaultKeys,
) -> Inventory:
    entries = _host_entries(docs)
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
    # As Ansible: `ungrouped` holds exactly the hosts in no group but `all` (whatever a
    # source listed under that name), and it is not one of a host's own groups.
    members["ungrouped"] = {
        host
        for host in entries
        if not any(host in m for g, m in members.items() if g not in ("all", "ungrouped"))
    }

    group_files = [
        {name: _vars_dir_file(base / "group_vars", name, reads, vault) for name in groups}
        for base in bases
    ]
    ordered_groups = sorted(groups, key=lambda g: (depth[g], g))
    hosts: dict[str, Host] = {}
    for host_name, places in entries.items():
        # Ansible's precedence: every group's inventory vars (parents before children), then
        # group_vars/ files (the same order), then the host's inventory vars, then host_vars/.
        merged: dict[str, Any] = {}
        mine = [g for g in ordered_groups if host_name in members[g]]
        for group in mine:
            merged.update(with_aliases(groups[group].vars))
        # Ansible reads group_vars/all of every source before any other group's files.
        for files in group_files:
            merged.update(with_aliases(files["all"]))
        for files in group_files:
            for group in mine:
                if group != "all":
                    merged.update(with_aliases(files[group]))
        for inline, _, _ in places:
            merged.update(with_aliases(inline))
        for base in bases:
            merged.update(with_aliases(_vars_dir_file(base / "host_vars", host_name, reads, vault)))
        # Ansible's ``!vault`` values, decrypted only now that precedence chose them.
        merged = vault.reveal(merged)
        hosts[host_name] = _make_host(
            host_name,
            merged,
            tuple(sorted(g for g in mine if g not in ("all", "ungrouped"))),
            places[0][1],
            places[0][2],
        )
    return Inventory(file, hosts, {name: frozenset(found) for name, found in members.items()})


def _ancestors(group: str, groups: Mapping[str, _GroupInfo]) -> set[str]:
    found: set[str] = set()
    todo = list(groups[group].parents)
    while todo:
        parent = todo.pop()
        if parent not in found:
            found.add(parent)
            todo.extend(groups[parent].parents)
    return found


def _vars_dir_file(
    folder: Path, name: str, reads: Manifest | None, vault: VaultKeys
) -> dict[str, Any]:
    """``group_vars/NAME.yml`` (or .yaml, .json, or no suffix) or every such file in ``NAME/``."""
    result: dict[str, Any] = {}
    candidates = [folder / name, *(folder / f"{name}{ext}" for ext in _VARS_EXTENSIONS)]
    files: list[Path] = []
    for candidate in candidates:
        read(reads, candidate)  # there or not: one created later would be read
        if candidate.is_dir():
            if reads is not None:
                reads.listed(candidate)
            files.extend(sorted(p for p in candidate.iterdir() if p.suffix in _VARS_EXTENSIONS))
        elif candidate.is_file():
            files.append(candidate)
    for file in files:
        doc = _load_vars(file, reads, vault)
        if doc.data is None:
            continue
        if not isinstance(doc.data, dict):
            raise InputError(Location(doc.file, 1), "a variables file must be a mapping")
        result.update(doc.data)
    return result


_VARS_EXTENSIONS = (".yml", ".yaml", ".json")


def _load_vars(file: Path, reads: Manifest | None, vault: VaultKeys) -> Document:
    """A vars file, decrypted first when the whole of it is vault-encrypted (ansible-vault
    encrypt group_vars/all.yml)."""
    read(reads, file)
    try:
        raw = read_regular(file, MAX_FILE_BYTES)
    except UnreadableFile as exc:
        raise InputError(Location(str(file)), str(exc)) from None
    if is_vault(raw):
        raw = vault.open(raw, Location(str(file), 1))
    return load_bytes(raw, str(file))


# The variables the resolved Host types (provision.model.inventory.Host), in the order the
# inventory schema lists them (provision.inputs.schema).
HOST_FIELDS = (
    "address",
    "fqdn",
    "connection",
    "os",
    "port",
    "user",
    "ssh_key",
    "become",
    "become_user",
    "ssh_args",
)


def _make_host(
    name: str, merged: dict[str, Any], groups: tuple[str, ...], doc: Document, where: PathKey
) -> Host:
    typed: dict[str, Any] = {}
    for field in HOST_FIELDS:
        if field in merged:
            typed[field] = merged[field]
    typed.setdefault("address", name)
    if ssh_arguments(merged) is not None:
        typed["ssh_args"] = ssh_arguments(merged)
    if isinstance(typed.get("connection"), str):
        typed["connection"] = CONNECTIONS.get(typed["connection"].lower(), typed["connection"])
    if typed.get("become") and str(typed.get("become_user") or "root") != "root":
        raise InputError(
            doc.locate(where),
            f"host {name!r}: become_user {typed['become_user']!r}: provision becomes root "
            "only (sudo -n); drop become_user or set it to root",
        )
    if typed.get("ssh_args") is not None:
        try:
            parse_ssh_args(str(typed["ssh_args"]))
        except ValueError as exc:
            raise InputError(doc.locate(where), f"host {name!r}: ssh_args: {exc}") from None
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
    # Ansible accepts ':' as a separator too, except inside IPv6 addresses and subscripts
    # (``web[1:3]``); we split on ',' always and on ':' only outside brackets when the
    # pattern has no ',' and does not look like IPv6.
    if "," in pattern or (pattern.count(":") > 1 and "::" in pattern):
        return pattern.split(",")
    terms, depth, current = [], 0, ""
    for char in pattern:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == ":" and depth <= 0:
            terms.append(current)
            current = ""
        else:
            current += char
    return [*terms, current]


# ``group[0]``, ``group[-1]``, ``group[1:3]`` (both ends included), ``group[2:]``, ``[:2]``,
# also with '-' for ':', as Ansible's subscripts.
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)?\s*[:-]\s*([0-9]+)?)\]$")


def _match_term(term: str, hosts: list[str], groups: Mapping[str, frozenset[str]]) -> set[str]:
    subscript = None if term.startswith("~") else _SUBSCRIPT.match(term)
    if subscript:
        base, index, start, end = subscript.groups()
        matched = _match_term(base, hosts, groups)
        ordered = [h for h in hosts if h in matched]  # inventory order, as Ansible's lists
        if index is not None:
            position = int(index)
            if not -len(ordered) <= position < len(ordered):
                return set()
            return {ordered[position]}
        first = int(start) if start else 0
        last = int(end) if end else len(ordered) - 1
        return set(ordered[first : last + 1])
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
