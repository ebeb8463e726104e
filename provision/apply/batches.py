"""Rolling runs: split hosts into batches, and the rule that stops a run after one.

The rule, as the docs state it: stop when the failed hosts of a batch exceed
``max_fail_percentage`` percent of that batch. Unreachable hosts count as failed. Hosts of
later batches are then reported as skipped. Without ``max_fail_percentage`` a run never stops
early: a failing host never stops the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def _size(spec: int | str, total: int) -> int:
    if isinstance(spec, int):
        return spec
    # "10%" of 25 hosts is 2 (rounded down, as Ansible), but never less than one host.
    return max(1, math.floor(float(spec.rstrip("%")) * total / 100))


def batches(items: Sequence[T], serial: int | str | Sequence[int | str] | None) -> list[list[T]]:
    """``serial`` sizes in turn; the last size repeats until every item is placed."""
    if serial is None:
        return [list(items)] if items else []
    sizes = [serial] if isinstance(serial, int | str) else list(serial)
    if not sizes:
        return [list(items)] if items else []
    result: list[list[T]] = []
    start = 0
    index = 0
    while start < len(items):
        size = _size(sizes[min(index, len(sizes) - 1)], len(items))
        result.append(list(items[start : start + size]))
        start += size
        index += 1
    return result


def should_stop(failed: int, batch_size: int, max_fail_percentage: float | None) -> bool:
    if max_fail_percentage is None or batch_size == 0:
        return False
    return failed * 100 / batch_size > max_fail_percentage
