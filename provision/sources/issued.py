"""The regeneration rules for a certificate issued here (self-signed or by an internal CA),
and the issuing itself. docs/regeneration.md is this table in words."""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from provision.crypto import build, chains, compare, keys
from provision.crypto.build import LeafRequest, SubjectFields, name_of
from provision.crypto.types import PrivateKey
from provision.model.playbook import Certificate
from provision.plan.material import Material, issued_material
from provision.sources.base import DAMAGED_KEY, Current, Decision, days, when
from provision.trust import health


def decide_issued(
    spec: Certificate,
    current: Current,
    now: dt.datetime,
    issuer: x509.Certificate | None = None,
    any_issuer: bool = False,
) -> Decision:
    """Whether to issue the certificate, and why. ``issuer`` is None for self-signed;
    ``any_issuer``: the CA is elsewhere (ACME) and chooses issuer and subject itself."""
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
    if not keys.proves(current.key):
        return Decision("replace", DAMAGED_KEY, new_key=True)
    have_key = keys.label(current.key)
    if have_key != spec.key.label:
        return Decision("replace", f"key changed: {have_key} -> {spec.key.label}", new_key=True)
    issuer_problem = None if any_issuer else _issuer_change(leaf, issuer)
    if issuer_problem:
        return Decision("replace", issuer_problem, new_key=rotate)
    if spec.subject is not None and not any_issuer:
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
    return _renewal(spec, leaf, now, rotate, issuer)


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


def _renewal(
    spec: Certificate,
    leaf: x509.Certificate,
    now: dt.datetime,
    rotate: bool,
    issuer: x509.Certificate | None = None,
) -> Decision:
    # A leaf cut at its issuer's end cannot be made to live longer by reissuing it: renewing
    # it on every run would only churn. The authority must be renewed or rotated instead.
    at_end = issuer is not None and health.at_issuer_end(leaf, issuer)
    if now < leaf.not_valid_before_utc:
        return Decision("update", f"not valid until {when(leaf.not_valid_before_utc)}", rotate)
    left = compare.days_left(leaf, now)
    if left <= 0:
        return Decision("update", f"expired {days(-left)} ago", new_key=rotate)
    if left < spec.renew_before_days and at_end:
        return Decision(
            None,
            f"valid until {when(leaf.not_valid_after_utc)}, its authority's expiry "
            "(renew or rotate the authority)",
            until=leaf.not_valid_after_utc,
        )
    if left < spec.renew_before_days:
        return Decision(
            "update", f"expires in {days(left)} (< {spec.renew_before_days})", new_key=rotate
        )
    if spec.validity_days is not None and not at_end:
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
        f"valid until {when(expires)}",
        until=expires - dt.timedelta(days=spec.renew_before_days),
    )


def issue_leaf(
    spec: Certificate,
    key: PrivateKey,
    now: dt.datetime,
    issuer: Material | None = None,
    serial: int | None = None,
    crl_urls: tuple[str, ...] = (),
) -> Material:
    """A new leaf for ``key``: self-signed without ``issuer``, else signed by that CA (and
    cut at its end: a leaf never outlives its issuer)."""
    subject = SubjectFields(**spec.subject.model_dump()) if spec.subject else SubjectFields()
    assert spec.validity_days is not None  # the model requires it for certificates issued here
    request = LeafRequest(subject, tuple(spec.names), spec.validity_days)
    if issuer is None:
        return Material(key, build.leaf(request, key, now=now))
    leaf = build.leaf(
        request,
        key,
        now=now,
        issuer=issuer.leaf,
        issuer_key=issuer.key,
        serial=serial,
        not_after=health.leaf_not_after(now, spec.validity_days, issuer.leaf),
        crl_urls=crl_urls,
    )
    return issued_material(key, leaf, issuer)
