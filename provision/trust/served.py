"""Which bindings of the fleet still serve a leaf of a given CA, asked over TLS as `verify`
asks (the same names, addresses and ports: ``verify.probes``).

Used before a rotation retires its old root: what a host serves is the truth clients see,
whatever its files say (a server not reloaded serves the old leaf from memory).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from cryptography import x509

from provision.crypto import compare
from provision.errors import ProvisionError
from provision.inputs.targets import Target
from provision.model.playbook import Site
from provision.probe import fetch_chain
from provision.verify import Probe, probes


def _check(
    target: Target, site: Site, probe: Probe, old_root: x509.Certificate
) -> tuple[str, str] | None:
    """(what is wrong at the binding, the name asked with), or None when it serves no leaf
    of the old CA."""
    where = f"host {target.host.name}, site {site.name!r}, binding {probe.address}:{probe.port}"
    if probe.problem is not None:
        return f"{where} cannot be checked: {probe.problem}", probe.name
    try:
        served = fetch_chain(probe.name, probe.port, connect=probe.address)
    except ProvisionError as exc:
        return f"{where} cannot be checked: {exc.message}", probe.name
    leaf = served[0]
    if compare.issued_by(leaf, old_root):
        return f"{where} serves serial {leaf.serial_number:X}, a leaf of the old CA", probe.name
    return None


def old_leaves(
    targets: Sequence[Target], old_root: x509.Certificate, workers: int = 16
) -> list[str]:
    """One line per binding that serves a leaf ``old_root`` signed, or that could not be
    checked (which must not pass for "none served"), with the names asked, sorted."""
    asks = [
        (target, site, probe)
        for target in targets
        for site in target.playbook.sites
        for probe in probes(target, site)
    ]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = [f for f in pool.map(lambda a: _check(a[0], a[1], a[2], old_root), asks) if f]
    names: dict[str, list[str]] = {}
    for line, name in found:
        names.setdefault(line, []).append(name)
    return [f"{line} (asked as {', '.join(sorted(names[line]))})" for line in sorted(names)]
