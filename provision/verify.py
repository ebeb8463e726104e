"""Prove over the network that every name is served the certificate on the host.

What to connect with is the one rule for names (``coverage.client_names``): by default every
name a client may use for each https binding of a site (`provision verify` checks every site;
apply checks the sites with ``verify:``, which may narrow the names and port and say where to
connect). For each name: a TLS connection to the binding's own address, else the host's (SNI
set to the name; none for an IP address), the served leaf compared with the one on disk, its
issuer compared with the one the playbook expects, the served chain verified for a TLS server
against the root written beside it (the one chain verifier, ``crypto.chains``), and the name
checked against the leaf as a browser would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509

from provision.coverage import client_names, listens_everywhere
from provision.crypto import chains, compare
from provision.crypto.details import check_names
from provision.errors import ProvisionError
from provision.inputs.targets import Target
from provision.model.playbook import Binding, Site, Verify
from provision.plan.material import Material
from provision.probe import fetch_chain
from provision.report.outcome import NameCheck

# A reload is asynchronous (nginx and Apache let old workers finish their connections), so a
# name may be served the old certificate for a moment; it is asked again until this passes.
SETTLE_SECONDS = 10.0
_RETRY_PAUSE = 0.2


@dataclass(frozen=True)
class Probe:
    """One name to connect with: where, and which certificate should answer."""

    name: str
    address: str  # where to connect
    port: int
    certificate: str | None  # None: no https binding of the site answers there
    problem: str | None = None  # known without connecting


def probes(
    target: Target, site: Site, served: Mapping[str, Sequence[str]] | None = None
) -> list[Probe]:
    """What to connect with for one site, each (name, address, port) once. ``served``: the
    names of each certificate on the host (its SANs), which are names clients may use too."""
    given = site.verify or Verify()
    if given.names is not None:
        # Names asked for, on one port: the port asked for, else the first https binding's.
        https_ports = [b.port for b in site.bindings if b.protocol == "https"]
        port = given.port or (https_ports[0] if https_ports else 443)
        chosen = []
        for name in given.names:
            binding = _binding_for(site, port, name)
            listen = binding.address if binding and not listens_everywhere(binding) else None
            certificate = binding.certificate if binding else None
            chosen.append(_probe(target, given, name, listen, port, certificate))
        return list(dict.fromkeys(chosen))
    index = target.playbook.sites.index(site)
    return list(
        dict.fromkeys(
            _probe(target, given, item.name, item.listen, item.port, item.certificate)
            for item in client_names(target.playbook, target.host.address, served)
            if item.site_index == index and given.port in (None, item.port)
        )
    )


def _binding_for(site: Site, port: int, name: str) -> Binding | None:
    """The https binding that answers ``name`` on ``port``: the one with that host, else the
    catch-all (no host), else the first (the server's default)."""
    candidates = [b for b in site.bindings if b.protocol == "https" and b.port == port]
    for binding in candidates:
        if binding.host is not None and binding.host.lower() == name.lower():
            return binding
    default = [b for b in candidates if b.host is None]
    chosen = default or candidates
    return chosen[0] if chosen else None


def _probe(
    target: Target,
    given: Verify,
    name: str,
    listen: str | None,
    port: int,
    certificate: str | None,
) -> Probe:
    if given.address is not None:
        return Probe(name, given.address, port, certificate)
    if listen is None:
        return Probe(name, target.host.address, port, certificate)
    if ipaddress.ip_address(listen).is_loopback and target.host.connection != "local":
        # This machine's loopback is not the host's: connecting there would ask another server.
        return Probe(
            name,
            listen,
            port,
            certificate,
            f"the binding listens on {listen}, the loopback of {target.host.name}, which "
            "cannot be reached from this machine; set verify.address to an address that "
            "forwards to it (an SSH tunnel, say), or leave the site out of verify",
        )
    return Probe(name, listen, port, certificate)


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


def _check_one(site: Site, probe: Probe, expected: Material, now: dt.datetime) -> NameCheck:
    def result(problem: str | None) -> NameCheck:
        return NameCheck(site.name, probe.name, probe.address, probe.port, problem)

    served = _fetch_expected(probe.name, probe.address, probe.port, expected)
    if isinstance(served, str):
        return result(served)
    leaf = served[0]
    problems = check_names(leaf, [probe.name])
    if problems:
        return result(problems[0])
    # The issuer first: a leaf another CA signed is not "missing an intermediate".
    issuer = expected.chain[0] if expected.chain else expected.root_certificate
    other = chains.other_issuer(leaf, issuer)
    if other is not None:
        return result(f"{other}; `provision apply` replaces it with one the playbook's issues")
    try:
        chains.verify(leaf, served[1:], [expected.root_certificate], now, purpose="server")
    except chains.ChainError as exc:
        return result(exc.message)
    return result(None)


async def verify_site(
    target: Target, site: Site, materials: dict[str, Material], now: dt.datetime
) -> list[NameCheck]:
    sans = {name: compare.san_names(material.leaf) for name, material in materials.items()}
    chosen = probes(target, site, sans)
    if not chosen and site.verify is not None:
        # Asked for, yet nothing to check: a mistyped port must not pass in silence.
        port = site.verify.port
        where = f" on port {port}" if port is not None else ""
        return [
            NameCheck(
                site.name,
                "-",
                site.verify.address or target.host.address,
                port or 0,
                f"no https binding{where}, so no name to verify",
            )
        ]
    loop = asyncio.get_running_loop()

    async def check(probe: Probe) -> NameCheck:
        if probe.problem is not None:
            return NameCheck(site.name, probe.name, probe.address, probe.port, probe.problem)
        material = materials.get(probe.certificate or "")
        if material is None:
            return NameCheck(
                site.name,
                probe.name,
                probe.address,
                probe.port,
                f"no certificate on the host for port {probe.port}",
            )
        return await loop.run_in_executor(None, _check_one, site, probe, material, now)

    # Concurrently: each name that is not served right waits up to SETTLE_SECONDS.
    return list(await asyncio.gather(*(check(probe) for probe in chosen)))
