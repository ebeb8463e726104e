"""Prove over the network that every name is served the certificate just written.

For each name: a TLS connection to the host (SNI set to the name; none for an IP address),
the served leaf compared with the one on disk, the served chain verified for a TLS server
against the root written beside it (the one chain verifier, ``crypto.chains``), and the name
checked against the leaf as a browser would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

from cryptography import x509

from provision.crypto import chains
from provision.crypto.details import check_names
from provision.errors import ProvisionError
from provision.inputs.targets import Target
from provision.model.playbook import Site
from provision.plan.material import Material
from provision.probe import fetch_chain
from provision.report.outcome import NameCheck


def _binding_certificate(site: Site, port: int, name: str) -> str | None:
    candidates = [b for b in site.bindings if b.protocol == "https" and b.port == port]
    for binding in candidates:
        if binding.host == name:
            return binding.certificate
    default = [b for b in candidates if b.host is None]
    chosen = default or candidates
    return chosen[0].certificate if chosen else None


# A reload is asynchronous (nginx and Apache let old workers finish their connections), so a
# name may be served the old certificate for a moment; it is asked again until this passes.
SETTLE_SECONDS = 10.0
_RETRY_PAUSE = 0.2


def _fetch_expected(
    name: str, address: str, port: int, expected: Material
) -> list[x509.Certificate] | str:
    """The served chain once it leads with the expected leaf, or why it never did."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        try:
            served = fetch_chain(name, port, connect=address)
            if served[0] == expected.leaf:
                return served
            leaf = served[0]
            problem = (
                f"serves {leaf.subject.rfc4514_string()} (serial "
                f"{leaf.serial_number:x}), not the certificate written (serial "
                f"{expected.leaf.serial_number:x}); was the server reloaded?"
            )
        except ProvisionError as exc:
            problem = exc.message
        if time.monotonic() >= deadline:
            return problem
        time.sleep(_RETRY_PAUSE)


def _check_one(
    site: Site, name: str, address: str, port: int, expected: Material, now: dt.datetime
) -> NameCheck:
    def result(problem: str | None) -> NameCheck:
        return NameCheck(site.name, name, address, port, problem)

    served = _fetch_expected(name, address, port, expected)
    if isinstance(served, str):
        return result(served)
    leaf = served[0]
    problems = check_names(leaf, [name])
    if problems:
        return result(problems[0])
    try:
        chains.verify(leaf, served[1:], [expected.root_certificate], now, purpose="server")
    except chains.ChainError as exc:
        return result(exc.message)
    return result(None)


async def verify_site(
    target: Target, site: Site, materials: dict[str, Material], now: dt.datetime
) -> list[NameCheck]:
    assert site.verify is not None
    https_ports = [b.port for b in site.bindings if b.protocol == "https"]
    port = site.verify.port or (https_ports[0] if https_ports else 443)
    address = site.verify.address or target.host.address
    loop = asyncio.get_running_loop()
    names = site.verify.names
    if names is None:
        bound = {b.certificate for b in site.bindings if b.certificate and b.port == port}
        names = list(
            dict.fromkeys(
                n for c in target.playbook.certificates if c.name in bound for n in c.names
            )
        )
    if not names:
        # A mistyped port must not turn verification into a silent success.
        return [
            NameCheck(
                site.name,
                "-",
                address,
                port,
                f"no https binding on port {port}, so no name to verify",
            )
        ]

    async def check(name: str) -> NameCheck:
        certificate = _binding_certificate(site, port, name)
        material = materials.get(certificate or "")
        if material is None:
            return NameCheck(
                site.name, name, address, port, f"no certificate on the host for port {port}"
            )
        return await loop.run_in_executor(
            None, _check_one, site, name, address, port, material, now
        )

    # Concurrently: each name that is not served right waits up to SETTLE_SECONDS.
    return list(await asyncio.gather(*(check(name) for name in names)))
