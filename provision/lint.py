"""Review checks: what a careful reviewer would flag in a playbook that is otherwise valid.

``lint(loaded)`` looks at the playbook as each host sees it (after ``api.load``, so everything
``validate`` refuses is refused first) and returns findings, each with a rule id and the
``file:line`` of the key to change. A finding that several hosts share is reported once, with
the hosts it concerns. Messages name values a person wrote, never a secret.

Rules (``RULES``):

literal-password   a password written as a plain string, not ``{env: VAR}`` / ``{file: PATH}``
rsa-key-size       an RSA key under 3072 bits (NIST: 2048-bit RSA is not enough after 2030)
weak-signature     a supplied certificate, or an intermediate of its chain, signed with SHA-1
                   (or MD5), which browsers refuse
long-validity      a TLS certificate valid for more than 398 days (the CA/Browser Forum limit
                   browsers enforce for publicly trusted certificates)
name-not-covered   a name a client may use for an https binding that its certificate does not
                   cover: the binding's ``host``; for a binding without ``host``, its own
                   ``address``, or the host's inventory address when it listens on every
                   address (provision/coverage.py: validate, plan and apply warn with it too)
key-in-web-root    a private key written below a virtual directory's ``physical_path``, where
                   the web server may hand it out (the model already refuses output files
                   outside the certificates directory: absolute, ``..``)
path-case          a virtual directory's path with capitals, on a server that matches paths in
                   the case written (nginx, Apache, HAProxy): /ccmadmin/ is a 404 where the
                   playbook says /CCMAdmin, unless the site sets case_insensitive_paths
authority-expiry   an internal authority that has expired, is not valid yet, or expires sooner
                   than the longest-lived leaf it issues would (its leaves are cut at its
                   expiry: they would need the authority renewed or rotated before their time)
missing-physical-path
                   a site whose server needs a folder for its root (IIS's root application)
                   that no virtual directory / gives: a proxied / or none at all leaves it
                   IIS's own default folder

Two certificates, or a certificate and a site, writing one file is not a finding: loading
refuses it, since such a playbook would never converge.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from provision.api import Loaded
from provision.coverage import uncovered
from provision.inputs.targets import Target
from provision.inputs.yaml_lines import PathKey
from provision.model.playbook import CaSource, Certificate, ProvidedSource, RsaKey
from provision.servers.registry import server
from provision.sources.supplied import Supplied
from provision.trust import health

MIN_RSA_BITS = 3072
MAX_BROWSER_DAYS = 398

RULES: dict[str, str] = {
    "literal-password": "a password written as a plain string instead of {env: VAR} or "
    "{file: PATH}",
    "rsa-key-size": f"an RSA key under {MIN_RSA_BITS} bits",
    "weak-signature": "a supplied certificate (or an intermediate) signed with SHA-1 or MD5",
    "long-validity": f"a TLS certificate valid for more than {MAX_BROWSER_DAYS} days",
    "name-not-covered": "a binding's host name or address, or the host's address, that the "
    "certificate does not cover",
    "key-in-web-root": "a private key written below a directory the web server serves",
    "path-case": "a virtual directory path with capitals on a server that matches paths in "
    "the case written",
    "authority-expiry": "an internal authority that is expired, not yet valid, or expires "
    "within the longest validity of the leaves it issues",
    "missing-physical-path": "a site root the server needs a folder for, which no virtual "
    "directory / gives",
}


@dataclass(frozen=True)
class Finding:
    rule: str
    file: str
    line: int | None
    key: str | None
    message: str
    hosts: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hosts"] = list(self.hosts)
        return data


# What one check says for one host: the rule, where (a path in the playbook), and what.
_Raw = tuple[str, PathKey, str]


def lint(
    loaded: Loaded, rules: Collection[str] | None = None, now: dt.datetime | None = None
) -> list[Finding]:
    """Every finding for the loaded hosts (of ``rules`` only, when given), merged across
    hosts, in file order."""
    doc = loaded.playbook
    moment = now or dt.datetime.now(dt.UTC)
    hosts_of: dict[_Raw, list[str]] = {}
    for target in loaded.targets:
        for raw in [*_check(loaded, target), *_authority_expiry(loaded, target, moment)]:
            if rules is None or raw[0] in rules:
                hosts_of.setdefault(raw, []).append(target.host.name)
    findings = []
    for (rule, path, message), hosts in hosts_of.items():
        where = doc.locate(path)
        findings.append(
            Finding(rule, where.file, where.line, where.key, message, tuple(dict.fromkeys(hosts)))
        )
    return sorted(findings, key=lambda f: (f.line or 0, f.key or "", f.rule, f.message))


def _check(loaded: Loaded, target: Target) -> Iterator[_Raw]:
    yield from _passwords(target)
    yield from _key_sizes(loaded, target)
    yield from _signatures(loaded, target)
    yield from _validity(loaded, target)
    yield from _names(loaded, target)
    yield from _keys_in_web_roots(target)
    yield from _path_cases(target)
    yield from _root_folders(target)


def _supplied(loaded: Loaded, target: Target, certificate: Certificate) -> Supplied | None:
    if not isinstance(certificate.source, ProvidedSource):
        return None
    return loaded.supplied.get((target.host.name, certificate.name))


# --- the rules ----------------------------------------------------------------------------

_USE_A_REFERENCE = "read it from the environment ({env: VAR}) or a file ({file: PATH})"


def _passwords(target: Target) -> Iterator[_Raw]:
    for i, certificate in enumerate(target.playbook.certificates):
        source = certificate.source
        if isinstance(source, ProvidedSource) and isinstance(source.password, SecretStr):
            yield (
                "literal-password",
                ("certificates", i, "source", "password"),
                f"certificate {certificate.name!r}: the password of its supplied files is "
                f"a plain string, readable by anyone who reads the playbook or inventory; "
                f"{_USE_A_REFERENCE}",
            )
        for j, output in enumerate(certificate.outputs):
            if isinstance(output.password, SecretStr):
                yield (
                    "literal-password",
                    ("certificates", i, "outputs", j, "password"),
                    f"certificate {certificate.name!r}: the password of {output.file} is a "
                    f"plain string, readable by anyone who reads the playbook or inventory; "
                    f"{_USE_A_REFERENCE}",
                )


def _key_sizes(loaded: Loaded, target: Target) -> Iterator[_Raw]:
    advice = f"use size: {MIN_RSA_BITS} (or 4096), or type: ecdsa"
    for i, authority in enumerate(target.playbook.authorities):
        if isinstance(authority.key, RsaKey) and authority.key.size < MIN_RSA_BITS:
            yield (
                "rsa-key-size",
                ("authorities", i, "key", "size"),
                f"authority {authority.name!r}: RSA key of {authority.key.size} bits, under "
                f"{MIN_RSA_BITS}; {advice}",
            )
    for i, certificate in enumerate(target.playbook.certificates):
        supplied = _supplied(loaded, target, certificate)
        if supplied is not None:
            public = supplied.leaf.public_key()
            if isinstance(public, rsa.RSAPublicKey) and public.key_size < MIN_RSA_BITS:
                yield (
                    "rsa-key-size",
                    ("certificates", i, "source", "certificate"),
                    f"certificate {certificate.name!r}: {supplied.certificate_file} has an "
                    f"RSA key of {public.key_size} bits, under {MIN_RSA_BITS}; ask for a "
                    f"new certificate with a larger key",
                )
        elif isinstance(certificate.key, RsaKey) and certificate.key.size < MIN_RSA_BITS:
            yield (
                "rsa-key-size",
                ("certificates", i, "key", "size"),
                f"certificate {certificate.name!r}: RSA key of {certificate.key.size} bits, "
                f"under {MIN_RSA_BITS}; {advice}",
            )


_WEAK_HASHES = {"sha1": "SHA-1", "md5": "MD5"}


def _weak_hash(certificate: Any) -> str | None:
    try:
        algorithm = certificate.signature_hash_algorithm
    except UnsupportedAlgorithm:  # one cryptography does not know: not ours to judge
        return None
    if isinstance(algorithm, hashes.HashAlgorithm):
        return _WEAK_HASHES.get(algorithm.name)
    return None


def _signatures(loaded: Loaded, target: Target) -> Iterator[_Raw]:
    for i, certificate in enumerate(target.playbook.certificates):
        supplied = _supplied(loaded, target, certificate)
        if supplied is None:
            continue
        assert isinstance(certificate.source, ProvidedSource)
        weak = _weak_hash(supplied.leaf)
        if weak:
            yield (
                "weak-signature",
                ("certificates", i, "source", "certificate"),
                f"certificate {certificate.name!r}: {supplied.certificate_file} is signed "
                f"with {weak}, which browsers refuse; ask the CA to reissue it with SHA-256",
            )
        where = "chain" if certificate.source.chain is not None else "certificate"
        for intermediate in supplied.chain:
            weak = _weak_hash(intermediate)
            if weak:
                subject = intermediate.subject.rfc4514_string() or "(empty subject)"
                yield (
                    "weak-signature",
                    ("certificates", i, "source", where),
                    f"certificate {certificate.name!r}: the intermediate {subject} is "
                    f"signed with {weak}, which browsers refuse; use the CA's SHA-256 chain",
                )


def _validity(loaded: Loaded, target: Target) -> Iterator[_Raw]:
    limit = f"more than the {MAX_BROWSER_DAYS} days browsers accept for TLS server certificates"
    for i, certificate in enumerate(target.playbook.certificates):
        supplied = _supplied(loaded, target, certificate)
        if supplied is not None:
            leaf = supplied.leaf
            span = leaf.not_valid_after_utc - leaf.not_valid_before_utc
            if span.total_seconds() > MAX_BROWSER_DAYS * 86400:
                yield (
                    "long-validity",
                    ("certificates", i, "source", "certificate"),
                    f"certificate {certificate.name!r}: {supplied.certificate_file} is valid "
                    f"for {span.days} days, {limit}",
                )
        elif not isinstance(certificate.source, ProvidedSource):
            days = certificate.validity_days
            if days is not None and days > MAX_BROWSER_DAYS:
                yield (
                    "long-validity",
                    ("certificates", i, "validity_days"),
                    f"certificate {certificate.name!r}: valid for {days} days, {limit}; "
                    f"use validity_days: {MAX_BROWSER_DAYS} or less",
                )


def _authority_expiry(loaded: Loaded, target: Target, now: dt.datetime) -> Iterator[_Raw]:
    for i, authority in enumerate(target.playbook.authorities):
        lives = [
            c.validity_days
            for c in target.playbook.certificates
            if isinstance(c.source, CaSource)
            and c.source.authority == authority.name
            and c.validity_days is not None
        ]
        longest = max(lives, default=0)
        store = loaded.authorities.get(authority.name)
        if store is None or store.material is None:
            # Created by the first apply, valid for its validity_days from then.
            if longest > authority.validity_days:
                yield (
                    "authority-expiry",
                    ("authorities", i, "validity_days"),
                    f"authority {authority.name!r}: valid for {authority.validity_days} days, "
                    f"shorter than the {longest} days of the leaves it issues",
                )
            continue
        certificate = store.material.leaf
        file = str(store.certificate_file)
        problem = health.unusable(authority.name, file, certificate, now)
        if problem:
            yield ("authority-expiry", ("authorities", i), problem)
            continue
        end = certificate.not_valid_after_utc
        if longest and end < now + dt.timedelta(days=longest):
            yield (
                "authority-expiry",
                ("authorities", i),
                f"authority {authority.name!r} ({file}) expires on {health.stamp(end)}, "
                f"within the {longest} days of the leaves it issues: leaves issued from "
                f"{health.stamp(end - dt.timedelta(days=longest))} on are cut at its expiry; "
                f"renew it or rotate (`provision ca rotate PLAYBOOK {authority.name}`)",
            )


def _names(loaded: Loaded, target: Target) -> Iterator[_Raw]:
    # The one rule for names (provision/coverage.py), which plan and apply warn with too.
    for item in uncovered(target, loaded.supplied):
        yield ("name-not-covered", item.where, item.message)


def _keys_in_web_roots(target: Target) -> Iterator[_Raw]:
    book = target.playbook
    served = [
        (site, directory, target.transport.resolve(directory.physical_path))
        for site in book.sites
        for directory in site.virtual_directories
        if directory.physical_path is not None
    ]
    for i, certificate in enumerate(book.certificates):
        for j, output in enumerate(certificate.outputs):
            if not output.holds_key:
                continue
            path = target.output_path(output)
            for site, directory, folder in served:
                if target.paths.is_inside(path, folder):
                    yield (
                        "key-in-web-root",
                        ("certificates", i, "outputs", j, "file"),
                        f"certificate {certificate.name!r}: {output.file} holds the private "
                        f"key and lies inside the physical path of {directory.path} of site "
                        f"{site.name!r}, so the web server may hand it out; move "
                        f"certificates_dir out of the web root",
                    )
                    break


def _path_cases(target: Target) -> Iterator[_Raw]:
    """One finding per site, at its first path with capitals: the fix is the site's."""
    for s, site in enumerate(target.playbook.sites):
        kind = server(site.server)
        if kind.paths_ignore_case or site.case_insensitive_paths:
            continue
        capitals = [
            (d, directory.path.rstrip("/"))
            for d, directory in enumerate(site.virtual_directories)
            if directory.path != directory.path.lower()
        ]
        if not capitals:
            continue
        paths = [path for _, path in capitals]
        shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        fix = (
            "set case_insensitive_paths: true on the site to serve every case, or write the "
            "paths in the case clients use"
            if kind.case_insensitive_option
            else "write the paths in the case clients use"
        )
        yield (
            "path-case",
            ("sites", s, "virtual_directories", capitals[0][0], "path"),
            f"site {site.name!r} ({site.server}) serves {shown} with capitals; "
            f"{site.server} matches paths in the case written, so a request for "
            f"{paths[0].lower()}/ is a 404 (IIS would serve it); {fix}",
        )


