"""Saved plans: the plan as JSON, with digests of everything it was computed from.

A saved plan names its inputs (playbook, inventory, limit) with their digests, and each host's
facts digest. ``apply PLAN.json`` reloads the inputs and refuses everything if they changed,
then re-reads each host and refuses a host whose facts changed. It holds rendered configs as
text, but never key material: certificate outputs are named by reference and derived at apply.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from provision.errors import InputError, Location
from provision.plan.model import HostPlan, Plan

if TYPE_CHECKING:
    from pydantic import TypeAdapter

FORMAT_FAMILY = "provision-plan/"
# 2: every field of the plan's types, as pydantic serialises them (1 was written by hand);
# 3: host plans carry their warnings (names a certificate does not cover);
# 4: ``inventory`` is a list, one entry per -i source in the order given.
FORMAT = f"{FORMAT_FAMILY}4"


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inventory_digest(path: Path) -> str:
    """The inventory file and every group_vars/ and host_vars/ file beside it; for an
    inventory directory, every file under it (its group_vars/ and host_vars/ are inside)."""
    if path.is_dir():
        h = hashlib.sha256(b"directory\0")
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(file.relative_to(path)).encode() + b"\0")
            h.update(file.read_bytes())
        return h.hexdigest()
    h = hashlib.sha256(path.read_bytes())
    for folder in ("group_vars", "host_vars"):
        root = path.parent / folder
        if root.is_dir():
            for file in sorted(p for p in root.rglob("*") if p.is_file()):
                h.update(str(file.relative_to(path.parent)).encode() + b"\0")
                h.update(file.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class _Input:
    path: str
    sha256: str


@dataclass(frozen=True)
class _Digest:
    sha256: str


@dataclass(frozen=True)
class _Document:
    """A saved plan on disk: the plan's own types, serialised field by field by pydantic, so
    a field added to a change (or a host plan) is saved and read back without a line here."""

    # Refuse what a hand or another program got wrong, rather than coerce it: "0644" stays
    # text, 5 is no file content, an unknown key is an error. Bytes (rendered configs) are
    # text, as a reviewer reads them.
    __pydantic_config__: ClassVar[dict[str, Any]] = {
        "strict": True,
        "extra": "forbid",
        "ser_json_bytes": "utf8",
        "val_json_bytes": "utf8",
    }

    format: str
    playbook: _Input
    # Every -i source in the order given: the order is precedence (later sources win), so a
    # plan made with ``-i a -i b`` reloads exactly those, in that order.
    inventory: tuple[_Input, ...]
    controller: _Digest
    limit: str | None
    hosts: tuple[HostPlan, ...]


@cache
def _codec() -> TypeAdapter[_Document]:
    # Built on first use: the CLI imports this module on every apply, pydantic only when a
    # plan is saved or read.
    from pydantic import TypeAdapter

    return TypeAdapter(_Document)


def dumps(
    plan: Plan,
    *,
    limit: str | None,
    playbook_digest: str,
    inventory_digests: tuple[str, ...],
    controller_digest: str,
) -> str:
    document = _Document(
        format=FORMAT,
        playbook=_Input(plan.playbook, playbook_digest),
        inventory=tuple(
            _Input(source, digest)
            for source, digest in zip(plan.inventory, inventory_digests, strict=True)
        ),
        controller=_Digest(controller_digest),
        limit=limit,
        hosts=plan.hosts,
    )
    return _codec().dump_json(document, indent=2).decode() + "\n"


class SavedPlan:
    def __init__(self, plan: Plan, limit: str | None, digests: dict[str, str]) -> None:
        self.plan = plan
        self.limit = limit
        self.digests = digests


def is_plan_file(path: str) -> bool:
    """A JSON file that says it is a saved plan, of this format or an older one."""
    if not path.endswith(".json"):
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(200)
    except OSError:
        return False
    return b'"format"' in head and FORMAT_FAMILY.encode() in head


def loads(path: str) -> SavedPlan:
    from pydantic import ValidationError

    from provision.inputs.yaml_lines import format_path

    where = Location(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
        document = json.loads(text)
    except (OSError, ValueError) as exc:
        raise InputError(where, f"not a readable plan file: {exc}") from None
    found = document.get("format") if isinstance(document, dict) else None
    if found != FORMAT:
        if isinstance(found, str) and found.startswith(FORMAT_FAMILY):
            raise InputError(where, f"a {found} plan file, from another version; make a new plan")
        raise InputError(where, f"not a {FORMAT} plan file")
    try:
        saved = _codec().validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InputError(
            where,
            f"damaged plan file: {format_path(first['loc']) or 'the document'}: "
            f"{first['msg']}{more}",
        ) from None
    # pydantic fills a missing field with its default; a saved plan holds every field, so a
    # missing one is damage (a host plan without its changes is not a host with none).
    missing = _first_missing(json.loads(_codec().dump_json(saved)), document, ())
    if missing is not None:
        raise InputError(where, f"damaged plan file: {format_path(missing)}: Field required")
    if not saved.hosts:
        raise InputError(where, "damaged plan file: it names no host")
    if not saved.inventory:
        raise InputError(where, "damaged plan file: it names no inventory")
    plan = Plan(saved.playbook.path, tuple(i.path for i in saved.inventory), saved.hosts)
    digests = {
        "playbook": saved.playbook.sha256,
        **{f"inventory:{n}": source.sha256 for n, source in enumerate(saved.inventory)},
        "controller": saved.controller.sha256,
    }
    return SavedPlan(plan, saved.limit, digests)


def _first_missing(
    written: Any, read: Any, at: tuple[str | int, ...]
) -> tuple[str | int, ...] | None:
    """The first key that ``written`` (the plan as dumps writes it) has and ``read`` lacks."""
    if isinstance(written, dict) and isinstance(read, dict):
        for key, value in written.items():
            if key not in read:
                return (*at, key)
            found = _first_missing(value, read[key], (*at, key))
            if found is not None:
                return found
    elif isinstance(written, list) and isinstance(read, list):
        for index, (value, other) in enumerate(zip(written, read, strict=False)):
            found = _first_missing(value, other, (*at, index))
            if found is not None:
                return found
    return None
