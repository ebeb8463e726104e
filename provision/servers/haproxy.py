"""HAProxy (2.6, Debian bookworm's): a site is a config fragment loaded beside the main
haproxy.cfg (``haproxy -f /etc/haproxy/haproxy.cfg -f SITE``), holding one `frontend` that
binds every address:port of the site, and one `backend` per proxied virtual directory.

Beside it, the site's crt-list (``SITE`` with the extension ``.crt-list``): its https binds
read their certificates from it, the default certificate first, then one line per SNI name.
HAProxy serves no files, so directories with a ``physical_path`` are refused at validation.
docs/templates.md says what is rendered and what the main config must provide.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from provision.model.playbook import Site
from provision.servers.base import CertificateFiles, Filter, WebServer
from provision.servers.render import RenderError, no_control, regex_escape
from provision.servers.site import BindingView, SiteError, VirtualDirectoryView
from provision.transport.base import POSIX, OsFamily  # HAProxy runs on POSIX hosts: POSIX paths

MAIN_CONFIG = "/etc/haproxy/haproxy.cfg"
# A word HAProxy's config parser takes as it is: no blank, quote, backslash or comment sign.
_HAPROXY_BARE = re.compile(r"""^[^\s'"\\#]+$""")
# What a crt-list word cannot hold: HAProxy 2.6 splits its lines on blanks and has no quoting.
_CRT_LIST_UNSAFE = re.compile(r"\s")
# Proxy names: letters, digits, '-', '_', '.' and ':' (HAProxy's rule for section names).
_PROXY_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def haproxy_quote(value: Any) -> str:
    """One word of an HAProxy config: bare when nothing in it is special, else in single
    quotes (strong quoting: nothing inside is interpreted, not even ``$``), a quote inside
    written as ``'\\''``. A line feed cannot be strongly quoted, so control characters are
    refused: they could only end the directive and start another."""
    text = no_control(str(value), "an HAProxy config")
    if text and _HAPROXY_BARE.match(text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def haproxy_crt_list(value: Any) -> str:
    """One word of a crt-list line (a certificate file or an SNI filter). HAProxy 2.6 reads
    crt-list lines split on blanks, without quotes or escapes, so what they cannot hold
    (blanks, control characters, a leading ``#``, ``!`` or ``[``) is refused."""
    text = no_control(str(value), "a crt-list")
    if not text or _CRT_LIST_UNSAFE.search(text) or text[0] in "#![":
        raise RenderError(
            f"{text!r} cannot be written in an HAProxy crt-list (its lines are split on "
            "blanks, with no quoting): rename the file or folder"
        )
    return text


def proxy_name(text: str) -> str:
    """``text`` as an HAProxy proxy name: every other character becomes ``_``."""
    return _PROXY_NAME_UNSAFE.sub("_", text)


@dataclass(frozen=True)
class Bind:
    """An address:port the frontend binds, once however many bindings share it."""

    name: str  # the bind's name, which `so_name` matches: "https-443", "http-127.0.0.1:8080"
    address: str  # HAProxy's form: ":443" (all IPv4 addresses), "127.0.0.1:443", "[::1]:443"
    protocol: str


@dataclass(frozen=True)
class BindingRoute:
    """How the frontend tells one binding's requests apart (a view per binding, in order)."""

    bind: str  # the name of the bind the binding's requests arrive on
    # For a binding without a host: the hosts other bindings of the same bind claim.
    other_hosts: tuple[str, ...]


@dataclass(frozen=True)
class CrtListLine:
    """One crt-list line: a certificate (its full chain PEM; the key beside it) and the SNI
    names it is chosen for (none: the names in the certificate)."""

    file: str
    filters: tuple[str, ...]


@dataclass(frozen=True)
class Backend:
    """A proxied virtual directory as an HAProxy backend."""

    name: str
    application: str | None
    path: str  # the directory's path, normalised ("/api")
    location: str  # with a trailing slash: what `path_beg` matches ("/api/")
    is_root: bool
    depth: int
    server: str  # host:port of proxy_to ("127.0.0.1:9000", "[::1]:9000")
    tls: bool  # proxy_to is https://
    path_regex: str  # matches the location and captures the rest: "^/api/(.*)"
    # The replacement path (a log-format string: % doubled), the rest appended as \1.
    target_path: str


def _bind_address(listen: str) -> str:
    # The binding view's `listen` is the port alone for all addresses; HAProxy wants ":443".
    return f":{listen}" if listen.isdigit() else listen


def _binds(bindings: Sequence[BindingView]) -> tuple[list[Bind], list[BindingRoute]]:
    binds: dict[str, Bind] = {}
    hosts: dict[str, list[str]] = {}
    names = []
    for binding in bindings:
        name = f"{binding.protocol}-{binding.listen}"
        binds.setdefault(name, Bind(name, _bind_address(binding.listen), binding.protocol))
        if binding.host is not None:
            hosts.setdefault(name, []).append(binding.host.lower())
        names.append(name)
    routes = [
        BindingRoute(
            name, () if binding.host is not None else tuple(dict.fromkeys(hosts.get(name, [])))
        )
        for name, binding in zip(names, bindings, strict=True)
    ]
    return list(binds.values()), routes


def _crt_list(bindings: Sequence[BindingView]) -> list[CrtListLine]:
    """The default certificate first (that of the first https binding without a host, else
    of the first https binding), by its own names; then each SNI binding's certificate for
    its host; then any other certificate a binding without a host uses, by its own names."""
    # (host, full chain) of each https binding; missing_outputs made sure of the file.
    https = [
        (b.host, b.files.fullchain)
        for b in bindings
        if b.protocol == "https" and b.files is not None and b.files.fullchain is not None
    ]
    if not https:
        return []
    catch_all = [file for host, file in https if host is None]
    lines: dict[CrtListLine, None] = {}
    lines[CrtListLine((catch_all or [https[0][1]])[0], ())] = None
    for host, file in https:
        if host is not None:
            lines[CrtListLine(file, (host.lower(),))] = None
    for file in catch_all:
        lines[CrtListLine(file, ())] = None
    return list(lines)


def _backends(site_name: str, directories: Sequence[VirtualDirectoryView]) -> list[Backend]:
    backends: list[Backend] = []
    for number, directory in enumerate(directories, 1):
        # check_site refused directories without proxy_to (HAProxy serves no files).
        target = urlsplit(directory.proxy_pass or "")
        port = target.port or (443 if target.scheme == "https" else 80)
        host = target.hostname or ""
        server = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        backends.append(
            Backend(
                name=f"{site_name}-{number}",
                application=directory.application,
                path=directory.path,
                location=directory.location,
                is_root=directory.is_root,
                depth=directory.depth,
                server=server,
                tls=target.scheme == "https",
                path_regex=f"^{regex_escape(directory.location)}(.*)",
                target_path=(target.path or "/").replace("%", "%%"),
            )
        )
    # In playbook order; the template routes the deepest paths first (HAProxy takes the
    # first use_backend that matches).
    return backends


class Haproxy(WebServer):
    name = "haproxy"
    template = "haproxy/site.cfg.j2"
    companions: ClassVar[Mapping[str, str]] = {".crt-list": "haproxy/site.crt-list.j2"}
    # The request's host without its port (set by the frontend), and its path with the query.
    redirect_variables = ("%[var(txn.host)]", "%[capture.req.uri]")
    filters: ClassVar[Mapping[str, Filter]] = {
        "haproxy_quote": haproxy_quote,
        "haproxy_crt_list": haproxy_crt_list,
    }

    def missing_outputs(self, files: CertificateFiles) -> list[str]:
        # HAProxy 2.6 reads a certificate's key from its PEM file or, failing that, from the
        # same path with ".key" appended (ssl-load-extra-files, on by default). provision
        # writes one content per output, so the key must be that second file.
        if files.fullchain is None:
            return ["a PEM output with content fullchain"]
        beside = files.fullchain + ".key"
        if files.key != beside:
            name = POSIX.basename(files.fullchain)
            found = f" (its key output is {POSIX.basename(files.key)})" if files.key else ""
            return [
                f"a PEM output with content key named {name}.key{found}: HAProxy loads a "
                f"certificate's key from the certificate's file name with .key appended"
            ]
        return []

    def default_commands(
        self, site: Site, paths: Sequence[str], family: OsFamily
    ) -> tuple[str | None, str | None]:
        # Debian's haproxy.service loads $CONFIG and whatever -f its EXTRAOPTS add
        # (/etc/default/haproxy); `systemctl reload` checks that and hands over seamlessly.
        test = shlex.join(["haproxy", "-c", "-f", MAIN_CONFIG, "-f", paths[0]])
        return test, "systemctl reload haproxy"

    def check_site(self, site: Site) -> None:
        for directory in site.virtual_directories:
            if directory.proxy_to is not None:
                try:
                    _ = urlsplit(directory.proxy_to).port
                except ValueError as exc:  # "Port out of range 0-65535", ...
                    raise ValueError(
                        f"virtual directory {directory.path}: proxy_to {directory.proxy_to} "
                        f"has no valid port ({exc})"
                    ) from None
            if directory.physical_path is not None:
                raise ValueError(
                    f"HAProxy serves no files, so virtual directory {directory.path} cannot "
                    "have a physical_path: give it a proxy_to (a server that serves the "
                    "folder), or serve this site with nginx or apache"
                )

    def template_variables(self, site: Site, context: Mapping[str, Any]) -> dict[str, Any]:
        name = proxy_name(site.name)
        binds, routes = _binds(context["bindings"])
        thumbprints = context["acme_thumbprints"]
        if len(thumbprints) > 1:
            raise SiteError(
                f"site {site.name!r} (haproxy) binds http-01 certificates of different ACME "
                "accounts; HAProxy answers the challenge with one account's thumbprint: order "
                "them from one directory with one account_dir, or serve the site with nginx"
            )
        challenged = [
            route.bind
            for route, binding in zip(routes, context["bindings"], strict=True)
            if binding.acme_challenge
        ]
        if challenged and not thumbprints:
            raise SiteError(
                f"site {site.name!r} (haproxy) answers http-01 challenges with the ACME "
                "account's thumbprint, which only plan and apply read from the controller "
                "(provision render does not)"
            )
        return {
            "haproxy_acme_thumbprint": thumbprints[0] if thumbprints else None,
            "haproxy_challenge_binds": list(dict.fromkeys(challenged)),
            "haproxy_frontend": name,
            "haproxy_binds": binds,
            "haproxy_routes": routes,
            "haproxy_crt_lines": _crt_list(context["bindings"]),
            # The companion file (targets.py names it: the config's extension replaced).
            "haproxy_crt_list_path": POSIX.splitext(context["config_path"])[0] + ".crt-list",
            "haproxy_backends": _backends(name, context["virtual_directories"]),
        }


SERVER = Haproxy()
