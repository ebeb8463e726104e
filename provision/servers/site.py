"""The site resource: a web server's configuration rendered from the playbook and the host.

Rendering happens at plan time, so the plan's diff is exactly what apply will write.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from provision import layout
from provision.crypto.decode import holds_private_key
from provision.errors import ProvisionError
from provision.facts import HostFacts
from provision.inputs.targets import Target
from provision.model.playbook import Binding, Certificate, SecretRef, Site, VirtualDirectory
from provision.plan.model import Change, Unchanged
from provision.servers.base import CertificateFiles
from provision.servers.challenge import challenge_folder, challenge_ports, serving_site, why_added
from provision.servers.registry import server
from provision.servers.render import Renderer
from provision.sources.registry import source_of
from provision.transport.base import PathFlavour

# The environment variable a PowerShell script reads a PKCS#12 password from when the
# playbook keeps it in a file or inline (the script never holds a password itself).
DEFAULT_PFX_PASSWORD_ENV = "PROVISION_PFX_PASSWORD"


class SiteError(ProvisionError):
    pass


@dataclass(frozen=True)
class BindingView:
    """One binding as templates see it; see docs/templates.md for every field."""

    protocol: str
    address: str
    port: int
    host: str | None
    certificate: str | None
    listen: str  # nginx `listen`, Apache `Listen`: "443", "127.0.0.1:443", "[::1]:443"
    server_name: str  # nginx `server_name`: the host, or "_"
    redirect_to: str | None  # the https URL in this server kind's variables
    files: CertificateFiles | None
    socket: str  # Apache <VirtualHost>: "*:443", "127.0.0.1:443", "[::1]:443"
    redirect_port: int | None  # the https port a redirect binding sends clients to
    sni: bool  # an https binding with a host: selected by SNI
    iis_binding: str  # IIS bindingInformation: "*:443:", "*:443:host", "[::1]:443:"
    iis_ipport: str  # netsh http ipport=: "0.0.0.0:443", "[::1]:443"
    # An http binding that serves /.well-known/acme-challenge/ from the host's challenge
    # folder (servers/challenge.py), before any redirect.
    acme_challenge: bool = False


@dataclass(frozen=True)
class ListenView:
    """An address:port a site listens on, in binding order (Apache `Listen`).

    A port with an all-addresses binding is listened on once, on all addresses: Apache cannot
    also bind one address of that port ("Address already in use" at start, which its config
    test does not see), and the all-addresses socket serves that address's virtual hosts.
    """

    listen: str
    protocol: str
    guard: str  # a Define name: set once the port is listened on, so two sites never repeat it
    port_guard: str  # the guard of the port on all addresses


@dataclass(frozen=True)
class VirtualDirectoryView:
    """A virtual directory as templates see it; the path is normalised."""

    path: str  # "/" or "/CCMAdmin": no trailing slash, no doubled slashes
    location: str  # the path with a trailing slash: "/" or "/CCMAdmin/"
    is_root: bool
    depth: int  # how many segments the path has: "/" 0, "/CCMAdmin" 1
    application: str | None
    physical_path: str | None  # absolute on the host
    proxy_to: str | None  # as written in the playbook
    proxy_pass: str | None  # proxy_to with a trailing slash: replaces `location` in requests


@dataclass(frozen=True)
class SiteCertificate:
    """A certificate the site binds, once however many bindings use it (IIS imports it)."""

    name: str
    files: CertificateFiles
    password_env: str  # environment variable holding the PKCS#12 password


def certificate_files(target: Target, certificate: Certificate) -> CertificateFiles:
    def find(format_: str, content: str | None) -> str | None:
        for output in certificate.outputs:
            if output.format == format_ and output.content == content:
                return target.output_path(output)
        return None

    certificate_pem = find("pem", "certificate")
    return CertificateFiles(
        # A self-signed certificate has no chain, so its certificate is its full chain.
        fullchain=find("pem", "fullchain")
        or (certificate_pem if source_of(certificate).leaf_is_root else None),
        certificate=certificate_pem,
        chain=find("pem", "chain"),
        key=find("pem", "key"),
        root_der=find("der", "root"),
        pkcs12=find("pkcs12", None),
    )


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def _all_addresses(address: str) -> bool:
    return address in ("*", "", "0.0.0.0")


def _host_port(address: str, port: int) -> str:
    ip = _ip(address)
    if ip is not None and ip.version == 6:
        return f"[{ip}]:{port}"
    return f"{address}:{port}"


def _listen(binding: Binding) -> str:
    if _all_addresses(binding.address):
        return str(binding.port)
    return _host_port(binding.address, binding.port)


def _socket(binding: Binding) -> str:
    return _host_port("*" if _all_addresses(binding.address) else binding.address, binding.port)


def _redirect_port(binding: Binding, site: Site) -> int:
    """The https port for a redirect: the https binding for the same host, else the first."""
    https = [b for b in site.bindings if b.protocol == "https"]
    same_host = [b for b in https if b.host == binding.host]
    chosen = same_host or https
    return chosen[0].port if chosen else 443


def binding_views(target: Target, site: Site) -> list[BindingView]:
    host_variable, uri_variable = server(site.server).redirect_variables
    challenge_on = set(challenge_ports(target, site))
    views = []
    for binding in site.bindings:
        files = None
        if binding.certificate is not None:
            files = certificate_files(target, target.playbook.certificate(binding.certificate))
        redirect = None
        redirect_port = None
        if binding.redirect_to_https:
            redirect_port = _redirect_port(binding, site)
            authority = host_variable
            if redirect_port != 443:
                authority += f":{redirect_port}"
            redirect = f"https://{authority}{uri_variable}"
        everywhere = _all_addresses(binding.address)
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
                socket=_socket(binding),
                redirect_port=redirect_port,
                sni=binding.protocol == "https" and binding.host is not None,
                iis_binding=(
                    f"{_host_port('*' if everywhere else binding.address, binding.port)}"
                    f":{binding.host or ''}"
                ),
                iis_ipport=_host_port("0.0.0.0" if everywhere else binding.address, binding.port),
                acme_challenge=binding.protocol == "http" and binding.port in challenge_on,
            )
        )
    return views


def _guard(listen: str) -> str:
    return "provision_listen_" + re.sub(r"[^A-Za-z0-9]", "_", listen)


def listen_views(views: list[BindingView]) -> list[ListenView]:
    everywhere = {view.port for view in views if view.listen == str(view.port)}
    seen: dict[str, ListenView] = {}
    for view in views:
        listen = str(view.port) if view.port in everywhere else view.listen
        if listen not in seen:
            seen[listen] = ListenView(listen, view.protocol, _guard(listen), _guard(str(view.port)))
    return list(seen.values())


def _normal_path(path: str) -> str:
    return "/" + "/".join(part for part in path.split("/") if part)


def directory_view(target: Target, directory: VirtualDirectory) -> VirtualDirectoryView:
    path = _normal_path(directory.path)
    proxy_pass = None
    if directory.proxy_to is not None:
        proxy_pass = (
            directory.proxy_to if directory.proxy_to.endswith("/") else (directory.proxy_to + "/")
        )
    return VirtualDirectoryView(
        path=path,
        location=path if path == "/" else path + "/",
        is_root=path == "/",
        depth=path.count("/") if path != "/" else 0,
        application=directory.application,
        physical_path=(
            target.transport.resolve(directory.physical_path) if directory.physical_path else None
        ),
        proxy_to=directory.proxy_to,
        proxy_pass=proxy_pass,
    )


def site_certificates(target: Target, views: list[BindingView]) -> list[SiteCertificate]:
    result: dict[str, SiteCertificate] = {}
    for view in views:
        if view.certificate is None or view.files is None or view.certificate in result:
            continue
        spec = target.playbook.certificate(view.certificate)
        password_env = DEFAULT_PFX_PASSWORD_ENV
        for output in spec.outputs:
            if output.format == "pkcs12" and isinstance(output.password, SecretRef):
                password_env = output.password.env or DEFAULT_PFX_PASSWORD_ENV
                break
        result[view.certificate] = SiteCertificate(view.certificate, view.files, password_env)
    return list(result.values())


def _check_files(site: Site, views: list[BindingView]) -> None:
    for view in views:
        if view.files is None:
            continue
        for what in server(site.server).missing_outputs(view.files):
            raise SiteError(
                f"site {site.name!r} ({site.server}) binds certificate {view.certificate!r}, "
                f"which needs {what}"
            )


def site_context(
    target: Target, site: Site, playbook_name: str, thumbprints: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Everything a site template may use (documented in docs/templates.md); ``thumbprints``:
    the ACME account thumbprint of each http-01 certificate, where the controller knows it."""
    site = serving_site(target, site)
    return _context(target, site, playbook_name, binding_views(target, site), thumbprints or {})


