"""HTTP-01 through the site itself: which sites serve ACME challenges, on which bindings.

A site serves ``/.well-known/acme-challenge/`` from the host's challenge folder (the
certificates directory's ``.acme-challenge``, provision/layout.py) on its http bindings
when it binds a certificate whose source proves names by HTTP-01. A site with no http
binding on the port the CA fetches from gets one: it answers the challenge, and redirects
everything else to https. Templates see the result as ordinary bindings, each marked
``acme_challenge``.
"""

from __future__ import annotations

from provision import layout
from provision.inputs.targets import Target
from provision.model.playbook import Binding, Site
from provision.sources.registry import source_of


def challenge_folder(target: Target) -> str:
    """The host's challenge folder (absolute, in the host's path flavour)."""
    return target.paths.join(target.certificates_dir, layout.ACME_CHALLENGE_DIR)


def challenge_ports(target: Target, site: Site) -> dict[int, list[str]]:
    """Port -> the certificates (bound by ``site``) the CA proves over HTTP-01 there."""
    ports: dict[int, list[str]] = {}
    for binding in site.bindings:
        if binding.certificate is None:
            continue
        spec = target.playbook.certificate(binding.certificate)
        port = source_of(spec).http01_port(spec)
        if port is not None and spec.name not in ports.get(port, []):
            ports.setdefault(port, []).append(spec.name)
    return ports


def added_bindings(target: Target, site: Site) -> list[Binding]:
    """The http bindings a site gets for HTTP-01: one per challenge port it does not serve
    http on, on the address of the first https binding that needs it."""
    served = {b.port for b in site.bindings if b.protocol == "http"}
    added = []
    for port, names in sorted(challenge_ports(target, site).items()):
        if port in served:
            continue
        first = next(b for b in site.bindings if b.certificate in names)
        added.append(
            Binding(protocol="http", address=first.address, port=port, redirect_to_https=True)
        )
    return added


def serving_site(target: Target, site: Site) -> Site:
    """``site`` with the http bindings HTTP-01 adds (itself when it needs none)."""
    extra = added_bindings(target, site)
    return site.model_copy(update={"bindings": [*site.bindings, *extra]}) if extra else site


def why_added(target: Target, site: Site) -> str | None:
    """What the plan says about bindings HTTP-01 added, or None."""
    ports = challenge_ports(target, site)
    added = added_bindings(target, site)
    if not added:
        return None
    said = ", ".join(
        f"http on port {b.port} for the http-01 challenge of {', '.join(ports[b.port])}"
        for b in added
    )
    return f"serves {said} (the site has no http binding there)"


def challenge_endpoints(target: Target, site: Site) -> list[tuple[str, int, str, str]]:
    """(address, port, host name, certificate) where ``site`` serves each HTTP-01
    certificate's challenge, as the controller may reach it: an all-addresses binding by the
    host's inventory address, a host name from the binding or the certificate's first name."""
    ports = challenge_ports(target, site)
    endpoints = []
    for binding in serving_site(target, site).bindings:
        if binding.protocol != "http" or binding.port not in ports:
            continue
        address = (
            target.host.address if binding.address in ("*", "", "0.0.0.0") else binding.address
        )
        for name in ports[binding.port]:
            spec = target.playbook.certificate(name)
            host = binding.host or spec.names[0]
            endpoints.append((address, binding.port, host, name))
    return endpoints
