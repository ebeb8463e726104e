"""The certificate resource: what the host has, whether to (re)issue, and each output's change.

``decide`` is the table of reasons documented in docs/regeneration.md; every branch returns the
words a plan prints. Nothing here writes or reads a clock: ``now`` is passed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from provision.crypto import chains, compare, encode, keys
from provision.crypto.build import SubjectFields, name_of
from provision.crypto.decode import Bundle, load_bundle
from provision.crypto.types import PrivateKey
from provision.errors import CryptoError, ProvisionError
from provision.facts import HostFacts
from provision.model.playbook import Certificate, Output, ProvidedSource, SelfSignedSource
from provision.plan.material import Material, issued_material, output_bytes, output_mode
from provision.plan.model import Action, Change, Derived, Issue, Unchanged
from provision.sources.supplied import Supplied


@dataclass(frozen=True)
class Current:
    """What the host's output files say about a certificate."""

    leaf: x509.Certificate | None
    key: PrivateKey | None
    chain: tuple[x509.Certificate, ...]
    unreadable: tuple[str, ...]  # "httpscert.pem: truncated PEM ..."


@dataclass(frozen=True)
class Expected:
    """What the playbook's source says the certificate must be.

    self-signed: nothing set. ca: ``authority`` (its material), or only ``authority_subject``
    while the authority is still to be created. provided: ``supplied``, or nothing while the
    signed file has not arrived (``waiting_for`` names it).
    """

    authority: Material | None = None
    authority_subject: str | None = None
    supplied: Supplied | None = None
    waiting_for: str | None = None


class HostRefusal(ProvisionError):
    """The certificate cannot be installed on this host as things stand."""


@dataclass(frozen=True)
class Decision:
    action: Action | None
    reason: str
    new_key: bool = False
    # For a decision to leave the certificate alone: the moment the clock alone would change
    # it (the renewal window opens). None: the clock cannot change it.
    until: dt.datetime | None = None


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
    self_signed = isinstance(spec.source, SelfSignedSource)
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
    return Current(leaf, key, chain, tuple(unreadable))


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


def decide(
    spec: Certificate,
    current: Current,
    now: dt.datetime,
    issuer: x509.Certificate | None = None,
) -> Decision:
    """Whether to issue the certificate, and why. ``issuer`` is None for self-signed."""
    rotate = spec.key.rotate == "always"
    if current.leaf is None:
        if current.unreadable:
            return Decision("replace", f"unreadable: {current.unreadable[0]}", new_key=True)
        if current.key is not None and keys.label(current.key) == spec.key.label:
            # A key without a certificate: keep it (it may be the one a CSR was made for).
            return Decision("create", "certificate missing", new_key=False)
        return Decision("create", "missing", new_key=True)
    leaf = current.leaf
    if current.key is None:
        if current.unreadable:
            return Decision("replace", f"unreadable: {current.unreadable[0]}", new_key=True)
        return Decision("replace", "key missing", new_key=True)
    if not keys.matches(current.key, leaf.public_key()):  # type: ignore[arg-type]
        return Decision("replace", "key does not match certificate", new_key=True)
    have_key = keys.label(current.key)
    if have_key != spec.key.label:
        return Decision("replace", f"key changed: {have_key} -> {spec.key.label}", new_key=True)
    issuer_problem = _issuer_change(leaf, issuer)
    if issuer_problem:
        return Decision("replace", issuer_problem, new_key=rotate)
    if spec.subject is not None:
        wanted = name_of(SubjectFields(**spec.subject.model_dump()))
        if leaf.subject != wanted:
            return Decision(
                "replace",
                f"subject changed: {leaf.subject.rfc4514_string()} -> {wanted.rfc4514_string()}",
                new_key=rotate,
            )
    added, removed = compare.names_difference(leaf, list(spec.names))
    if added or removed:
        words = " ".join([*(f"+{n}" for n in added), *(f"-{n}" for n in removed)])
        return Decision("replace", f"names changed: {words}", new_key=rotate)
    return _renewal(spec, leaf, now, rotate)