def _context(
    target: Target,
    site: Site,
    playbook_name: str,
    views: list[BindingView],
    thumbprints: Mapping[str, str],
) -> dict[str, Any]:
    _check_files(site, views)
    folder = challenge_folder(target)
    proven = {name for names in challenge_ports(target, site).values() for name in names}
    context = {
        "playbook": playbook_name,
        "site": site,
        "host": target.view,
        "config_path": target.site_config(site),
        "bindings": views,
        "listens": listen_views(views),
        "virtual_directories": [directory_view(target, d) for d in site.virtual_directories],
        "certificates": site_certificates(target, views),
        "certificates_dir": target.certificates_dir,
        "acme_challenge_path": layout.ACME_CHALLENGE_PATH,
        "acme_challenge_dir": folder + target.paths.sep,
        "acme_thumbprints": sorted({thumbprints[n] for n in proven if n in thumbprints}),
    }
    context.update(server(site.server).template_variables(site, context))
    return context


def site_files(target: Target, site: Site) -> list[tuple[str, str]]:
    """(path on the host, template) for the main config and any companion files."""
    main, *companions = target.site_paths(site)
    kind = server(site.server)
    files = [(main, site.template or kind.template)]
    for path, suffix in zip(companions, site.companion_suffixes, strict=True):
        files.append((path, kind.companions[suffix]))
    return files


