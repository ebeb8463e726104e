"""The trust section: which roots each host's trust stores must hold, and the change to each
store. Pure, like the rest of the planner: the roots come from the loaded authorities and
root files (provision/trust/roots.py), each store's change from provision/trust/stores.py.

Besides the stores' own changes, the host's trust record (provision/trust/record.py) is
rewritten whenever what provision added to a store changes: the record is what lets a later
run remove a root the playbook drops, and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cryptography import x509

from provision.facts import HostFacts
from provision.inputs.load import Loaded
from provision.inputs.targets import Target
from provision.model.playbook import Trust
from provision.plan.model import Change, Unchanged
from provision.transport.base import PathFlavour
from provision.trust import record as trust_record
from provision.trust.stores import bundle_bytes, fingerprint, plan_store, store_key

__all__ = ["bundle_bytes", "fingerprint", "password_key", "plan_trust", "trust_roots"]


def password_key(path: str) -> str:
    """Where a Java store's password is kept among a host's passwords (beside the outputs')."""
    return f"trust:{path}"


def plan_trust(
    trusts: Sequence[Trust],
    facts: HostFacts,
    roots_of: Mapping[str, Sequence[x509.Certificate] | None],
    record_path: str,
    paths: PathFlavour,
    passwords: Mapping[str, bytes] | None = None,
) -> tuple[list[Change], list[Unchanged], str | None]:
    """One change or no-op per store (a folder store: one per file, and its command); an
    error for a store that cannot be written, or a trust record that is not one.

    ``roots_of`` maps each root entry's key (``authority:NAME``, ``file:PATH``) to its
    certificates, or None while it waits for this apply to create it."""
    changes: list[Change] = []
    unchanged: list[Unchanged] = []
    if not trusts and facts.file(record_path).kind == "missing":
        return changes, unchanged, None
    try:
        before = trust_record.parse(facts.file(record_path).content, record_path)
    except trust_record.HostileRecord as exc:
        return changes, unchanged, exc.message
    if facts.file(record_path).kind not in ("missing", "file"):
        return changes, unchanged, f"{record_path} is {facts.file(record_path).described}"
    entries: dict[str, trust_record.StoreEntry] = {}
    for trust in trusts:
        keys = [root_key(r.authority, r.file) for r in trust.roots]
        pending = [k for k in keys if roots_of.get(k) is None]
        roots = [c for k in keys for c in roots_of.get(k) or []]
        for store in trust.stores:
            key = store_key(trust.name, store)
            entry = before.stores.get(key, trust_record.StoreEntry())
            if pending:
                # Its root exists only once this apply has created the authority.
                names = ", ".join(k.split(":", 1)[1] for k in pending)
                unchanged.append(
                    Unchanged(f"trust {trust.name} {store.type} {key.split(' ', 2)[2]}",
                              f"waits for authority {names} (created by this apply)")
                )  # fmt: skip
                entries[key] = entry
                continue
            password = (passwords or {}).get(password_key(getattr(store, "path", "")))
            result = plan_store(trust.name, store, roots, facts, entry, paths, password)
            if isinstance(result, str):
                return changes, unchanged, result
            changes.extend(result.changes)
            unchanged.extend(result.unchanged)
            if result.entry is not None:
                entries[key] = result.entry
    # Stores no longer in the playbook keep their entries: what provision added there stays
    # (it cannot remove without the store's settings), and is removed if the store returns.
    for key, entry in before.stores.items():
        entries.setdefault(key, entry)
    after = trust_record.TrustRecord(stores=entries)
    content = trust_record.dumps(after)
    state = facts.file(record_path)
    nothing = not state.exists and content == trust_record.dumps(trust_record.TrustRecord())
    if content != state.content and not nothing:
        changes.append(
            Change(
                "trust record",
                "update" if state.exists else "create",
                "what provision added to each trust store",
                path=record_path,
                mode=0o644,
                content=content,
            )
        )
    return changes, unchanged, None


def trust_roots(loaded: Loaded, target: Target) -> dict[str, list[x509.Certificate] | None]:
    """Each root entry of the host's playbook, by key, as certificates (roots.py)."""
    from provision.trust.roots import resolve

    found: dict[str, list[x509.Certificate] | None] = {}
    for trust in target.playbook.trust:
        for root in trust.roots:
            key = root_key(root.authority, root.file)
            found[key] = resolve(root, loaded.authorities, loaded.trust_files)
    return found


def root_key(authority: str | None, file: str | None) -> str:
    return f"authority:{authority}" if authority is not None else f"file:{file}"
