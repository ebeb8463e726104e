"""``source: {type: acme, directory: URL, ...}``: ordered from an ACME (RFC 8555) CA at apply.

Planning decides from the host's files alone, by the rules shared with the sources that issue
here (``issued.decide_issued``) minus the issuer and subject, which the CA chooses: no network
in a plan. Apply orders in a thread (``acmeclient.order``), on the controller.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from dataclasses import replace
from pathlib import Path

from cryptography import x509

from provision.acmeclient import renewal
from provision.acmeclient.account import KEY_FILE, account_folder, account_thumbprint
from provision.errors import ProvisionError
from provision.model.playbook import AcmeSource, Certificate, SecretRef
from provision.plan.material import Material
from provision.sources.base import (
    CertificateSource,
    Controller,
    Current,
    Decision,
    Expected,
    IssueRequest,
    when,
)
from provision.sources.issued import decide_issued


def _source(spec: Certificate) -> AcmeSource:
    assert isinstance(spec.source, AcmeSource)  # the registry dispatches on the model's tag
    return spec.source


class Acme(CertificateSource):
    type = "acme"

    def decide(
        self, spec: Certificate, current: Current, now: dt.datetime, expected: Expected
    ) -> Decision:
        decision = decide_issued(spec, current, now, any_issuer=True)
        if decision.action is not None or expected.renew_at is None or current.leaf is None:
            return decision
        serial, moment = expected.renew_at
        if current.leaf.serial_number != serial:
            return decision  # the CA's word on another certificate
        if now >= moment:
            return Decision(
                "update",
                f"the CA's renewal information (ARI) suggests renewing from {when(moment)}",
                new_key=spec.key.rotate == "always",
            )
        return replace(decision, until=min(moment, decision.until or moment))

    def expected(self, spec: Certificate, host: str, controller: Controller) -> Expected:
        source = _source(spec)
        label = f"{host}/{spec.name}"
        controller.reads.read(renewal.record_path(source, controller.folder, label))
        renew_at = renewal.recorded(source, controller.folder, label)
        if source.challenge != "http-01":
            return Expected(renew_at=renew_at)
        # HAProxy sites answer with it (no folder to serve files from): made on the first
        # plan when missing, and an input of the plan like any controller file.
        path = account_folder(source, controller.folder) / KEY_FILE
        controller.reads.read(path)
        thumbprint = account_thumbprint(source, controller.folder)
        return Expected(http01_thumbprint=thumbprint, renew_at=renew_at)

    def http01_port(self, spec: Certificate) -> int | None:
        source = _source(spec)
        return source.http_port if source.challenge == "http-01" else None

    def material(self, spec: Certificate, current: Current, expected: Expected) -> Material:
        assert current.leaf is not None and current.key is not None
        # The chain is the one the CA sent, as the host's outputs hold it.
        return Material(current.key, current.leaf, current.chain)

    async def issue(self, request: IssueRequest) -> Material:
        # The ordering side (acme, josepy, requests: about 0.15 s to import) is loaded by the
        # runs that order or revoke, not by every run that loads the sources.
        from provision.acmeclient.order import OrderInput, order_certificate

        source = _source(request.spec)
        key = await request.key()
        order = OrderInput(
            source,
            tuple(request.spec.names),
            key,
            request.folder,
            _hmac(source.eab.hmac_key, request.folder) if source.eab is not None else None,
            request.challenges,
            f"{request.host}/{request.spec.name}",
        )
        issued = await asyncio.to_thread(order_certificate, order)
        return Material(key, issued[0], tuple(issued[1:]))

    async def revoke(
        self, spec: Certificate, leaf: x509.Certificate, reason: int, folder: Path
    ) -> str:
        from provision.acmeclient.order import revoke_certificate

        await asyncio.to_thread(revoke_certificate, _source(spec), folder, leaf, reason)
        return f"revoked at {_source(spec).directory} (serial {leaf.serial_number:x})"


def _hmac(ref: SecretRef, folder: Path) -> str:
    """The EAB HMAC key, read where the playbook says (never the playbook itself)."""
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if not value:
            raise ProvisionError(f"the EAB hmac_key variable {ref.env} is not set")
        return value.strip()
    assert ref.file is not None
    path = Path(ref.file) if Path(ref.file).is_absolute() else folder / ref.file
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise ProvisionError(f"the EAB hmac_key file {path} cannot be read: {why}") from None
