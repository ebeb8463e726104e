"""The trust section: which roots each host's trust stores must hold, and the change to each
store. Pure, like the rest of the planner: the roots come from the loaded authorities.

A bundle is a file provision owns whole: its content is the playbook's roots (sorted by
SHA-256 fingerprint, so it is the same bytes every run), and a root the playbook no longer
lists is gone at the next rewrite. What the file held before is input from the host: parsed
only to say in the plan which roots come and go.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from provision.facts import HostFacts
from provision.model.playbook import Trust, TrustStore
from provision.plan.model import Action, Change, Unchanged


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex().upper()


def bundle_bytes(roots: list[x509.Certificate]) -> bytes:
    """The roots as a PEM bundle, each after a comment naming it (readers skip comments)."""
    from cryptography.hazmat.primitives import serialization

    parts = []
    for root in sorted(roots, key=fingerprint):
        parts.append(f"# {root.subject.rfc4514_string()} sha256:{fingerprint(root)}\n".encode())
        parts.append(root.public_bytes(serialization.Encoding.PEM))
    return b"".join(parts)


def _held(content: bytes) -> set[str] | None:
    """The fingerprints a bundle holds; None when it is not a PEM bundle at all."""
    try:
        return {fingerprint(c) for c in x509.load_pem_x509_certificates(content)}
    except ValueError:
        return None


def plan_trust(
    trusts: list[Trust],
    facts: HostFacts,
    roots_of: Mapping[str, Sequence[x509.Certificate] | None],
) -> tuple[list[Change], list[Unchanged], str | None]:
    """One change or no-op per store; an error for a store that cannot be written."""
    changes: list[Change] = []
    unchanged: list[Unchanged] = []
    for trust in trusts:
        pending = [r.authority for r in trust.roots if roots_of.get(r.authority) is None]
        # An authority may give several roots (the old and the new one while it rotates).
        roots = [c for r in trust.roots for c in roots_of.get(r.authority) or ()]
        unique = list({fingerprint(c): c for c in roots}.values())
        for store in trust.stores:
            result = _bundle(trust, store, facts, unique, pending)
            if isinstance(result, str):
                return changes, unchanged, result
            if isinstance(result, Change):
                changes.append(result)
            else:
                unchanged.append(result)
    return changes, unchanged, None


def _bundle(
    trust: Trust,
    store: TrustStore,
    facts: HostFacts,
    roots: list[x509.Certificate],
    pending: list[str],
) -> Change | Unchanged | str:
    resource = f"trust {trust.name} bundle {store.path}"
    state = facts.file(store.path)
    if state.kind == "symlink":
        return f"{store.path} is a symlink; refusing to write through it"
    if pending:
        # Its root exists only once this apply has created the authority.
        return Unchanged(
            resource, f"waits for authority {', '.join(pending)} (created by this apply)"
        )
    content = bundle_bytes(roots)
    want = {fingerprint(c): c for c in roots}

    def change(action: Action, reason: str) -> Change:
        return Change(
            resource,
            action,
            reason,
            path=store.path,
            mode=store.mode,
            content=content,
        )

    if state.kind == "missing":
        names = ", ".join(c.subject.rfc4514_string() for c in want.values())
        return change("create", f"missing; adds {names}")
    if state.kind != "file":
        return f"{store.path} is {state.described}, not a file"
    if state.content == content and state.mode == store.mode:
        return Unchanged(resource, f"holds {len(want)} root(s), up to date")
    held = _held(state.content or b"")
    if held is None:
        return change("update", "not a PEM bundle; rewritten")
    added = [want[f].subject.rfc4514_string() for f in sorted(set(want) - held)]
    removed = [f"sha256:{f[:16]}" for f in sorted(held - set(want))]
    words = [*(f"+{a}" for a in added), *(f"-{r}" for r in removed)]
    if words:
        return change("update", f"roots changed: {' '.join(words)}")
    if state.content != content:
        return change("update", "same roots, rewritten in provision's form")
    return change("update", f"mode {state.mode or 0:04o}, want {store.mode:04o}")
