"""The names a client may use to reach each https binding, and which of them the binding's
certificate does not cover.

One rule, asked by everything that judges names: `provision lint` (``name-not-covered``),
`validate`, `plan` and `apply` (as warnings), and `verify` (the names it connects with). A
client reaches an https binding

- with a ``host``: by that name (SNI);
- without one (the catch-all of its address and port): by the binding's own address, when it
  names one; by the host's inventory address, when the binding listens on every address; and
  by any name of its certificate (the playbook's ``names``; for `verify`, also the SANs of
  the certificate on the host) that no binding with a host on that port claims.

A certificate issued here (or still to be requested by CSR) covers the playbook's ``names``;
a supplied one is judged by its own SANs (load time checks the ``names`` against them).
Browser rules throughout (``crypto.details``): an IP address matches IP SANs only, a wildcard
one leftmost label.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from provision.crypto.details import check_names, covers
from provision.inputs.targets import Target
from provision.inputs.yaml_lines import Document, PathKey
from provision.model.playbook import Binding, Certificate, Playbook
from provision.sources.supplied import Supplied

# Where a name comes from: a binding's host or address, the inventory, or the certificate.
Origin = Literal["host", "address", "inventory", "certificate"]


@dataclass(frozen=True)
class ClientName:
    """One name a client may use for one https binding."""

    name: str  # a DNS name or an IP address, as a client types it
    origin: Origin
    site: str
    site_index: int
    binding_index: int
    port: int
    listen: str | None  # the binding's own address; None: every address of the host
    certificate: str


@dataclass(frozen=True)
class Uncovered:
    """A name a client may use that the binding's certificate does not cover."""

    where: PathKey  # the playbook's key to change
    message: str


def listens_everywhere(binding: Binding) -> bool:
    """``*``, or an unspecified address (0.0.0.0, ::): no address a client could type."""
    return binding.address == "*" or ipaddress.ip_address(binding.address).is_unspecified


def client_names(
    playbook: Playbook,
    host_address: str,
    served: Mapping[str, Sequence[str]] | None = None,
) -> list[ClientName]:
    """Every name a client may use, binding by binding in playbook order, each binding's
    names once (see the module docstring). ``served``: the names each certificate on the host
    has beyond the playbook's (a supplied certificate's SANs), for `verify`."""
    names: list[ClientName] = []
    by_name = {c.name: _names_of(c, (served or {}).get(c.name, ())) for c in playbook.certificates}
    for s, site in enumerate(playbook.sites):
        https = [(b, binding) for b, binding in enumerate(site.bindings) if _https(binding)]
        for b, binding in https:
            certificate = binding.certificate
            assert certificate is not None  # an https binding has one (the model)
            listen = None if listens_everywhere(binding) else binding.address
            found: dict[str, Origin] = {}
            if binding.host is not None:
                found[binding.host] = "host"
            else:
                claimed = _claimed(binding, [other for _, other in https])
                for text in by_name[certificate]:
                    # No client types a wildcard; a name a binding with a host claims is its.
                    if not text.startswith("*.") and text.lower() not in claimed:
                        found.setdefault(text, "certificate")
                # (Already among the certificate's names: covered, whatever its origin.)
                if listen is not None:
                    found.setdefault(listen, "address")
                else:
                    found.setdefault(host_address, "inventory")
            names.extend(
                ClientName(text, origin, site.name, s, b, binding.port, listen, certificate)
                for text, origin in found.items()
            )
    return names


def _names_of(certificate: Certificate, served: Sequence[str]) -> list[str]:
    """The playbook's names, then any other the certificate on the host has (DNS names
    compare without case)."""
    listed = {name.lower() for name in certificate.names}
    return [*certificate.names, *(name for name in served if name.lower() not in listed)]


def _claimed(catch_all: Binding, others: list[Binding]) -> set[str]:
    """The host names bindings with a host answer on the catch-all's address and port."""
    return {
        other.host.lower()
        for other in others
        if other.host is not None
        and other.port == catch_all.port
        and (listens_everywhere(other) or other.address == catch_all.address)
    }


def _https(binding: Binding) -> bool:
    return binding.protocol == "https" and binding.certificate is not None


def uncovered(
    target: Target, supplied: Mapping[tuple[str, str], Supplied | None]
) -> list[Uncovered]:
    """The names a client may use on this host that their certificate does not cover, each
    with the playbook's key to change (the host's address once per certificate)."""
    return list(_uncovered(target, supplied))


def _uncovered(
    target: Target, supplied: Mapping[tuple[str, str], Supplied | None]
) -> Iterator[Uncovered]:
    book = target.playbook
    index = {c.name: i for i, c in enumerate(book.certificates)}
    coverage: dict[str, Callable[[str], bool]] = {}
    reported: set[tuple[str, str]] = set()
    for item in client_names(book, target.host.address):
        if item.origin == "certificate":
            continue  # its own names: covered by what the certificate is
        c = index[item.certificate]
        certificate = book.certificates[c]
        file = supplied.get((target.host.name, certificate.name))
        if certificate.name not in coverage:
            coverage[certificate.name] = _coverage(certificate, file)
        if coverage[certificate.name](item.name):
            continue
        advice = _advice(file)
        if item.origin == "host":
            yield Uncovered(
                ("sites", item.site_index, "bindings", item.binding_index, "host"),
                f"site {item.site!r} serves {item.name} on port {item.port} with certificate "
                f"{certificate.name!r}, which does not cover that name; {advice}",
            )
        elif item.origin == "address":
            yield Uncovered(
                ("sites", item.site_index, "bindings", item.binding_index, "address"),
                f"site {item.site!r} listens on {item.name} port {item.port} without a host "
                f"name, so clients reach it by that address, and certificate "
                f"{certificate.name!r} does not cover {item.name}; {advice}",
            )
        elif (certificate.name, item.name) not in reported:
            reported.add((certificate.name, item.name))
            yield Uncovered(
                ("certificates", c, "names"),
                f"certificate {certificate.name!r} does not cover {item.name}, the host's "
                f"address, yet site {item.site!r} serves it on port {item.port} without a "
                f"host name; {advice}",
            )


def _coverage(certificate: Certificate, supplied: Supplied | None) -> Callable[[str], bool]:
    if supplied is not None:  # (only a `provided` certificate has a supplied file)
        leaf = supplied.leaf
        return lambda name: not check_names(leaf, [name])
    names = certificate.names
    return lambda name: covers(names, name)


def _advice(supplied: Supplied | None) -> str:
    if supplied is not None:
        return "add it to the names and have the CA issue a certificate that covers it"
    # (A certificate still to be requested gets its names into the CSR.)
    return "add it to the certificate's names"


def plan_warnings(
    doc: Document, target: Target, supplied: Mapping[tuple[str, str], Supplied | None]
) -> tuple[str, ...]:
    """The uncovered names as plan and apply print them: ``file:line: key: message``."""
    return tuple(
        f"{doc.locate(item.where)}: {item.message}" for item in uncovered(target, supplied)
    )