def decide_supplied(
    spec: Certificate, current: Current, supplied: Supplied, now: dt.datetime
) -> Decision:
    """A third-party certificate: install it when the host does not hold exactly it."""
    left = compare.days_left(supplied.leaf, now)
    if left < spec.renew_before_days:
        raise HostRefusal(
            f"certificate {spec.name}: {supplied.certificate_file} expires in {_days(left)} "
            f"(< {spec.renew_before_days}); supply a renewed certificate there"
        )
    if supplied.key is None:
        # CSR workflow: the certificate must fit the key that already lives on the host.
        if current.key is None:
            raise HostRefusal(
                f"certificate {spec.name}: no key on the host for "
                f"{supplied.certificate_file}; run `provision csr` first"
            )
        if not keys.matches(current.key, supplied.leaf.public_key()):  # type: ignore[arg-type]
            raise HostRefusal(
                f"certificate {spec.name}: {supplied.certificate_file} does not "
                "match the key on the host (was the CSR made for another key?)"
            )
    # The supplied key replaces the host's unless they are the same key (or there is none).
    new_key = supplied.key is not None and (
        current.key is None or not keys.matches(current.key, supplied.key.public_key())
    )
    if current.leaf is None:
        return Decision(
            "create", "missing" if current.key is None else "certificate missing", new_key=new_key
        )
    if current.leaf == supplied.leaf:
        if supplied.key is not None and (
            current.key is None or not keys.matches(current.key, supplied.leaf.public_key())  # type: ignore[arg-type]
        ):
            return Decision("replace", "key does not match certificate", new_key=True)
        expires = supplied.leaf.not_valid_after_utc
        return Decision(
            None,
            f"installed, valid until {_date(expires)}",
            until=expires - dt.timedelta(days=spec.renew_before_days),
        )
    if current.leaf.issuer != supplied.leaf.issuer or compare.is_self_signed(current.leaf):
        before = (
            "self-signed"
            if compare.is_self_signed(current.leaf)
            else current.leaf.issuer.rfc4514_string()
        )
        return Decision(
            "replace",
            f"issuer changed: {before} -> {supplied.leaf.issuer.rfc4514_string()}",
            new_key=new_key,
        )
    if current.leaf.serial_number == supplied.leaf.serial_number:
        # Same issuer and serial but other bytes: an altered copy (a damaged signature).
        return Decision(
            "replace",
            f"differs from {supplied.certificate_file} under the same serial "
            f"{supplied.leaf.serial_number:x} (a damaged or altered copy)",
            new_key=new_key,
        )
    return Decision(
        "replace",
        f"supplied certificate changed: serial "
        f"{current.leaf.serial_number:x} -> {supplied.leaf.serial_number:x}",
        new_key=new_key,
    )


def _issuer_change(leaf: x509.Certificate, issuer: x509.Certificate | None) -> str | None:
    if issuer is None:
        if compare.is_self_signed(leaf):
            return _damaged(leaf, leaf)
        return f"issuer changed: {leaf.issuer.rfc4514_string()} -> self-signed"
    if compare.issued_by(leaf, issuer):
        return _damaged(leaf, issuer)
    before = "self-signed" if compare.is_self_signed(leaf) else leaf.issuer.rfc4514_string()
    return f"issuer changed: {before} -> {issuer.subject.rfc4514_string()}"


def _damaged(leaf: x509.Certificate, issuer: x509.Certificate) -> str | None:
    # The issuer is recognised by name and key identifier, which a damaged or forged copy
    # keeps; the signature is the proof (checked once per leaf and issuer, crypto.chains).
    problem = chains.signature_problem(leaf, issuer)
    return f"signature does not verify: {problem}" if problem else None


def _renewal(spec: Certificate, leaf: x509.Certificate, now: dt.datetime, rotate: bool) -> Decision:
    if now < leaf.not_valid_before_utc:
        return Decision("update", f"not valid until {_date(leaf.not_valid_before_utc)}", rotate)
    left = compare.days_left(leaf, now)
    if left <= 0:
        return Decision("update", f"expired {_days(-left)} ago", new_key=rotate)
    if left < spec.renew_before_days:
        return Decision(
            "update", f"expires in {_days(left)} (< {spec.renew_before_days})", new_key=rotate
        )
    if spec.validity_days is not None:
        lifetime = compare.lifetime_days(leaf)
        # A day of slack: issuers round validity, and we backdate by an hour.
        if abs(lifetime - spec.validity_days) > 1:
            return Decision(
                "update",
                f"validity changed: {round(lifetime)} -> {spec.validity_days} days",
                new_key=rotate,
            )
    # The date, not a count of days: an unchanged plan reads the same tomorrow.
    expires = leaf.not_valid_after_utc
    return Decision(
        None,
        f"valid until {_date(expires)}",
        until=expires - dt.timedelta(days=spec.renew_before_days),
    )