def plan_site(
    target: Target,
    site: Site,
    facts: HostFacts,
    renderer: Renderer,
    playbook_name: str,
    issuing: Collection[str] = (),
    thumbprints: Mapping[str, str] | None = None,
) -> list[Change | Unchanged]:
    """The site's files as rendered against what the host holds; ``issuing`` names the
    certificates this plan (re)issues, so that a site proving one by HTTP-01 is written and
    reloaded first, serving the challenge (``Change.first``)."""
    serving = serving_site(target, site)
    views = binding_views(target, serving)
    prints = thumbprints or {}
    context = _context(target, serving, playbook_name, views, prints)
    first_views = _first_views(target, serving, facts, views, issuing)
    first_context = None
    if first_views is not None:
        first_context = _context(target, serving, playbook_name, first_views, prints)
    added = why_added(target, site)
    first_note = "written and reloaded first, so that it serves the http-01 challenge"
    if first_views is not None and len(first_views) < len(views):
        waiting = sorted({v.certificate or "" for v in views if v not in first_views})
        first_note = (
            f"written first without the https bindings of {', '.join(waiting)} (no "
            "certificate yet) and reloaded, so that it serves the http-01 challenge before "
            "the order"
        )
    results: list[Change | Unchanged] = []
    files = site_files(target, site)
    for path, template in files:
        text = renderer.render(template, context)
        result = _file_change(site, path, text, facts, main=path == files[0][0], paths=target.paths)
        if isinstance(result, Change):
            first = None
            if first_context is not None:
                first = renderer.render(template, first_context).encode()
                if first == facts.file(path).content:
                    first = None  # the host serves the challenge already
            words = [result.reason, *([added] if added else [])]
            words += [first_note] if first is not None else []
            result = replace(result, reason="; ".join(words), first=first)
        results.append(result)
    return results


def _first_views(
    target: Target,
    site: Site,
    facts: HostFacts,
    views: list[BindingView],
    issuing: Collection[str],
) -> list[BindingView] | None:
    """The bindings of the config written before an HTTP-01 order (None when the site needs
    none): every binding but the https ones whose certificate is to be issued and whose
    files are not on the host yet (the server would refuse the config)."""
    proven = {name for names in challenge_ports(target, site).values() for name in names}
    if not proven & set(issuing):
        return None

    def ready(view: BindingView) -> bool:
        if view.protocol != "https" or view.certificate not in issuing or view.files is None:
            return True
        paths = [p for p in vars(view.files).values() if p is not None]
        return all(facts.file(p).kind == "file" for p in paths)

    return [view for view in views if ready(view)]


def _file_change(
    site: Site, path: str, text: str, facts: HostFacts, *, main: bool, paths: PathFlavour
) -> Change | Unchanged:
    resource = f"site {site.name}" if main else f"site {site.name} ({paths.basename(path)})"
    state = facts.file(path)
    content = text.encode()

    def change(action: Any, reason: str) -> Change:
        before = (state.content or b"").decode(errors="replace") if state.content else ""
        diff = "".join(
            difflib.unified_diff(
                before.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"{path} (on host)",
                tofile=f"{path} (rendered)",
            )
        )
        return Change(
            resource,
            action,
            reason,
            path=path,
            mode=site.mode,
            content=content,
            diff=diff if state.content != content else None,
            site=site.name,
        )

    if state.kind == "missing":
        return change("create", "missing")
    if state.content is not None and state.content != content and holds_private_key(state.content):
        # A config path pointing at a key (a typo, or a playbook turned against its host):
        # never shown in a diff, never overwritten.
        raise SiteError(
            f"site {site.name!r}: {path} holds a private key; refusing to show it in a diff "
            "or to overwrite it with a site config"
        )
    if state.kind != "file":
        return change("replace", f"{path} is {state.described}, expected a file")
    if state.content != content:
        return change("update", "rendered config differs")
    if state.mode != site.mode:
        return change("update", f"mode {state.mode or 0:04o}, want {site.mode:04o}")
    return Unchanged(resource, "rendered config is up to date")
