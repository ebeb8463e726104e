"""The state file a certificates directory holds (layout.STATE_FILE): which playbook owns the
directory, and which outputs each owner wrote, so a later run removes the ones its playbook
dropped and never another playbook's.

    {"owners": {"CallManager HTTPS": {"outputs": {"httpscert": ["httpscert.cer", ...]}}}}

It is read from the host, so it is input like a playbook: anything that is not this shape is
an error for the host, never a guess, and every file it names is checked against the folder
before anything is deleted (plan/builder.py). A file of the first format (``{"outputs":
...}``, no owner) is adopted by the first playbook that applies there.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass

from provision.errors import ProvisionError
from provision.model.playbook import Playbook

# The owner of a state file of the first format, before directories had owners.
UNOWNED = ""


class StateError(ProvisionError):
    """The state file on the host is damaged or names another owner."""


@dataclass(frozen=True)
class State:
    owners: Mapping[str, Mapping[str, tuple[str, ...]]]  # playbook -> certificate -> files

    def outputs_of(self, owner: str) -> set[str]:
        return {f for files in self.owners.get(owner, {}).values() for f in files}


def parse(content: bytes | None, where: str) -> State:
    if content is None:
        return State({})
    state = _parse(content)
    if state is None:
        raise StateError(
            f"{where} is damaged (not the state provision writes); it was left in place for "
            "inspection: move it aside to let provision write a new one"
        )
    return state


@functools.lru_cache(maxsize=256)
def _parse(content: bytes) -> State | None:
    """The state a file holds, or None when it is not one (a fleet's hosts mostly hold the
    same bytes: parsed once)."""
    try:
        data = json.loads(content)
        if not isinstance(data, dict):
            raise TypeError
        if "owners" in data:
            owners = {str(o): _outputs(body["outputs"]) for o, body in data["owners"].items()}
        else:
            owners = {UNOWNED: _outputs(data["outputs"])}
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return State(owners)


def _outputs(body: object) -> dict[str, tuple[str, ...]]:
    if not isinstance(body, dict):
        raise TypeError
    result = {}
    for certificate, files in body.items():
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise TypeError
        result[str(certificate)] = tuple(files)
    return result


def check_owner(state: State, playbook: Playbook, folder: str) -> None:
    """Refuse a directory another playbook owns, unless both say they share it, and even then
    when their outputs overlap (each run would overwrite the other's files)."""
    mine = {o.file for c in playbook.certificates for o in c.outputs}
    for owner in state.owners:
        if owner in (playbook.name, UNOWNED, *playbook.takes_over):
            continue
        if owner not in playbook.shared_with:
            raise StateError(
                f"{folder} is managed by playbook {owner!r}; playbook {playbook.name!r} will "
                "not write there unless both list each other in shared_with (or it lists "
                f"{owner!r} in takes_over, to replace it)"
            )
        overlap = sorted(mine & state.outputs_of(owner))
        if overlap:
            raise StateError(
                f"{folder} is shared with playbook {owner!r}, which writes {', '.join(overlap)} too"
            )


def inherited(state: State, playbook: Playbook) -> set[str]:
    """The outputs this playbook answers for: its own, and those of the entries it adopts
    (the unowned one, and every playbook it takes over)."""
    owners = (playbook.name, UNOWNED, *playbook.takes_over)
    return set().union(*(state.outputs_of(owner) for owner in owners))


def dumps(state: State, playbook: Playbook) -> bytes:
    """The state with this playbook's outputs as they are now (adopted entries replaced)."""
    replaced = (playbook.name, UNOWNED, *playbook.takes_over)
    owners = {o: body for o, body in state.owners.items() if o not in replaced}
    owners[playbook.name] = {
        c.name: tuple(sorted(o.file for o in c.outputs)) for c in playbook.certificates
    }
    document = {
        "owners": {
            owner: {"outputs": {c: list(files) for c, files in body.items()}}
            for owner, body in owners.items()
        }
    }
    return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