def _days(days: float) -> str:
    whole = int(days)
    return "1 day" if whole == 1 else f"{whole} days"


def _date(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def summary(certificate: x509.Certificate) -> dict[str, str]:
    """What a reviewer wants to see of a certificate: never key material."""
    return {
        "sha256": certificate.fingerprint(hashes.SHA256()).hex().upper(),
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "names": ", ".join(compare.san_names(certificate)),
        "not_after": _date(certificate.not_valid_after_utc),
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
    decision = _decision(spec, current, now, expected)
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

    material = None
    waiting = isinstance(spec.source, ProvidedSource) and expected.supplied is None
    if (
        decision.action is None
        and not waiting
        and current.leaf is not None
        and current.key is not None
    ):
        # (While waiting for a supplied file the chain and root are unknown: every output is
        # left as it is, rather than re-derived from the leaf alone.)
        material = _material(spec, current, expected)
    # A reissue that keeps the key leaves key files as they are.
    kept_key = current.key if decision.action is not None and not decision.new_key else None
    for index, output in enumerate(spec.outputs):
        if kept_key is not None and output.is_key_file:
            state = facts.file(paths[output.file])
            if state.content == _key_bytes(output, kept_key) and state.mode == 0o600:
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
        )
        if isinstance(change, Change):
            changes.append(change)
        else:
            unchanged.append(change)
    return changes, unchanged, decision.until


def _decision(
    spec: Certificate, current: Current, now: dt.datetime, expected: Expected
) -> Decision:
    if isinstance(spec.source, ProvidedSource):
        if expected.supplied is not None:
            return decide_supplied(spec, current, expected.supplied, now)
        if current.leaf is not None:
            return Decision(None, f"installed; waiting for {expected.waiting_for}")
        return Decision(None, f"waiting for the signed certificate at {expected.waiting_for}")
    if spec.source.type == "ca" and expected.authority is None:
        # The authority is created at the start of apply; nothing can be issued by it yet.
        if current.leaf is None:
            return Decision("create", "missing", new_key=True)
        before = (
            "self-signed"
            if compare.is_self_signed(current.leaf)
            else current.leaf.issuer.rfc4514_string()
        )
        return Decision(
            "replace",
            f"issuer changed: {before} -> {expected.authority_subject} "
            "(authority created by this apply)",
            new_key=spec.key.rotate == "always",
        )
    issuer = expected.authority.leaf if expected.authority else None
    return decide(spec, current, now, issuer)


def current_material(spec: Certificate, current: Current, expected: Expected) -> Material:
    """The material of a certificate the host already holds (chain and root from its source)."""
    return _material(spec, current, expected)


def _material(spec: Certificate, current: Current, expected: Expected) -> Material:
    assert current.leaf is not None and current.key is not None
    if expected.authority is not None:
        return issued_material(current.key, current.leaf, expected.authority)
    if expected.supplied is not None:
        supplied = expected.supplied
        return Material(current.key, current.leaf, supplied.chain, supplied.root)
    if isinstance(spec.source, ProvidedSource):
        chain = current.chain
        root = chain[-1] if chain and compare.is_self_signed(chain[-1]) else None
        return Material(current.key, current.leaf, chain[:-1] if root else chain, root)
    return Material(current.key, current.leaf)


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
        return change("update", f"certificate {spec.name} is reissued")
    if not _same_meaning(output, state.content or b"", material, passwords):
        return change("update", f"does not hold the current {_what(output)}")
    if state.mode != mode:
        return change("update", f"mode {state.mode:04o}, want {mode:04o}")
    return Unchanged(resource, "up to date")


def _key_bytes(output: Output, key: PrivateKey) -> bytes:
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
