"""Targets: each selected host with its transport and its playbook evaluated for it.

This is where the inventory meets the playbook. Jinja2 strings are evaluated per host and the
result validated by the model; every failure names the playbook's file, line and key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from provision.errors import InputError
from provision.inputs.expressions import HostVariables, HostView, TemplateFailure
from provision.inputs.validation import raise_for
from provision.inputs.yaml_lines import Document
from provision.layout import (
    BACKUP_DIR,
    JOURNAL_FILE,
    LOCK_FILE,
    RELOAD_MARKER,
    STATE_FILE,
    TAKEOVER_SUFFIX,
    TRUST_RECORD,
    pending_key,
)
from provision.model.inventory import Host
from provision.model.playbook import Authority, Certificate, Output, Playbook, Site
from provision.sandbox import time_budget
from provision.sources.provided import wants_csr
from provision.sources.registry import source_of
from provision.transport.base import WINDOWS, PathFlavour, Transport


@dataclass(frozen=True)
class Target:
    host: Host
    view: HostView
    playbook: Playbook
    transport: Transport

    @property
    def certificates_dir(self) -> str:
        """Absolute on the host; asked of the transport each time, since an SSH host's home
        is known only once ``transport.start()`` has asked the server."""
        return self.transport.resolve(self.playbook.certificates_dir)

    @property
    def paths(self) -> PathFlavour:
        """How this host spells paths (its transport's flavour)."""
        return self.transport.paths

    def output_path(self, output: Output) -> str:
        return self.paths.normpath(self.paths.join(self.certificates_dir, output.file))

    def output_paths(self, certificate: Certificate) -> dict[str, str]:
        return {o.file: self.output_path(o) for o in certificate.outputs}

    def site_config(self, site: Site) -> str:
        return self.transport.resolve(site.config)

    def site_paths(self, site: Site) -> list[str]:
        """The main config, then its companion files."""
        main = self.site_config(site)
        stem = self.paths.splitext(main)[0]
        return [main, *(stem + suffix for suffix in site.companion_suffixes)]

    @property
    def state_path(self) -> str:
        return self.paths.join(self.certificates_dir, STATE_FILE)

    @property
    def trust_record_path(self) -> str:
        return self.paths.join(self.certificates_dir, TRUST_RECORD)

    def trust_store_files(self) -> list[str]:
        """The trust stores that are one file each (bundle, Java truststore, Windows script)."""
        found = []
        for trust in self.playbook.trust:
            for store in trust.stores:
                if store.type in ("bundle", "java"):
                    found.append(store.path)
                elif store.type == "windows":
                    found.append(store.script)
        return found

    def trust_folders(self) -> list[tuple[str, str]]:
        """The folder stores (debian, rhel) as (trust name, folder): provision's files in
        them are ``provision-TRUST-*.crt``."""
        return [
            (trust.name, store.dir)
            for trust in self.playbook.trust
            for store in trust.stores
            if store.type in ("debian", "rhel")
        ]

    def is_trust_file(self, path: str) -> bool:
        """A root file provision writes in a folder store (a journal may finish its rename)."""
        paths = self.paths
        for trust, folder in self.trust_folders():
            name = paths.basename(path)
            if (
                paths.normpath(path) == path
                and paths.dirname(path) == paths.normpath(folder)
                and re.fullmatch(rf"provision-{re.escape(trust)}-[0-9a-f]{{16}}\.crt", name)
            ):
                return True
        return False

    @property
    def marker_path(self) -> str:
        return self.paths.join(self.certificates_dir, RELOAD_MARKER)

    def own_files(self) -> list[str]:
        """The files provision keeps for itself in the certificates directory (layout.py);
        the backup folder's contents are its own too (``backup_dir``)."""
        names = (
            STATE_FILE,
            RELOAD_MARKER,
            JOURNAL_FILE,
            LOCK_FILE,
            LOCK_FILE + TAKEOVER_SUFFIX,
            TRUST_RECORD,
        )
        return [self.paths.join(self.certificates_dir, name) for name in names]

    @property
    def backup_dir(self) -> str:
        return self.paths.join(self.certificates_dir, BACKUP_DIR)

    def managed_paths(self) -> list[str]:
        """Every file the playbook writes on the host, the journal included."""
        return [*self.paths_of_interest(), self.paths.join(self.certificates_dir, JOURNAL_FILE)]

    def may_replace(self, path: str) -> bool:
        """Whether a record read from the host (a journal, a backup's manifest) may have a
        file replaced or removed at ``path``: a file the playbook manages, or an output in
        the certificates directory (one the playbook dropped, or wrote before a switch of
        playbook), never provision's own records or backups, never anything outside."""
        paths, folder = self.paths, self.certificates_dir
        if path in self.managed_paths() or self.is_trust_file(path):
            return True
        return (
            paths.normpath(path) == path
            and path != folder
            and paths.is_inside(path, folder)
            and path not in self.own_files()
            and not paths.is_inside(path, self.backup_dir)
        )

    def paths_of_interest(self) -> list[str]:
        paths = [self.output_path(o) for c in self.playbook.certificates for o in c.outputs]
        for site in self.playbook.sites:
            paths.extend(self.site_paths(site))
        paths.extend(self.trust_store_files())
        for authority in self.playbook.authorities:
            if authority.crl is not None and authority.crl.host_dir is not None:
                # (plan/trust.py's crl_paths, without importing the planner here)
                folder = self.paths.join(self.certificates_dir, authority.crl.host_dir)
                for name in ("crl.der", "crl.pem"):
                    paths.append(self.paths.normpath(self.paths.join(folder, name)))
        if self.playbook.trust:
            paths.append(self.trust_record_path)
        paths.append(self.state_path)
        paths.append(self.marker_path)
        for certificate in self.playbook.certificates:
            if wants_csr(certificate):
                paths.extend(
                    pending_key(self.output_path(o)) for o in certificate.outputs if o.is_key_file
                )
        return paths


def host_view(host: Host) -> HostView:
    return HostView(host.name, host.address, host.fqdn, host.groups)


def evaluate_playbook(doc: Document, host: Host) -> Playbook:
    """The playbook as this host sees it: templates evaluated, then validated."""
    view = host_view(host)
    variables = HostVariables(host.vars, view)
    data: Any = doc.data
    suffix = f" (for host {host.name})"
    try:
        with time_budget():  # one host's whole playbook, its variables included
            evaluated = variables.evaluate(data, ())
    except TemplateFailure as failure:
        raise InputError(
            doc.locate(failure.path), f"{failure.problem} in {failure.source!r}{suffix}"
        ) from None
    try:
        playbook = Playbook.model_validate(evaluated)
    except ValidationError as exc:
        # Quote what the host saw, but point at the line the person wrote.
        raise_for(exc, Document(doc.file, evaluated, doc.lines), Playbook, suffix=suffix)
    check_references(playbook, doc, suffix)
    check_host_paths(playbook, doc, host, suffix)
    return playbook


# A drive letter (C:\x, C:x) or a UNC root (\\server\share): how Windows paths begin.
_WINDOWS_PATH = re.compile(r"^(?:[A-Za-z]:|\\\\)")


def check_host_paths(playbook: Playbook, doc: Document, host: Host, suffix: str = "") -> None:
    """Paths fit the host's flavour: no Windows path for a POSIX host (it would become a
    relative folder named ``C:\\...``), and only absolute ones for a Windows host (no
    transport reaches it yet to say what a relative one is relative to)."""
    fields: list[tuple[tuple[str | int, ...], str | None]] = [
        (("certificates_dir",), playbook.certificates_dir)
    ]
    for s, site in enumerate(playbook.sites):
        fields.append((("sites", s, "config"), site.config))
        if host.os == "posix":  # a template is a file of the controller, named for the host
            fields.append((("sites", s, "template"), site.template))
        for d, directory in enumerate(site.virtual_directories):
            fields.append(
                (("sites", s, "virtual_directories", d, "physical_path"), directory.physical_path)
            )
    for where, path in fields:
        if path is None:
            continue
        if host.os == "posix" and _WINDOWS_PATH.match(path):
            raise InputError(
                doc.locate(where),
                f"'{path}' is a Windows path, but host {host.name} is not a Windows host "
                f"(give it os: windows in the inventory if it is){suffix}",
            )
        if host.os == "windows" and not WINDOWS.isabs(path):
            raise InputError(
                doc.locate(where),
                f"'{path}' is not an absolute Windows path (C:\\... or "
                f"\\\\server\\share\\...), which a Windows host needs{suffix}",
            )


def check_references(playbook: Playbook, doc: Document, suffix: str = "") -> None:
    """Cross-references the model cannot see from inside one object."""
    seen: dict[str, int] = {}
    for index, certificate in enumerate(playbook.certificates):
        if certificate.name in seen:
            raise InputError(
                doc.locate(("certificates", index, "name")),
                f"two certificates are named {certificate.name!r}{suffix}",
            )
        seen[certificate.name] = index
    sites: set[str] = set()
    for index, site in enumerate(playbook.sites):
        if site.name in sites:
            raise InputError(
                doc.locate(("sites", index, "name")), f"two sites are named {site.name!r}{suffix}"
            )
        sites.add(site.name)
    for index, certificate in enumerate(playbook.certificates):
        problem = source_of(certificate).check(certificate, playbook)
        if problem is not None:
            where, message = problem
            raise InputError(doc.locate(("certificates", index, *where)), f"{message}{suffix}")
    authorities = [a.name for a in playbook.authorities]
    for t, trust in enumerate(playbook.trust):
        for r, root in enumerate(trust.roots):
            if root.certificate is not None and not any(
                c.name == root.certificate and source_of(c).leaf_is_root
                for c in playbook.certificates
            ):
                raise InputError(
                    doc.locate(("trust", t, "roots", r, "certificate")),
                    f"{root.certificate!r} is not a self-signed certificate of this playbook"
                    f"{suffix}",
                )
            if root.authority is not None and root.authority not in authorities:
                known = ", ".join(authorities) or "none"
                raise InputError(
                    doc.locate(("trust", t, "roots", r, "authority")),
                    f"{root.authority!r} is not an authority of this playbook "
                    f"(defined: {known}){suffix}",
                )
    for s, site in enumerate(playbook.sites):
        for b, binding in enumerate(site.bindings):
            if binding.certificate is not None and binding.certificate not in seen:
                known = ", ".join(sorted(seen)) or "none"
                raise InputError(
                    doc.locate(("sites", s, "bindings", b, "certificate")),
                    f"{binding.certificate!r} is not a certificate of this playbook "
                    f"(defined: {known}){suffix}",
                )


def playbook_hosts_pattern(doc: Document) -> str:
    data: Mapping[str, Any] = doc.data if isinstance(doc.data, dict) else {}
    pattern = data.get("hosts", "all")
    if not isinstance(pattern, str):
        raise InputError(doc.locate(("hosts",)), f"must be a host pattern string (got {pattern!r})")
    return pattern


def controller_authorities(playbook: str) -> tuple[Document, list[Authority]]:
    """A playbook's authorities as the controller sees them (no host variables)."""
    from pydantic import TypeAdapter

    from provision.inputs.yaml_lines import load_file

    doc = load_file(Path(playbook), playbook)
    data = doc.data if isinstance(doc.data, dict) else {}
    raw = data.get("authorities") or []
    variables = HostVariables({}, HostView("controller", "127.0.0.1", None, ()))
    try:
        evaluated = variables.evaluate(raw, ("authorities",))
    except TemplateFailure as failure:
        raise InputError(doc.locate(failure.path), failure.problem) from None
    try:
        authorities = TypeAdapter(list[Authority]).validate_python(evaluated)
    except ValidationError as exc:
        shifted = Document(doc.file, {"authorities": evaluated}, doc.lines)
        error = exc.errors()[0]
        error["loc"] = ("authorities", *error["loc"])
        from provision.inputs.validation import describe

        raise describe(error, shifted, Playbook) from None
    return doc, authorities
