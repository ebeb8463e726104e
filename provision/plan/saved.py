"""Saved plans: the plan as JSON, with digests of everything it was computed from.

A saved plan names its inputs (playbook, inventory, limit) with their digests, and each host's
facts digest. ``apply PLAN.json`` reloads the inputs and refuses everything if they changed,
then re-reads each host and refuses a host whose facts changed. It holds rendered configs as
text, but never key material: certificate outputs are named by reference and derived at apply.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from provision.errors import InputError, Location
from provision.plan.model import Change, Derived, HostPlan, Issue, Plan, Unchanged

FORMAT = "provision-plan/1"


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inventory_digest(path: Path) -> str:
    """The inventory file and every group_vars/ and host_vars/ file beside it."""
    h = hashlib.sha256(path.read_bytes())
    for folder in ("group_vars", "host_vars"):
        root = path.parent / folder
        if root.is_dir():
            for file in sorted(p for p in root.rglob("*") if p.is_file()):
                h.update(str(file.relative_to(path.parent)).encode() + b"\0")
                h.update(file.read_bytes())
    return h.hexdigest()


def _change_json(change: Change) -> dict[str, Any]:
    data: dict[str, Any] = {
        "resource": change.resource,
        "action": change.action,
        "reason": change.reason,
    }
    if change.path is not None:
        data["path"] = change.path
    if change.mode is not None:
        data["mode"] = f"{change.mode:04o}"
    if change.content is not None:
        data["content"] = change.content.decode("utf-8")
    if change.derived is not None:
        data["derived"] = asdict(change.derived)
    if change.issue is not None:
        data["issue"] = asdict(change.issue)
    if change.diff is not None:
        data["diff"] = change.diff
    if change.before is not None:
        data["before"] = change.before
    if change.site is not None:
        data["site"] = change.site
    return data


def _text(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key!r} must be text")
    return value


def _change_from(data: dict[str, Any]) -> Change:
    for key in ("resource", "action", "reason", "path", "mode", "content", "diff", "site"):
        if key in data:
            _text(data, key)
    return Change(
        resource=data["resource"],
        action=data["action"],
        reason=data["reason"],
        path=data.get("path"),
        mode=int(data["mode"], 8) if "mode" in data else None,
        content=data["content"].encode("utf-8") if "content" in data else None,
        derived=Derived(**data["derived"]) if "derived" in data else None,
        issue=Issue(**data["issue"]) if "issue" in data else None,
        diff=data.get("diff"),
        before=data.get("before"),
        site=data.get("site"),
    )


def dumps(
    plan: Plan,
    *,
    limit: str | None,
    playbook_digest: str,
    inventory_digest: str,
    controller_digest: str,
) -> str:
    document = {
        "format": FORMAT,
        "playbook": {"path": plan.playbook, "sha256": playbook_digest},
        "inventory": {"path": plan.inventory, "sha256": inventory_digest},
        "controller": {"sha256": controller_digest},
        "limit": limit,
        "hosts": [
            {
                "host": host.host,
                "facts_sha256": host.facts_digest,
                "error": host.error,
                "waiting": list(host.waiting),
                "changes": [_change_json(c) for c in host.changes],
                "unchanged": [asdict(u) for u in host.unchanged],
            }
            for host in plan.hosts
        ],
    }
    return json.dumps(document, indent=2) + "\n"


class SavedPlan:
    def __init__(self, plan: Plan, limit: str | None, digests: dict[str, str]) -> None:
        self.plan = plan
        self.limit = limit
        self.digests = digests


def is_plan_file(path: str) -> bool:
    if not path.endswith(".json"):
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(200)
    except OSError:
        return False
    return b'"format"' in head and FORMAT.encode() in head


def loads(path: str) -> SavedPlan:
    where = Location(path)
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(where, f"not a readable plan file: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InputError(where, f"not a {FORMAT} plan file")
    try:
        for h in document["hosts"]:
            _text(h, "host")
        _text(document["playbook"], "path")
        _text(document["inventory"], "path")
        hosts = tuple(
            HostPlan(
                host=h["host"],
                changes=tuple(_change_from(c) for c in h["changes"]),
                unchanged=tuple(Unchanged(**u) for u in h["unchanged"]),
                facts_digest=h["facts_sha256"],
                error=h.get("error"),
                waiting=tuple(h.get("waiting", ())),
            )
            for h in document["hosts"]
        )
        plan = Plan(document["playbook"]["path"], document["inventory"]["path"], hosts)
        digests = {
            "playbook": document["playbook"]["sha256"],
            "inventory": document["inventory"]["sha256"],
            "controller": document["controller"]["sha256"],
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(where, f"damaged plan file: missing or wrong field {exc}") from None
    if not plan.hosts:
        raise InputError(where, "damaged plan file: it names no host")
    return SavedPlan(plan, document.get("limit"), digests)
