"""``source: provided``: a certificate a third-party CA issued, supplied as files on the
controller (checked at load time by ``sources/supplied.py``), with the CSR workflow for keys
that live on the hosts (`provision csr`)."""

from __future__ import annotations

import datetime as dt

from provision.crypto import compare, keys
from provision.crypto.types import PrivateKey
from provision.model.playbook import Certificate, ProvidedSource
from provision.plan.material import Above, Material
from provision.sources.base import (
    DAMAGED_KEY,
    CertificateSource,
    Controller,
    Current,
    Decision,
    Expected,
    HostRefusal,
    IssueRequest,
    days,
    when,
)
from provision.sources.supplied import Supplied


def _source(spec: Certificate) -> ProvidedSource:
    assert isinstance(spec.source, ProvidedSource)  # the registry dispatches on the model's tag
    return spec.source


def wants_csr(spec: Certificate) -> bool:
    """The key lives on the host and the CA signs a request for it (no `key:` supplied)."""
    return isinstance(spec.source, ProvidedSource) and spec.source.key is None


class Provided(CertificateSource):
    type = "provided"

    def expected(self, spec: Certificate, host: str, controller: Controller) -> Expected:
        return Expected(
            supplied=controller.supplied.get((host, spec.name)),
            waiting_for=_source(spec).certificate,
        )

    def waiting_for(self, spec: Certificate, expected: Expected) -> str | None:
        return expected.waiting_for if expected.supplied is None else None

    def decide(
        self, spec: Certificate, current: Current, now: dt.datetime, expected: Expected
    ) -> Decision:
        if expected.supplied is not None:
            return _decide_supplied(spec, current, expected.supplied, now)
        if current.leaf is not None:
            return Decision(None, f"installed; waiting for {expected.waiting_for}")
        return Decision(None, f"waiting for the signed certificate at {expected.waiting_for}")

    def above(self, spec: Certificate, expected: Expected) -> Above | None:
        supplied = expected.supplied
        return Above(supplied.chain, supplied.root) if supplied is not None else None

    def material(self, spec: Certificate, current: Current, expected: Expected) -> Material:
        assert current.leaf is not None and current.key is not None
        if expected.supplied is not None:
            supplied = expected.supplied
            return Material(current.key, current.leaf, supplied.chain, supplied.root)
        # Not supplied (yet): the chain as the host holds it, its self-signed end the root.
        chain = current.chain
        root = chain[-1] if chain and compare.is_self_signed(chain[-1]) else None
        return Material(current.key, current.leaf, chain[:-1] if root else chain, root)

    async def issue(self, request: IssueRequest) -> Material:
        supplied = request.expected.supplied
        key = None
        if supplied is not None:
            key = supplied.key or _csr_key(request.current, supplied)
        if supplied is None or key is None:
            raise HostRefusal(f"certificate {request.spec.name}: nothing to install yet")
        return Material(key, supplied.leaf, supplied.chain, supplied.root)


def _decide_supplied(
    spec: Certificate, current: Current, supplied: Supplied, now: dt.datetime
) -> Decision:
    """A third-party certificate: install it when the host does not hold exactly it."""
    left = compare.days_left(supplied.leaf, now)
    if left < spec.renew_before_days:
        raise HostRefusal(
            f"certificate {spec.name}: {supplied.certificate_file} expires in {days(left)} "
            f"(< {spec.renew_before_days}); supply a renewed certificate there"
        )
    if supplied.key is None:
        # CSR workflow: the certificate must fit the key that already lives on the host, or
        # the one `provision csr` left pending for a new key type (installed with it now).
        pending = current.pending_key
        if pending is not None and _csr_key(current, supplied) is pending:
            return Decision(
                "create" if current.leaf is None else "replace",
                f"{supplied.certificate_file} is signed for the "
                f"{keys.label(pending)} key `provision csr` made: installing both",
                new_key=True,
                key_from_pending=True,
            )
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
        if current.key is not None and not keys.proves(current.key):
            if supplied.key is not None:
                return Decision("replace", DAMAGED_KEY, new_key=True)
            raise HostRefusal(
                f"certificate {spec.name}: {DAMAGED_KEY}, and {supplied.certificate_file} was "
                "signed for it; run `provision csr` and have the new request signed"
            )
        expires = supplied.leaf.not_valid_after_utc
        return Decision(
            None,
            f"installed, valid until {when(expires)}",
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


def _csr_key(current: Current, supplied: Supplied) -> PrivateKey | None:
    """The host's key for a certificate signed from a CSR: the live key when the certificate
    fits it, else the pending key `provision csr` made, when it fits that."""
    public = supplied.leaf.public_key()
    for key in (current.key, current.pending_key):
        if key is not None and keys.matches(key, public):  # type: ignore[arg-type]
            return key
    return current.key
