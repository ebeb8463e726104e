"""``source: self-signed``: the certificate is its own root, made on the controller at apply."""

from __future__ import annotations

import datetime as dt

from provision.model.playbook import Certificate
from provision.plan.material import Material
from provision.sources.base import CertificateSource, Current, Decision, Expected, IssueRequest
from provision.sources.issued import decide_issued, issue_leaf


class SelfSigned(CertificateSource):
    type = "self-signed"
    leaf_is_root = True

    def decide(
        self, spec: Certificate, current: Current, now: dt.datetime, expected: Expected
    ) -> Decision:
        return decide_issued(spec, current, now, issuer=None)

    async def issue(self, request: IssueRequest) -> Material:
        return issue_leaf(request.spec, await request.key(), request.now)
