"""Shards: a stable partition of the selected hosts, for one run split across controllers.

``--shard I/N`` keeps, of the hosts ``--limit`` selected, those whose shard is ``I``, with
``I`` counted from 0 as Kubernetes counts an Indexed Job's pods (``JOB_COMPLETION_INDEX``):
shards ``0/3``, ``1/3`` and ``2/3`` together are the whole fleet, each host in exactly one.

A host's shard is chosen by rendezvous (highest-random-weight) hashing of its name: each
shard draws a weight for the host from SHA-256 of (shard, name) and the heaviest shard takes
it. The choice depends on the name and N alone (never on the inventory's order or on the
other hosts), so every controller computes the same partition from its own copy of the
inventory, and adding a shard (N -> N+1) moves only the hosts the new shard wins: about
1/(N+1) of them, none between the old shards.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from provision.errors import ProvisionError

# The variable a Kubernetes Indexed Job sets in each pod: the pod's index, from 0.
KUBERNETES_INDEX = "JOB_COMPLETION_INDEX"
_TEXT = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A bound on N: far more controllers than any fleet needs, and the weights of every host
# for every shard stay cheap to compute.
MAX_SHARDS = 10_000


class ShardError(ProvisionError):
    """A --shard, --shard-env or --shard-count that does not name one shard."""


@dataclass(frozen=True, order=True)
class Shard:
    index: int  # from 0
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, host: str) -> bool:
        return shard_of(host, self.count) == self.index


def _weight(host: str, index: int) -> bytes:
    # SHA-256, not hash(): Python salts str hashes per process, and every controller (and
    # every Python version) must draw the same weights.
    return hashlib.sha256(f"{index}\0{host}".encode()).digest()


def shard_of(host: str, count: int) -> int:
    """The shard (from 0) that holds ``host`` among ``count``: the heaviest weight wins (ties,
    which SHA-256 makes all but impossible, go to the lower index)."""
    return max(range(count), key=lambda index: (_weight(host, index), -index))


def select(hosts: Iterable[str], shard: Shard | None) -> list[str]:
    """The hosts of ``shard``, in the order given; every host when ``shard`` is None."""
    if shard is None:
        return list(hosts)
    return [host for host in hosts if shard.holds(host)]


def parse(text: str, what: str = "--shard") -> Shard:
    """``I/N`` with 0 <= I < N; anything else is a one-line error naming ``what``."""
    found = _TEXT.fullmatch(text)
    if found is None:
        raise ShardError(
            f"{what} {text!r} is not I/N: give the shard's index, from 0, and the number of "
            "shards, as 0/4 ... 3/4"
        )
    return _checked(int(found.group(1)), int(found.group(2)), what, text)


def _checked(index: int, count: int, what: str, text: str) -> Shard:
    if not 1 <= count <= MAX_SHARDS:
        raise ShardError(f"{what} {text!r}: the number of shards must be 1 to {MAX_SHARDS}")
    if not 0 <= index < count:
        raise ShardError(
            f"{what} {text!r}: the index counts from 0, so it must be 0 to {count - 1} "
            f"for {count} shards (Kubernetes' JOB_COMPLETION_INDEX counts from 0 too)"
        )
    return Shard(index, count)


def from_options(
    shard: str | None,
    shard_env: str | None,
    shard_count: int | None,
    environ: Mapping[str, str],
) -> Shard | None:
    """The shard the command line names: ``--shard I/N``, or ``--shard-env VAR`` (the
    variable holds ``I``, with ``--shard-count N``, or ``I/N``); None when neither is given."""
    if shard is not None and shard_env is not None:
        raise ShardError("give one of --shard I/N and --shard-env VAR, not both")
    if shard is not None:
        if shard_count is not None:
            raise ShardError("--shard I/N names the number of shards itself; drop --shard-count")
        return parse(shard)
    if shard_env is None:
        if shard_count is not None:
            raise ShardError("--shard-count goes with --shard-env VAR, which names the index")
        return None
    if _VARIABLE.fullmatch(shard_env) is None:
        raise ShardError(
            f"--shard-env {shard_env!r} is not the name of an environment variable (such as "
            f"{KUBERNETES_INDEX})"
        )
    value = environ.get(shard_env)
    if value is None:
        where = " (Kubernetes sets it in each pod of an Indexed Job)"
        raise ShardError(
            f"--shard-env {shard_env}: the variable is not set"
            f"{where if shard_env == KUBERNETES_INDEX else ''}"
        )
    what = f"--shard-env {shard_env} (={value!r})"
    if "/" in value:
        found = parse(value, what)
        if shard_count is not None and shard_count != found.count:
            raise ShardError(f"{what} names {found.count} shards, --shard-count {shard_count}")
        return found
    if not value.strip().isdigit():
        raise ShardError(f"{what} is not a shard index (a whole number from 0) nor I/N")
    if shard_count is None:
        raise ShardError(
            f"{what} holds an index only: give the number of shards with --shard-count N "
            "(an Indexed Job's completions)"
        )
    return _checked(int(value), shard_count, what, value)


def text(shard: Shard | None) -> str | None:
    """How outputs and saved plans record the shard: ``I/N``, or None for an unsharded run."""
    return None if shard is None else str(shard)
