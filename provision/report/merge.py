"""`provision merge`: the JSON results of a run's shards as the one result of the whole run.

A pure function over parsed documents (``merge``), so that every reader of results (the CLI's
``merge``, ``report``, ``status --format prometheus``) can take a merged result as it takes an
unsharded one. It refuses what does not make one run: results of different kinds, of
different playbooks or inventories (by digest) or limits, shards of different splits, the same
shard (or host) twice, and a shard missing. The merged document has the schema of an
unsharded run's result, with ``shard`` null, ``merged_shards`` N, and the hosts (or status
rows) in a stable order: hosts by name, status rows as `status` sorts them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from provision.errors import ProvisionError
from provision.report.envelope import KINDS
from provision.shard import Shard, ShardError, parse

# One result: the file it was read from (for the messages) and its parsed JSON.
Named = tuple[str, Any]


class MergeError(ProvisionError):
    """Results that are not the shards of one run."""


def merge(results: Sequence[Named]) -> dict[str, Any]:
    """The one result of the run whose shards ``results`` are (each: file name, document)."""
    if not results:
        raise MergeError("nothing to merge: name the JSON results of every shard of one run")
    for name, document in results:
        _check_shape(name, document)
    _same("kind", "are results of different commands", results, lambda d: d["kind"])
    _same("playbook", "ran different playbooks", results, _digest("playbook"))
    _same("inventory", "ran different inventories", results, _digest("inventory"))
    _same("limit", "selected hosts with different --limit", results, lambda d: repr(d["limit"]))
    shards = _shards(results)
    first = results[0][1]
    merged: dict[str, Any] = {
        "kind": first["kind"],
        "shard": None,
        "merged_shards": shards,
        "limit": first["limit"],
        "playbook": first["playbook"],
        "inventory": first["inventory"],
    }
    if first["kind"] == "status":
        return _status(results, merged)
    merged.update(_report(results))
    return merged


def _check_shape(name: str, document: Any) -> None:
    problem = None
    if not isinstance(document, dict) or document.get("kind") not in KINDS:
        problem = (
            "it is not the JSON result of `provision plan`, `apply`, `verify` or `status` "
            "(--format json): it has no kind"
        )
    elif not _inputs_named(document):
        problem = "it names no playbook or inventory digest"
    elif "shard" not in document or "limit" not in document:
        problem = "it says nothing of its shard or limit"
    elif not isinstance(document["shard"], str | None):
        problem = "its shard is not I/N nor null"
    elif document["kind"] == "status":
        if not isinstance(document.get("certificates"), list) or not isinstance(
            document.get("authorities"), list
        ):
            problem = "a status result without its certificates and authorities lists"
    elif not isinstance(document.get("hosts"), dict) or not all(
        isinstance(host, dict) for host in document["hosts"].values()
    ):
        problem = "a result without its hosts"
    if problem is not None:
        raise MergeError(f"{name}: cannot merge it: {problem}; nothing was merged")


def _inputs_named(document: Mapping[str, Any]) -> bool:
    """The playbook (one) and the inventory (one entry per -i source) with their digests."""
    playbook, inventory = document.get("playbook"), document.get("inventory")
    return (
        isinstance(playbook, dict)
        and isinstance(playbook.get("sha256"), str)
        and isinstance(inventory, list)
        and bool(inventory)
        and all(isinstance(i, dict) and isinstance(i.get("sha256"), str) for i in inventory)
    )


def _digest(key: str) -> Any:
    def of(document: Mapping[str, Any]) -> str:
        parts = document[key] if isinstance(document[key], list) else [document[key]]
        return ", ".join(f"{part.get('path')} (sha256 {part['sha256'][:12]})" for part in parts)

    return of


def _same(what: str, problem: str, results: Sequence[Named], value: Any) -> None:
    groups: dict[str, list[str]] = {}
    for name, document in results:
        groups.setdefault(value(document), []).append(name)
    if len(groups) > 1:
        parts = "; ".join(f"{', '.join(names)}: {found}" for found, names in groups.items())
        raise MergeError(
            f"the results {problem} ({what}: {parts}), so they are not the shards of one run; "
            "nothing was merged. Merge the results of one command run with --shard 0/N ... "
            "N-1/N on the same files"
        )


def _shards(results: Sequence[Named]) -> int:
    """The number of shards the results split the run into, each present exactly once."""
    found: list[tuple[str, Shard | None]] = []
    for name, document in results:
        try:
            shard = parse(document["shard"], f"{name}: shard") if document["shard"] else None
        except ShardError as exc:
            raise MergeError(f"{exc.message}; nothing was merged") from None
        found.append((name, shard))
    unsharded = [name for name, shard in found if shard is None]
    if unsharded:
        if len(results) == 1:
            return 1  # one unsharded result is the whole run already
        raise MergeError(
            f"{', '.join(unsharded)}: a result of every host (made without --shard), given "
            "with other results: it would count its hosts twice; nothing was merged"
        )
    counts = {shard.count for _, shard in found if shard is not None}
    if len(counts) > 1:
        listed = ", ".join(f"{name}: {shard}" for name, shard in found)
        raise MergeError(
            f"the results split the fleet into different numbers of shards ({listed}); "
            "nothing was merged. Merge the shards of one split"
        )
    count = counts.pop()
    by_index: dict[int, list[str]] = {}
    for name, shard in found:
        assert shard is not None
        by_index.setdefault(shard.index, []).append(name)
    twice = {index: names for index, names in by_index.items() if len(names) > 1}
    if twice:
        listed = "; ".join(
            f"{' and '.join(names)} are each shard {index}/{count}"
            for index, names in sorted(twice.items())
        )
        raise MergeError(
            f"overlapping shards: {listed} (their hosts would count twice); nothing was merged"
        )
    missing = [f"{index}/{count}" for index in range(count) if index not in by_index]
    if missing:
        listed = ", ".join(f"{name}: {shard}" for name, shard in found)
        raise MergeError(
            f"shard{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing: the results "
            f"given ({listed}) cover {len(by_index)} of {count} shards; nothing was merged. "
            "Give every shard's result (a shard with no host has a result too)"
        )
    return count


def _report(results: Sequence[Named]) -> dict[str, Any]:
    hosts: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for name, document in results:
        for host, entry in document["hosts"].items():
            if host in seen:
                raise MergeError(
                    f"host {host} is in {seen[host]} and in {name}: shards never share a host, "
                    "so these are not the shards of one run; nothing was merged"
                )
            seen[host] = name
            hosts[host] = entry
    ordered = {host: hosts[host] for host in sorted(hosts)}
    return {
        "summary": {
            "ok": sum(1 for h in ordered.values() if h.get("status") == "ok"),
            "changed": sum(1 for h in ordered.values() if h.get("changed")),
            "failed": sum(1 for h in ordered.values() if h.get("status") == "failed"),
            "skipped": sum(1 for h in ordered.values() if h.get("status") == "skipped"),
        },
        "hosts": ordered,
    }


def _status(results: Sequence[Named], envelope: dict[str, Any]) -> dict[str, Any]:
    """The fleet documents of `status`/`report` (report/document.py) as one: each shard's
    certificates and hosts, the controller's authorities (the same for every shard: the
    first shard's), the first shard's moment, and the summary counted again."""
    from provision.errors import InputError, Location
    from provision.report.document import FleetDocument

    documents: list[tuple[str, FleetDocument]] = []
    for name, raw in sorted(results, key=_index):
        try:
            documents.append((name, FleetDocument.model_validate(raw)))
        except ValueError as exc:
            raise InputError(Location(name), f"not a status document: {exc}") from None
    seen: dict[str, str] = {}
    for name, found in documents:
        for host in sorted({c.host for c in found.certificates} | {h.host for h in found.hosts}):
            if host in seen:
                raise MergeError(
                    f"host {host} is in {seen[host]} and in {name}: shards never share a host, "
                    "so these are not the shards of one run; nothing was merged"
                )
            seen[host] = name
    first = documents[0][1]
    merged = FleetDocument.model_validate(
        {
            **first.model_dump(),
            **envelope,
            "certificates": [c.model_dump() for _, d in documents for c in d.certificates],
            "hosts": [h.model_dump() for _, d in documents for h in d.hosts],
        }
    ).summarised()
    result: dict[str, Any] = json.loads(merged.model_dump_json())
    return result


def _index(named: Named) -> int:
    shard = named[1]["shard"]
    return parse(shard).index if shard else 0
