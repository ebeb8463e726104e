"""The site resource: a web server's configuration rendered from the playbook and the host.

Rendering happens at plan time, so the plan's diff is exactly what apply will write.
"""

from __future__ import annotations

import difflib
import ipaddress
import posixpath
from dataclasses import dataclass
from typing import Any

from provision.errors import ProvisionError
from provision.facts import HostFacts
from provision.model.playbook import Binding, Certificate, Site
from provision.plan import Change, Unchanged
from provision.render import Renderer
from provision.targets import Target

DEFAULT_TEMPLATES = {
    "nginx": "nginx/site.conf.j2",
    "apache": "apache/site.conf.j2",
    "iis": "iis/site.xml.j2",
}
# Templates of the files a server kind needs beside its main config, by suffix.
COMPANION_TEMPLATES = {".ps1": "iis/site.ps1.j2"}


class SiteError(ProvisionError):
    pass


@dataclass(frozen=True)
class CertificateFiles:
    """Absolute paths on the host of a certificate's outputs, by what a server needs."""

    fullchain: str | None
    certificate: str | None
    chain: str | None
    key: str | None
    root_der: str | None
    pkcs12: str | None


@dataclass(frozen=True)
class BindingView:
    protocol: str
    address: str
    port: int
    host: str | None
    certificate: str | None
    listen: str
    server_name: str
    redirect_to: str | None
    files: CertificateFiles | None


def certificate_files(target: Target, certificate: Certificate) -> CertificateFiles:
    def find(format_: str, content: str | None) -> str | None:
        for output in certificate.outputs:
            if output.format == format_ and output.content == content:
                return target.output_path(output)
        return None

    certificate_pem = find("pem", "certificate")
    return CertificateFiles(
        # A self-signed certificate has no chain, so its certificate is its full chain.
        fullchain=find("pem", "fullchain") or (
            certificate_pem if certificate.source.type == "self-signed" else None
        ),
        certificate=certificate_pem,
        chain=find("pem", "chain"),
        key=find("pem", "key"),
        root_der=find("der", "root"),
        pkcs12=find("pkcs12", None),
    )


def _listen(binding: Binding) -> str:
    if binding.address in ("*", "", "0.0.0.0"):
        return str(binding.port)
    try:
        if ipaddress.ip_address(binding.address).version == 6:
            return f"[{binding.address}]:{binding.port}"
    except ValueError:
        pass
    return f"{binding.address}:{binding.port}"


def binding_views(target: Target, site: Site) -> list[BindingView]:
    https_ports = [b.port for b in site.bindings if b.protocol == "https"]
    views = []
    for binding in site.bindings:
        files = None
        if binding.certificate is not None:
            files = certificate_files(target, target.playbook.certificate(binding.certificate))
        redirect = None
        if binding.redirect_to_https:
            port = https_ports[0] if https_ports else 443
            authority = "$host" if port == 443 else f"$host:{port}"
            redirect = f"https://{authority}$request_uri"
        views.append(
            BindingView(
                protocol=binding.protocol,
                address=binding.address,
                port=binding.port,
                host=binding.host,
                certificate=binding.certificate,
                listen=_listen(binding),
                server_name=binding.host or "_",
                redirect_to=redirect,
                files=files,
            )
        )
    return views


def _check_files(site: Site, views: list[BindingView]) -> None:
    for view in views:
        if view.files is None:
            continue
        needs: list[tuple[str, str | None]] = []
        if site.server in ("nginx", "apache"):
            needs = [("a PEM output with content fullchain", view.files.fullchain),
                     ("a PEM output with content key", view.files.key)]
        elif site.server == "iis":
            needs = [("a pkcs12 output", view.files.pkcs12)]
        for what, path in needs:
            if path is None:
                raise SiteError(
                    f"site {site.name!r} ({site.server}) binds certificate {view.certificate!r}, "
                    f"which needs {what}"
                )


def site_context(target: Target, site: Site, playbook_name: str) -> dict[str, Any]:
    """Everything a site template may use (documented in docs/templates.md)."""
    views = binding_views(target, site)
    _check_files(site, views)
    return {
        "playbook": playbook_name,
        "site": site,
        "host": target.view,
        "bindings": views,
        "virtual_directories": [
            directory.model_copy(
                update={"physical_path": target.transport.resolve(directory.physical_path)}
            ) if directory.physical_path else directory
            for directory in site.virtual_directories
        ],
        "certificates_dir": target.certificates_dir,
    }


def site_files(target: Target, site: Site) -> list[tuple[str, str]]:
    """(path on the host, template) for the main config and any companion files."""
    main, *companions = target.site_paths(site)
    files = [(main, site.template or DEFAULT_TEMPLATES[site.server])]
    for path, suffix in zip(companions, site.companion_suffixes, strict=True):
        files.append((path, COMPANION_TEMPLATES[suffix]))
    return files


def plan_site(
    target: Target, site: Site, facts: HostFacts, renderer: Renderer, playbook_name: str
) -> list[Change | Unchanged]:
    context = site_context(target, site, playbook_name)
    results: list[Change | Unchanged] = []
    files = site_files(target, site)
    for path, template in files:
        text = renderer.render(template, context)
        results.append(_file_change(site, path, text, facts, main=path == files[0][0]))
    return results


def _file_change(site: Site, path: str, text: str, facts: HostFacts, *, main: bool
                 ) -> Change | Unchanged:
    resource = f"site {site.name}" if main else f"site {site.name} ({posixpath.basename(path)})"
    state = facts.file(path)
    content = text.encode()

    def change(action: Any, reason: str) -> Change:
        before = (state.content or b"").decode(errors="replace") if state.content else ""
        diff = "".join(difflib.unified_diff(
            before.splitlines(keepends=True), text.splitlines(keepends=True),
            fromfile=f"{path} (on host)", tofile=f"{path} (rendered)",
        ))
        return Change(resource, action, reason, path=path, mode=0o644, content=content,
                      diff=diff, site=site.name)

    if state.kind == "missing":
        return change("create", "missing")
    if state.kind != "file":
        return change("replace", f"{path} is a {state.kind}, expected a file")
    if state.content != content:
        return change("update", "rendered config differs")
    return Unchanged(resource, "rendered config is up to date")
