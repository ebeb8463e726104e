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
from provision.model.playbook import Trust, TrustRoot
from provision.plan.model import Action, Change, Unchanged
from provision.transport.base import PathFlavour
from provision.trust import record as trust_record
from provision.trust.stores import (
    bundle_bytes,
    fingerprint,
    password_key,
    plan_store,
    store_key,
)

__all__ = [
    "bundle_bytes",
    "crl_paths",
    "fingerprint",
    "password_key",
    "plan_crl_copies",
    "plan_trust",
    "trust_roots",
]


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
        keys = [root_key(r) for r in trust.roots]
        pending = [k for k in keys if roots_of.get(k) is None]
        roots = [c for k in keys for c in roots_of.get(k) or []]
        for store in trust.stores:
            key = store_key(trust.name, store)
            entry = before.stores.get(key, trust_record.StoreEntry())
            if pending:
                # An authority this apply creates; a peer's certificate not known yet.
                unchanged.append(
                    Unchanged(f"trust {trust.name} {store.type} {key.split(' ', 2)[2]}",
                              f"waits for {', '.join(waiting(k) for k in pending)}")
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


def plan_crl_copies(
    target: Target, facts: HostFacts, crls: Mapping[str, tuple[bytes, bytes] | None]
) -> tuple[list[Change], list[Unchanged], str | None]:
    """Each authority's CRL copied to the host (``crl.host_dir``), as the controller last
    published it: a CRL apply republishes reaches the hosts at the next apply."""
    changes: list[Change] = []
    unchanged: list[Unchanged] = []
    for authority in target.playbook.authorities:
        if authority.crl is None or authority.crl.host_dir is None:
            continue
        copy = crls.get(authority.name)
        for index, path in enumerate(crl_paths(target, authority.crl.host_dir)):
            resource = f"crl {authority.name} {path}"
            if copy is None:
                unchanged.append(Unchanged(resource, "waits for the authority's first CRL"))
                continue
            state = facts.file(path)
            if state.kind not in ("missing", "file"):
                return changes, unchanged, f"{path} is {state.described}, not a file"
            if state.content == copy[index] and state.mode == 0o644:
                unchanged.append(Unchanged(resource, "the CRL as published"))
                continue
            action: Action = "create" if state.kind == "missing" else "update"
            reason = "missing" if action == "create" else "the controller published another"
            changes.append(
                Change(resource, action, reason, path=path, mode=0o644, content=copy[index])
            )
    return changes, unchanged, None


def crl_paths(target: Target, folder: str) -> tuple[str, str]:
    """Where a CRL's copies go on the host: crl.der, crl.pem (a relative folder is in the
    certificates directory: an authority is the same for every host, host variables and all)."""
    from provision.trust.revocation import CRL_DER, CRL_PEM

    folder = target.paths.join(target.certificates_dir, folder)
    return (
        target.paths.normpath(target.paths.join(folder, CRL_DER)),
        target.paths.normpath(target.paths.join(folder, CRL_PEM)),
    )


def trust_roots(loaded: Loaded, target: Target) -> dict[str, list[x509.Certificate] | None]:
    """Each root entry of the host's playbook, by key, as certificates (roots.py)."""
    from provision.trust.roots import resolve

    found: dict[str, list[x509.Certificate] | None] = {}
    for trust in target.playbook.trust:
        for root in trust.roots:
            key = root_key(root)
            if root.self_signed_of is not None:
                found[key] = loaded.peer_roots.get(key)
            else:
                found[key] = resolve(root, loaded.authorities, loaded.trust_files)
    return found


def root_key(root: TrustRoot) -> str:
    """How ``roots_of`` names a root entry: ``authority:NAME``, ``file:PATH``,
    ``self-signed:PATTERN/CERTIFICATE`` (``*``: every self-signed one)."""
    if root.authority is not None:
        return f"authority:{root.authority}"
    if root.file is not None:
        return f"file:{root.file}"
    return f"self-signed:{root.self_signed_of}/{root.certificate or '*'}"


def waiting(key: str) -> str:
    kind, name = key.split(":", 1)
    if kind == "authority":
        return f"authority {name} (created by this apply)"
    pattern, certificate = name.rsplit("/", 1)
    which = "their self-signed certificates" if certificate == "*" else certificate
    return (
        f"{which} on hosts {pattern} (each in this run, holding it as the playbook says: "
        "issued by this apply, the next one installs it)"
    )
