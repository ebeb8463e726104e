"""What every JSON result of a run says about the run itself: its kind, its shard, and the
playbook and inventory it ran (with their digests), so that `provision merge` can tell the
shards of one run from results that do not belong together (provision/report/merge.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The kinds of result; a merge refuses to mix them.
KINDS = ("plan", "apply", "verify", "status")


def envelope(
    kind: str, playbook: str, inventory: str | Sequence[str], limit: str | None, shard: str | None
) -> dict[str, Any]:
    """The keys that lead a JSON result: ``shard`` is ``I/N`` or null (every selected host);
    ``inventory`` one entry per -i source, in order. The digests are the ones a saved plan
    records (provision/plan/saved.py)."""
    from provision.plan.saved import file_digest, inventory_digest

    assert kind in KINDS
    return {
        "kind": kind,
        "shard": shard,
        "limit": limit,
        "playbook": {"path": playbook, "sha256": file_digest(Path(playbook))},
        "inventory": [
            {"path": source, "sha256": inventory_digest(Path(source))}
            for source in ((inventory,) if isinstance(inventory, str) else inventory)
        ],
    }
