"""``source: {type: ca, authority: NAME}``: leaves signed by an internal CA kept on the controller
(``sources/authority_store.py``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

from cryptography import x509

from provision.crypto import compare
from provision.errors import ProvisionError
from provision.model.playbook import CaSource, Certificate, Playbook
from provision.plan.material import Above, Material, issued_material, issuer_above
from provision.sources.base import (
    CertificateSource,
    Controller,
    Current,
    Decision,
    Expected,
    HostRefusal,
    IssueRequest,
)
from provision.sources.issued import decide_issued, issue_leaf
from provision.trust import health


def _authority(spec: Certificate) -> str:
    assert isinstance(spec.source, CaSource)  # the registry dispatches on the model's tag
    return spec.source.authority


class InternalCa(CertificateSource):
    type = "ca"

    def check(
        self, spec: Certificate, playbook: Playbook
    ) -> tuple[tuple[str | int, ...], str] | None:
        authorities = [a.name for a in playbook.authorities]
        if _authority(spec) in authorities:
            return None
        known = ", ".join(authorities) or "none"
        return (
            ("source", "authority"),
            f"{_authority(spec)!r} is not an authority of this playbook (defined: {known})",
        )

    def expected(self, spec: Certificate, host: str, controller: Controller) -> Expected:
        store = controller.authorities[_authority(spec)]
        previous = store.previous.material if store.previous is not None else None
        return Expected(
            authority=store.material,
            authority_subject=store.subject_text,
            authority_file=str(store.certificate_file),
            previous_authority=previous.leaf if previous is not None else None,
            rotating=(
                f"authority {_authority(spec)} rotating, phase {store.phase}"
                if previous is not None
                else None
            ),
        )

    def decide(
        self, spec: Certificate, current: Current, now: dt.datetime, expected: Expected
    ) -> Decision:
        if expected.authority is None:
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
        issuer = expected.authority.leaf
        problem = health.unusable(_authority(spec), expected.authority_file or "", issuer, now)
        if problem:
            # Every leaf it signed is refused by clients too: the host fails, whether or not
            # this certificate would be reissued.
            raise HostRefusal(f"certificate {spec.name}: {problem}")
        decision = decide_issued(spec, current, now, issuer=issuer)
        old = expected.previous_authority
        if (
            old is not None
            and current.leaf is not None
            and decision.reason.startswith("issuer changed")
            and compare.issued_by(current.leaf, old)
        ):
            decision = replace(
                decision,
                reason=f"{expected.rotating}: issued by the old CA, reissued by the new one",
            )
        assert spec.validity_days is not None  # the model requires it for this source
        cap = health.capped(now, spec.validity_days, issuer) if decision.action else None
        if cap:
            return replace(decision, reason=f"{decision.reason}; {cap}")
        return decision

    def above(self, spec: Certificate, expected: Expected) -> Above | None:
        # (While the authority is still to be created, its certificate is not known yet.)
        return issuer_above(expected.authority) if expected.authority is not None else None

    def material(self, spec: Certificate, current: Current, expected: Expected) -> Material:
        assert current.leaf is not None and current.key is not None
        if expected.authority is None:
            return Material(current.key, current.leaf)
        return issued_material(current.key, current.leaf, expected.authority)

    async def revoke(
        self, spec: Certificate, leaf: x509.Certificate, reason: int, folder: Path
    ) -> str:
        # An internal CA's revocations are the controller's business, not a host's: its CRL
        # is kept beside the authority (provision/trust/revocation.py).
        raise ProvisionError(
            f"certificate {spec.name} is issued by the internal authority {_authority(spec)}: "
            f"nothing was revoked here; revoke it with `provision ca revoke PLAYBOOK "
            f"{_authority(spec)} --serial {leaf.serial_number:x}`, which puts it on the "
            "authority's CRL"
        )

    async def issue(self, request: IssueRequest) -> Material:
        name = _authority(request.spec)
        store = request.authorities[name]
        if store.material is None:
            raise ProvisionError(f"authority {name} was not created")
        problem = health.unusable(
            name, str(store.certificate_file), store.material.leaf, request.now
        )
        if problem:
            raise HostRefusal(f"certificate {request.spec.name}: {problem}")
        old = request.current.leaf
        # The leaf it replaces goes on its CA's CRL (superseded) once the host has finished:
        # the authority's, or the old CA's while it rotates.
        for signer in (store, store.previous):
            if signer is None or signer.material is None or old is None:
                continue
            if compare.issued_by(old, signer.material.leaf):
                signer.superseded.append((request.host, old.serial_number))
        key = await request.key()
        return issue_leaf(
            request.spec,
            key,
            request.now,
            store.material,
            store.take_serial(),
            crl_urls=store.crl_urls,
        )
