"""One trust store's change, given the roots it must hold. Pure, like the rest of the planner.

Every store type takes a plain list of root certificates (``roots``): where they come from
(an authority, a file, an authority in rotation contributing its old and new roots) is
decided before, in ``provision/trust/roots.py``. A root is known by its SHA-256 fingerprint,
so the same roots are the same plan every run, in fingerprint order.

What provision added to a store is in the host's trust record (``record.py``); a root the
playbook no longer lists is removed only if the record names it, and nothing else in a store
is ever touched. The plain ``bundle`` is the exception: provision owns that file whole.

A store changed by a command (``update-ca-certificates``, ``update-ca-trust``, ``certutil``)
gets a change carrying that command: the executor runs it after the files are in place, in
the same steps as the config tests and reloads (one script per host over SSH).
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from provision.facts import HostFacts
from provision.model.playbook import (
    BundleStore,
    DebianStore,
    JavaStore,
    NssStore,
    RhelStore,
    TrustStore,
    WindowsStore,
)
from provision.plan.model import Action, Change, Unchanged
from provision.transport.base import PathFlavour
from provision.trust.record import StoreEntry

JAVA_TRUSTSTORE = "java-truststore"
DEFAULT_JAVA_PASSWORD = b"changeit"
FILE_PREFIX = "provision-"


def password_key(path: str) -> str:
    """Where a Java store's password is kept among a host's passwords (beside the outputs')."""
    return f"trust:{path}"


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex().upper()


def subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()


def described(fp: str, name: str) -> str:
    """A root as plans show it: its subject and the start of its fingerprint."""
    return f"{name} sha256:{fp[:16]}" if name else f"sha256:{fp[:16]}"


def unique(roots: Sequence[x509.Certificate]) -> dict[str, x509.Certificate]:
    """The roots by fingerprint, each once, in fingerprint order."""
    return {fingerprint(c): c for c in sorted(roots, key=fingerprint)}


def store_key(trust: str, store: TrustStore) -> str:
    """The store as the trust record names it."""
    return f"{trust} {store.type} {location(store)}"


def location(store: TrustStore) -> str:
    if isinstance(store, BundleStore | JavaStore):
        return store.path
    if isinstance(store, DebianStore | RhelStore):
        return store.dir
    if isinstance(store, NssStore):
        return store.database
    return store.script


def nickname(trust: str, fp: str) -> str:
    """The name provision gives a root it adds: an NSS nickname, a Java alias, a file's stem."""
    return f"{FILE_PREFIX}{trust}-{fp[:16].lower()}"


def root_file(paths: PathFlavour, store: DebianStore | RhelStore, trust: str, fp: str) -> str:
    return paths.normpath(paths.join(store.dir, nickname(trust, fp) + ".crt"))


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class StorePlan:
    changes: list[Change]
    unchanged: list[Unchanged]
    # What the trust record says of the store after this plan (None: no entry).
    entry: StoreEntry | None


def plan_store(
    trust: str,
    store: TrustStore,
    roots: Sequence[x509.Certificate],
    facts: HostFacts,
    entry: StoreEntry,
    paths: PathFlavour,
    password: bytes | None = None,
) -> StorePlan | str:
    """The store's changes; an error (a string) when it cannot be written safely."""
    want = unique(roots)
    if isinstance(store, BundleStore):
        return _bundle(trust, store, want, facts)
    if isinstance(store, DebianStore | RhelStore):
        return _folder(trust, store, want, facts, entry, paths)
    if isinstance(store, NssStore):
        return _nss(trust, store, want, entry)
    if isinstance(store, JavaStore):
        return _java(trust, store, want, facts, entry, password or DEFAULT_JAVA_PASSWORD)
    return _windows(trust, store, want, facts, entry)


def _words(added: Mapping[str, str], removed: Mapping[str, str]) -> str:
    return " ".join(
        [
            *(f"+{described(f, s)}" for f, s in sorted(added.items())),
            *(f"-{described(f, s)}" for f, s in sorted(removed.items())),
        ]
    )


def _names(want: Mapping[str, x509.Certificate]) -> dict[str, str]:
    return {f: subject(c) for f, c in want.items()}


def _bundle(
    trust: str, store: BundleStore, want: Mapping[str, x509.Certificate], facts: HostFacts
) -> StorePlan | str:
    resource = f"trust {trust} bundle {store.path}"
    state = facts.file(store.path)
    if state.kind == "symlink":
        return f"{store.path} is a symlink; refusing to write through it"
    content = bundle_bytes(list(want.values()))

    def change(action: Action, reason: str) -> StorePlan:
        return StorePlan(
            [Change(resource, action, reason, path=store.path, mode=store.mode, content=content)],
            [],
            None,
        )

    if state.kind == "missing":
        return change("create", f"missing; adds {_words(_names(want), {})}")
    if state.kind != "file":
        return f"{store.path} is {state.described}, not a file"
    if state.content == content and state.mode == store.mode:
        return StorePlan([], [Unchanged(resource, f"holds {len(want)} root(s), up to date")], None)
    try:
        held = {
            fingerprint(c): subject(c)
            for c in x509.load_pem_x509_certificates(state.content or b"")
        }
    except ValueError:
        return change("update", "not a PEM bundle; rewritten")
    added = {f: s for f, s in _names(want).items() if f not in held}
    removed = {f: s for f, s in held.items() if f not in want}
    if added or removed:
        return change("update", f"roots changed: {_words(added, removed)}")
    if state.content != content:
        return change("update", "same roots, rewritten in provision's form")
    return change("update", f"mode {state.mode or 0:04o}, want {store.mode:04o}")


def bundle_bytes(roots: Sequence[x509.Certificate]) -> bytes:
    """The roots as a PEM bundle, each after a comment naming it (readers skip comments)."""
    parts = []
    for root in sorted(roots, key=fingerprint):
        parts.append(f"# {subject(root)} sha256:{fingerprint(root)}\n".encode())
        parts.append(pem(root))
    return b"".join(parts)


def _folder(
    trust: str,
    store: DebianStore | RhelStore,
    want: Mapping[str, x509.Certificate],
    facts: HostFacts,
    entry: StoreEntry,
    paths: PathFlavour,
) -> StorePlan | str:
    """One ``.crt`` file per root in the store's folder, then its update command."""
    changes: list[Change] = []
    for fp, root in want.items():
        path = root_file(paths, store, trust, fp)
        state = facts.file(path)
        if state.kind == "symlink":
            return f"{path} is a symlink; refusing to write through it"
        if state.kind not in ("missing", "file"):
            return f"{path} is {state.described}, not a file"
        if state.kind == "file" and state.content == pem(root) and state.mode == 0o644:
            continue
        action: Action = "create" if state.kind == "missing" else "update"
        words = "adds" if action == "create" else "rewrites"
        resource = f"trust {trust} {store.type} {path}"
        changes.append(
            Change(resource, action, f"{words} {described(fp, subject(root))}", path=path,
                   mode=0o644, content=pem(root))
        )  # fmt: skip
    for fp, name in sorted(entry.roots.items()):
        if fp in want:
            continue
        path = root_file(paths, store, trust, fp)
        state = facts.file(path)
        if state.kind == "file":
            resource = f"trust {trust} {store.type} {path}"
            changes.append(Change(resource, "delete", f"removes {described(fp, name)}", path=path))
    resource = f"trust {trust} {store.type} {store.dir}"
    recorded = set(entry.roots)
    added = {f: s for f, s in _names(want).items() if f not in recorded}
    removed = {f: s for f, s in entry.roots.items() if f not in want}
    if not changes and not entry.pending and not added and not removed:
        return StorePlan(
            [], [Unchanged(resource, f"holds {len(want)} root(s)")], StoreEntry(roots=_names(want))
        )
    reason = f"run `{store.update_command}`"
    if entry.pending:
        reason += " (owed: it did not succeed before)"
    changes.append(Change(resource, "update", reason, command=store.update_command))
    return StorePlan(changes, [], StoreEntry(roots=_names(want), pending=True))


def _nss(
    trust: str, store: NssStore, want: Mapping[str, x509.Certificate], entry: StoreEntry
) -> StorePlan | str:
    """certutil adds every root (again: -A with the same nickname is idempotent) and removes
    the recorded roots the playbook dropped, only where certutil lists them."""
    resource = f"trust {trust} nss {store.database}"
    removing = {f: s for f, s in {**entry.removing, **entry.roots}.items() if f not in want}
    added = {f: s for f, s in _names(want).items() if f not in entry.roots}
    if not added and not removing and not entry.pending:
        return StorePlan(
            [], [Unchanged(resource, f"holds {len(want)} root(s)")], StoreEntry(roots=_names(want))
        )
    db = shlex.quote(f"sql:{store.database}")
    certutil = shlex.quote(store.certutil)
    steps = []
    for fp in sorted(removing):
        nick = shlex.quote(nickname(trust, fp))
        steps.append(
            f"if {certutil} -L -d {db} -n {nick} >/dev/null 2>&1; "
            f"then {certutil} -D -d {db} -n {nick}; fi"
        )
    for fp, root in want.items():
        der = base64.b64encode(root.public_bytes(serialization.Encoding.DER)).decode()
        nick = shlex.quote(nickname(trust, fp))
        steps.append(f"printf %s {der} | base64 -d | {certutil} -A -d {db} -n {nick} -t C,,")
    command = " && ".join(f"{{ {step}; }}" for step in steps) or "true"
    words = _words(added, removing) or "run certutil again"
    if entry.pending:
        words += " (owed: certutil did not succeed before)"
    change = Change(resource, "update", words, command=command)
    return StorePlan([change], [], StoreEntry(roots=_names(want), pending=True, removing=removing))


def _java(
    trust: str,
    store: JavaStore,
    want: Mapping[str, x509.Certificate],
    facts: HostFacts,
    entry: StoreEntry,
    password: bytes,
) -> StorePlan | str:
    """The truststore rewritten with the entries provision did not add, kept with their
    aliases, and the playbook's roots; what the tool added and no longer lists is left out."""
    resource = f"trust {trust} java {store.path}"
    state = facts.file(store.path)
    if state.kind == "symlink":
        return f"{store.path} is a symlink; refusing to write through it"
    if state.kind not in ("missing", "file"):
        return f"{store.path} is {state.described}, not a file"
    held: dict[str, tuple[str, x509.Certificate]] = {}
    if state.kind == "file":
        opened = read_truststore(state.content or b"", password)
        if isinstance(opened, str):
            return f"{store.path} {opened}; provision rewrites only truststores it can read"
        held = opened
    ours = {f: s for f, s in entry.roots.items() if f in held}
    foreign = {f: v for f, v in held.items() if f not in entry.roots}
    # A root already there, put by someone else, is theirs: not added again, never removed.
    adding = {f: c for f, c in want.items() if f not in foreign}
    added = {f: subject(c) for f, c in adding.items() if f not in held}
    removed = {f: s for f, s in ours.items() if f not in want}
    record = StoreEntry(roots={f: subject(c) for f, c in adding.items()})
    if state.kind == "file" and not added and not removed and state.mode == store.mode:
        return StorePlan([], [Unchanged(resource, f"holds {len(want)} root(s)")], record)
    entries = [(alias, cert) for alias, cert in foreign.values()]
    entries += [(nickname(trust, f), c) for f, c in adding.items()]
    listing = b"".join(
        f"# alias: {alias}\n".encode() + pem(cert)
        for alias, cert in sorted(entries, key=lambda e: e[0])
    )
    if state.kind == "missing":
        action: Action = "create"
        reason = f"missing; adds {_words(added, {})}"
    else:
        action = "update"
        reason = _words(added, removed) or f"mode {state.mode or 0:04o}, want {store.mode:04o}"
    change = Change(
        resource, action, reason, path=store.path, mode=store.mode, content=listing,
        encoding=JAVA_TRUSTSTORE,
    )  # fmt: skip
    return StorePlan([change], [], record)


def read_truststore(data: bytes, password: bytes) -> dict[str, tuple[str, x509.Certificate]] | str:
    """A PKCS#12 truststore's certificates by fingerprint, with their aliases; what is wrong
    with it otherwise (it holds a key, or does not open with the password)."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        opened = pkcs12.load_pkcs12(data, password)
    except ValueError:
        return "is not a PKCS#12 file that opens with the store's password"
    if opened.key is not None or opened.cert is not None:
        return "holds a private key entry (a keystore, not a truststore)"
    found = {}
    for item in opened.additional_certs:
        alias = (item.friendly_name or b"").decode(errors="replace")
        found[fingerprint(item.certificate)] = (
            alias or fingerprint(item.certificate)[:16].lower(),
            item.certificate,
        )
    return found


def java_truststore(listing: bytes, password: bytes) -> bytes:
    """The truststore's bytes from the plan's listing (``# alias: NAME`` then the PEM of each
    entry). Built at apply time: PKCS#12 is salted, so the bytes differ on every write, and
    the plan holds the listing, which does not."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    entries = []
    alias = None
    for block in listing.split(b"-----END CERTIFICATE-----\n"):
        for line in block.splitlines():
            if line.startswith(b"# alias: "):
                alias = line[len(b"# alias: ") :]
        if b"-----BEGIN CERTIFICATE-----" in block:
            certificate = x509.load_pem_x509_certificate(block + b"-----END CERTIFICATE-----\n")
            entries.append(pkcs12.PKCS12Certificate(certificate, alias))
    return pkcs12.serialize_java_truststore(
        entries, serialization.BestAvailableEncryption(password)
    )


def _windows(
    trust: str,
    store: WindowsStore,
    want: Mapping[str, x509.Certificate],
    facts: HostFacts,
    entry: StoreEntry,
) -> StorePlan | str:
    """The script is rewritten when the roots change; the roots it removes stay in it (and
    in the record), since provision cannot tell when the script has run on the host."""
    resource = f"trust {trust} windows {store.script}"
    removing = {f: s for f, s in {**entry.removing, **entry.roots}.items() if f not in want}
    record = StoreEntry(roots=_names(want), removing=removing)
    script = windows_script(trust, list(want.values()), removing)
    state = facts.file(store.script)
    if state.kind == "symlink":
        return f"{store.script} is a symlink; refusing to write through it"
    if state.kind not in ("missing", "file"):
        return f"{store.script} is {state.described}, not a file"
    if state.content == script and state.mode == 0o644:
        return StorePlan([], [Unchanged(resource, f"imports {len(want)} root(s)")], record)
    added = {f: s for f, s in _names(want).items() if f not in entry.roots}
    dropped = {f: s for f, s in entry.roots.items() if f not in want}
    words = _words(added, dropped) or "the script rewritten"
    action: Action = "create" if state.kind == "missing" else "update"
    change = Change(resource, action, words, path=store.script, mode=0o644, content=script)
    return StorePlan([change], [], record)


def windows_script(
    trust: str, roots: Sequence[x509.Certificate], removing: Mapping[str, str]
) -> bytes:
    """PowerShell for Cert:\\LocalMachine\\Root: each root imported unless there, each root
    provision added and no longer lists removed (by SHA-256 of the certificate, so nothing
    else in the store is ever matched)."""
    from provision.servers.iis import powershell_quote

    lines = [
        f"# Written by provision for trust {trust}: run as an administrator.",
        "$ErrorActionPreference = 'Stop'",
        "$store = New-Object System.Security.Cryptography.X509Certificates.X509Store("
        "'Root', 'LocalMachine')",
        "$store.Open('ReadWrite')",
        "$sha256 = [System.Security.Cryptography.SHA256]::Create()",
        "function Get-Sha256($c) { ($sha256.ComputeHash($c.RawData) | "
        "ForEach-Object { $_.ToString('X2') }) -join '' }",
        "$held = @{}",
        "foreach ($c in $store.Certificates) { $held[(Get-Sha256 $c)] = $c }",
    ]
    # (The record's subjects are the host's words: never written into a script.)
    for fp in sorted(removing):
        lines.append(
            f"if ($held.ContainsKey({powershell_quote(fp)})) "
            f"{{ $store.Remove($held[{powershell_quote(fp)}]) }}"
        )
    for root in sorted(roots, key=fingerprint):
        fp = fingerprint(root)
        der = base64.b64encode(root.public_bytes(serialization.Encoding.DER)).decode()
        lines.append(f"# add {subject(root)}")
        lines.append(
            f"if (-not $held.ContainsKey({powershell_quote(fp)})) {{ "
            "$c = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2("
            f"[Convert]::FromBase64String({powershell_quote(der)})); "
            f"$c.FriendlyName = {powershell_quote(nickname(trust, fp))}; $store.Add($c) }}"
        )
    lines.append("$store.Close()")
    return ("\r\n".join(lines) + "\r\n").encode()
