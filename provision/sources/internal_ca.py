"""``source: {type: ca, authority: NAME}``: leaves signed by an internal CA kept on the controller
(``sources/authority_store.py``)."""

from __future__ import annotations

import datetime as dt
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
    IssueRequest,
)
from provision.sources.issued import decide_issued, issue_leaf


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
        return Expected(authority=store.material, authority_subject=store.subject_text)

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
        return decide_issued(spec, current, now, issuer=expected.authority.leaf)

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
        # The seam for the internal CA's revocation list (the trust/CRL work): record the
        # serial in the authority's folder and publish its CRL. Until then, say so plainly.
        raise ProvisionError(
            f"authority {_authority(spec)} keeps no revocation list yet; nothing was revoked "
            f"(serial {leaf.serial_number:x}); remove the certificate by reissuing it"
        )

    async def issue(self, request: IssueRequest) -> Material:
        name = _authority(request.spec)
        store = request.authorities[name]
        if store.material is None:
            raise ProvisionError(f"authority {name} was not created")
        key = await request.key()
        return issue_leaf(request.spec, key, request.now, store.material, store.take_serial())
