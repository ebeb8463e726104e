"""Roots from other hosts of the run: the self-signed certificates they hold
(``trust: roots: [{self_signed_of: PATTERN}]``), read from those hosts before any host is
planned.

A peer's certificate file is that host's input, and whoever can write there would have every
other host trust what they put in it. So a certificate is taken only if it is what the peer's
playbook says it must be (its source finds nothing to reissue: names, key, validity) and it
verifies as issued by itself. A peer outside the run (``--limit``), one that cannot be read,
or one whose certificate is missing or not as the playbook says makes the root wait: its
stores are left as they are (never emptied of a root because a peer was not looked at).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from provision.errors import ProvisionError
from provision.facts import gather
from provision.inputs.load import Loaded
from provision.inputs.targets import Target
from provision.model.playbook import TrustRoot
from provision.plan.certificate import read_current
from provision.plan.trust import root_key
from provision.sources.registry import source_of


def wanted(loaded: Loaded) -> dict[str, TrustRoot]:
    found: dict[str, TrustRoot] = {}
    for target in loaded.targets:
        for trust in target.playbook.trust:
            for root in trust.roots:
                if root.self_signed_of is not None:
                    found.setdefault(root_key(root), root)
    return found


async def collect(loaded: Loaded, now: dt.datetime) -> dict[str, list[x509.Certificate] | None]:
    """Each peer root's certificates, or None while it waits (see the module docstring)."""
    roots = wanted(loaded)
    if not roots:
        return {}
    by_name = {t.host.name: t for t in loaded.targets}
    cache: dict[str, list[tuple[str, x509.Certificate]] | None] = {}
    found: dict[str, list[x509.Certificate] | None] = {}
    for key, root in roots.items():
        assert root.self_signed_of is not None
        names = [h.name for h in loaded.inventory.select(root.self_signed_of)]
        if not names or any(name not in by_name for name in names):
            found[key] = None  # a peer outside this run: its root is not known
            continue
        certificates: list[x509.Certificate] | None = []
        for name in names:
            if name not in cache:
                cache[name] = await _own_roots(loaded, by_name[name], now)
            held = cache[name]
            if held is None or certificates is None:
                certificates = None
                continue
            mine = [c for cert, c in held if root.certificate in (None, cert)]
            if root.certificate is not None and not mine:
                certificates = None  # that host has no such certificate (yet)
                continue
            certificates.extend(mine)
        found[key] = certificates
    return found


async def _own_roots(
    loaded: Loaded, peer: Target, now: dt.datetime
) -> list[tuple[str, x509.Certificate]] | None:
    """The self-signed certificates a peer holds as its playbook says; None when any of them
    is missing, unreadable or not as the playbook says (the roots then wait)."""
    specs = [c for c in peer.playbook.certificates if source_of(c).leaf_is_root]
    if not specs:
        return []
    try:
        await peer.transport.start()
        paths: Sequence[str] = [p for c in specs for p in peer.output_paths(c).values()]
        facts = await gather(peer.transport, paths)
    except ProvisionError:
        return None
    passwords = loaded.passwords.get(peer.host.name, {})
    expected = loaded.expected(peer)
    held = []
    for spec in specs:
        current = read_current(spec, peer.output_paths(spec), facts, passwords)
        leaf = current.leaf
        if leaf is None:
            return None
        decision = source_of(spec).decide(spec, current, now, expected[spec.name])
        if decision.action is not None:
            return None
        try:
            leaf.verify_directly_issued_by(leaf)
        except (ValueError, TypeError, InvalidSignature):
            return None
        held.append((spec.name, leaf))
    return held
