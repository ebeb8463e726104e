"""The certificate sources by the playbook's ``source.type``: the one place that dispatches."""

from __future__ import annotations

from provision.model.playbook import Certificate
from provision.sources.acme import Acme
from provision.sources.base import CertificateSource
from provision.sources.internal_ca import InternalCa
from provision.sources.provided import Provided
from provision.sources.self_signed import SelfSigned

SOURCES: dict[str, CertificateSource] = {
    source.type: source for source in (SelfSigned(), InternalCa(), Provided(), Acme())
}


def source_of(spec: Certificate) -> CertificateSource:
    return SOURCES[spec.source.type]