def _root_folders(target: Target) -> Iterator[_Raw]:
    for s, site in enumerate(target.playbook.sites):
        fallback = server(site.server).default_root
        if fallback is None:
            continue
        roots = [
            (d, directory)
            for d, directory in enumerate(site.virtual_directories)
            if directory.path.rstrip("/") == ""
        ]
        if roots and roots[0][1].physical_path is not None:
            continue
        if roots:
            yield (
                "missing-physical-path",
                ("sites", s, "virtual_directories", roots[0][0], "proxy_to"),
                f"site {site.name!r} ({site.server}): its directory / is proxied, with no "
                f"physical_path, but {site.server} needs a folder for the site's root "
                f"application, so it gets {fallback}, its default content, which must exist "
                f"on the host",
            )
            continue
        where = ("sites", s, "virtual_directories") if site.virtual_directories else ("sites", s)
        yield (
            "missing-physical-path",
            where,
            f"site {site.name!r} ({site.server}) has no virtual directory / with a "
            f"physical_path, but {site.server} needs a folder for the site's root application, "
            f"so it gets {fallback}, its default content, which then answers every path no "
            f"virtual directory claims; add {{path: /, physical_path: ...}}",
        )


# --- presentation -------------------------------------------------------------------------


def format_text(findings: list[Finding], total_hosts: int, label: str = "") -> str:
    """One line per finding; ``label`` (``warning: ``) goes before the rule."""
    lines = []
    for finding in findings:
        where = finding.file if finding.line is None else f"{finding.file}:{finding.line}"
        key = f" {finding.key}:" if finding.key else ""
        lines.append(
            f"{where}: {label}[{finding.rule}]{key} {finding.message} "
            f"({_hosts_text(finding.hosts, total_hosts)})"
        )
    return "".join(line + "\n" for line in lines)


def _hosts_text(hosts: tuple[str, ...], total: int) -> str:
    if len(hosts) == total and total > 1:
        return f"all {total} hosts"
    shown = ", ".join(hosts[:5])
    more = f" and {len(hosts) - 5} more" if len(hosts) > 5 else ""
    return f"host{'s' if len(hosts) != 1 else ''} {shown}{more}"
