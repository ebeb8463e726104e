"""The certificate resource: what the host holds, the source's decision, and each output's change.

Whether to (re)issue is the source's word (``sources/``: the table in docs/regeneration.md);
this module reads the host's outputs and plans every output file around that decision.
Nothing here writes or reads a clock: ``now`` is passed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from provision.crypto import compare, encode, keys
from provision.crypto.decode import Bundle, load_bundle, load_private_key
from provision.crypto.types import PrivateKey
from provision.errors import CryptoError
from provision.facts import HostFacts
from provision.layout import PENDING_SUFFIX, pending_key
from provision.model.playbook import Certificate, Output
from provision.plan.material import Above, Material, bytes_above, output_bytes, output_mode
from provision.plan.model import Action, Change, Derived, Issue, Unchanged
from provision.sources.base import Current, Expected, HostRefusal, when
from provision.sources.provided import wants_csr
from provision.sources.registry import source_of


def read_current(
    spec: Certificate,
    paths: Mapping[str, str],
    facts: HostFacts,
    passwords: Mapping[str, bytes],
) -> Current:
    """Parse each output once; the first output that carries the leaf (or the key) wins."""
    leaf: x509.Certificate | None = None
    fallback: x509.Certificate | None = None
    key: PrivateKey | None = None
    chain: tuple[x509.Certificate, ...] = ()
    unreadable: list[str] = []
    locked: list[str] = []  # PFX files the password does not open
    self_signed = source_of(spec).leaf_is_root
    for output in spec.outputs:
        state = facts.file(paths[output.file])
        if state.content is None or (not state.content and output.content == "chain"):
            continue  # (a certificate issued by a root has an empty chain)
        try:
            bundle = _decode(output, state.content, passwords)
        except CryptoError as exc:
            problem = exc.message.split(": ", 1)[-1]
            if output.format == "pkcs12" and "password" in problem:
                locked.append(f"{output.file}: {problem}")
                continue
            unreadable.append(f"{output.file}: {problem}")
            continue
        if key is None and bundle.key is not None:
            key = bundle.key
        if leaf is None and output.holds_leaf and bundle.certificates:
            leaf = bundle.certificates[0]
            chain = bundle.certificates[1:]
        elif (
            fallback is None and self_signed and output.content == "root" and (bundle.certificates)
        ):
            # A self-signed certificate is its own root; used only when no output carries
            # the leaf itself, since after a switch from a CA this file holds the CA's root.
            fallback = bundle.certificates[0]
    if leaf is None:
        leaf = fallback
    if locked and (leaf is None or key is None):
        # A PFX that does not open with the password given is rewritten when another output
        # says what the certificate is (a new password); when it alone held the certificate
        # or key, a mistyped password must not make us re-key: refuse the host instead.
        raise HostRefusal(f"{locked[0]}; check the output's password (nothing was regenerated)")
    return Current(leaf, key, chain, tuple(unreadable), _pending_key(spec, paths, facts))


def pending_key_path(spec: Certificate, paths: Mapping[str, str]) -> str | None:
    """Where a key `provision csr` made for this certificate waits (its key output's path)."""
    if not wants_csr(spec):
        return None
    output = key_output(spec)
    return pending_key(paths[output.file]) if output is not None else None


def pending_name(spec: Certificate) -> str:
    """The pending key as a plan names it: the key output's name with the suffix."""
    output = key_output(spec)
    return f"{output.file if output else 'key'}{PENDING_SUFFIX}"


def key_output(spec: Certificate) -> Output | None:
    """The output that holds the key alone (``content: key``), if the certificate has one."""
    return next((o for o in spec.outputs if o.is_key_file), None)


def _pending_key(
    spec: Certificate, paths: Mapping[str, str], facts: HostFacts
) -> PrivateKey | None:
    path = pending_key_path(spec, paths)
    content = facts.file(path).content if path is not None else None
    if not content:
        return None
    try:
        return load_private_key(content, source=path or "")
    except CryptoError:
        return None  # a damaged pending key is as good as none: `provision csr` makes another


def _decode(output: Output, content: bytes, passwords: Mapping[str, bytes]) -> Bundle:
    if output.format == "der" and output.content == "key":
        # DER keys are not recognised by content sniffing alone; they are not certificates.
        return Bundle((), _der_key(content))
    return load_bundle(content, password=passwords.get(output.file), source=output.file)


def _der_key(content: bytes) -> PrivateKey:
    try:
        key = serialization.load_der_private_key(content, None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError):
        raise CryptoError("not a DER private key") from None
    return key  # type: ignore[return-value]


def summary(certificate: x509.Certificate) -> dict[str, str]:
    """What a reviewer wants to see of a certificate: never key material."""
    return {
        "sha256": certificate.fingerprint(hashes.SHA256()).hex().upper(),
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "names": ", ".join(compare.san_names(certificate)),
        "not_after": when(certificate.not_valid_after_utc),
    }


def plan_certificate(
    spec: Certificate,
    paths: Mapping[str, str],
    facts: HostFacts,
    passwords: Mapping[str, bytes],
    now: dt.datetime,
    expected: Expected = Expected(),
) -> tuple[list[Change], list[Unchanged], dt.datetime | None]:
    """The certificate's own change (if any), one change or no-op per output, and the moment
    the clock alone would change the certificate's decision (None: it cannot)."""
    current = read_current(spec, paths, facts, passwords)
    source = source_of(spec)
    decision = source.decide(spec, current, now, expected)
    changes: list[Change] = []
    unchanged: list[Unchanged] = []
    resource = f"certificate {spec.name}"
    if decision.action is not None:
        changes.append(
            Change(
                resource,
                decision.action,
                decision.reason,
                issue=Issue(spec.name, decision.new_key),
                before=summary(current.leaf) if current.leaf else None,
            )
        )
    else:
        unchanged.append(Unchanged(resource, decision.reason))
    pending = pending_key_path(spec, paths)
    if (
        pending is not None
        and current.pending_key is not None
        and (
            decision.key_from_pending
            or (
                current.key is not None
                and keys.public_der(current.key) == keys.public_der(current.pending_key)
            )
        )
    ):
        changes.append(
            Change(
                f"file {pending_name(spec)}",
                "delete",
                "the key `provision csr` made is installed now",
                path=pending,
            )
        )

    material = None
    waiting = source.waiting_for(spec, expected) is not None
    if (
        decision.action is None
        and not waiting
        and current.leaf is not None
        and current.key is not None
    ):
        # (While waiting for a supplied file the chain and root are unknown: every output is
        # left as it is, rather than re-derived from the leaf alone.)
        material = source.material(spec, current, expected)
    # A reissue that keeps the key leaves key files as they are, and one under the same issuer
    # its chain and root files.
    kept_key = current.key if decision.action is not None and not decision.new_key else None
    above = source.above(spec, expected) if decision.action is not None else None
    for index, output in enumerate(spec.outputs):
        if kept_key is not None and output.is_key_file:
            state = facts.file(paths[output.file])
            if state.content == key_file_bytes(output, kept_key) and state.mode == 0o600:
                unchanged.append(Unchanged(f"file {output.file}", "up to date (key kept)"))
                continue
        change = _output_change(
            spec,
            index,
            output,
            paths[output.file],
            facts,
            material,
            passwords,
            reissued=decision.action is not None,
            above=above,
        )
        if isinstance(change, Change):
            changes.append(change)
        else:
            unchanged.append(change)
    return changes, unchanged, decision.until


def current_material(spec: Certificate, current: Current, expected: Expected) -> Material:
    """The material of a certificate the host already holds (chain and root from its source)."""
    return source_of(spec).material(spec, current, expected)


def _output_change(
    spec: Certificate,
    index: int,
    output: Output,
    path: str,
    facts: HostFacts,
    material: Material | None,
    passwords: Mapping[str, bytes],
    *,
    reissued: bool,
    above: Above | None = None,
) -> Change | Unchanged:
    resource = f"file {output.file}"
    mode = output_mode(output)
    state = facts.file(path)
    derived = Derived(spec.name, index)

    def change(action: Action, reason: str) -> Change:
        return Change(resource, action, reason, path=path, mode=mode, derived=derived)

    if not reissued and material is None:
        # Nothing to write yet: the certificate waits for a signed file (CSR workflow).
        return Unchanged(resource, "waiting for the certificate")
    if state.kind == "missing":
        return change("create", "missing")
    if state.kind != "file":
        return change("replace", f"is {state.described}, expected a file")
    if reissued or material is None:
        kept = bytes_above(output, above) if above is not None else None
        if kept is not None and state.content == kept and state.mode == mode:
            return Unchanged(resource, "up to date (the issuer's, which the reissue keeps)")
        return change("update", f"certificate {spec.name} is reissued")
    if not _same_meaning(output, state.content or b"", material, passwords):
        return change("update", f"does not hold the current {_what(output)}")
    if state.mode != mode:
        return change("update", f"mode {state.mode:04o}, want {mode:04o}")
    return Unchanged(resource, "up to date")


def key_file_bytes(output: Output, key: PrivateKey) -> bytes:
    """A key output's bytes: the key in the output's encoding (DER or PEM)."""
    return encode.private_key_der(key) if output.format == "der" else encode.private_key_pem(key)


def _what(output: Output) -> str:
    return "key and certificates" if output.format == "pkcs12" else f"{output.content}"


def _same_meaning(
    output: Output, content: bytes, material: Material, passwords: Mapping[str, bytes]
) -> bool:
    if output.format != "pkcs12":
        # Every other encoding is deterministic, so equal meaning is equal bytes.
        return content == output_bytes(output, material, passwords)
    try:
        bundle = load_bundle(content, password=passwords[output.file], source=output.file)
        opened = pkcs12.load_pkcs12(content, passwords[output.file])
    except (CryptoError, ValueError):
        return False
    wanted = [material.leaf, *material.pkcs12_extras()]
    friendly = opened.cert.friendly_name if opened.cert else None
    return (
        bundle.key is not None
        and keys.public_der(bundle.key) == keys.public_der(material.key)
        and list(bundle.certificates) == wanted
        and friendly == (output.friendly_name.encode() if output.friendly_name else None)
        and _profile_of(content) == output.profile
    )


# The algorithm identifiers that tell the two profiles apart inside a PFX's DER.
_AES_256_CBC = bytes.fromhex("060960864801650304012a")
_PBE_SHA1_3DES = bytes.fromhex("060a2a864886f70d010c0103")


def _profile_of(content: bytes) -> str | None:
    if _AES_256_CBC in content:
        return "modern"
    if _PBE_SHA1_3DES in content:
        return "legacy"
    return None
