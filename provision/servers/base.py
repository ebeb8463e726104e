"""What `provision` knows about one kind of web server, in one place.

Each server is a module of this package exporting ``SERVER``, an instance of a `WebServer`
subclass (servers/registry.py finds them). Everything that differs between servers lives
there: its templates, the files written beside the main config, how its redirect targets
name the request's host and path, the certificate outputs it reads, its default test and
reload commands, the site rules it alone has, its extra template variables and its quoting
filters. Adding a server is one module and its templates; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from provision.model.playbook import Site
    from provision.transport.base import OsFamily

# A Jinja2 filter: one value in, the text the config may hold out (or RenderError).
Filter = Callable[[Any], str]


@dataclass(frozen=True)
class CertificateFiles:
    """Absolute paths on the host of a certificate's outputs, by what a server needs."""

    fullchain: str | None
    certificate: str | None
    chain: str | None
    key: str | None
    root_der: str | None
    pkcs12: str | None


class WebServer:
    """One kind of web server. Subclasses set the class attributes and override what differs;
    the defaults suit a server that reads PEM files and has nothing beside its main config."""

    # The name a playbook's `server:` gives; also the module's name.
    name: ClassVar[str]
    # The default main template (a site's `template:` replaces it).
    template: ClassVar[str]
    # Files written beside the main config, named by replacing its extension: suffix ->
    # template, in the order they are written.
    companions: ClassVar[Mapping[str, str]] = {}
    # How this server names the request's host name and path in a redirect target.
    redirect_variables: ClassVar[tuple[str, str]]
    # Jinja2 filters templates use to quote values for this server's syntax.
    filters: ClassVar[Mapping[str, Filter]] = {}
    # Whether the server matches a request's path to a virtual directory in any case (IIS
    # does); the others compare it as written, so /ccmadmin/ is not /CCMAdmin/.
    paths_ignore_case: ClassVar[bool] = False
    # Whether its default templates serve every case of a path for a site that sets
    # case_insensitive_paths (a site of any other server setting it is refused).
    case_insensitive_option: ClassVar[bool] = False
    # The folder the server gives a site's root when no virtual directory / has a
    # physical_path, because it must have one (IIS's root application); None: it needs none,
    # and answers paths no directory claims itself.
    default_root: ClassVar[str | None] = None

    def missing_outputs(self, files: CertificateFiles) -> list[str]:
        """What a bound certificate lacks for this server, each as "a PEM output with ..."
        (empty when it has everything). Checked at plan time, so the host fails with it."""
        needs = [
            ("a PEM output with content fullchain", files.fullchain),
            ("a PEM output with content key", files.key),
        ]
        return [what for what, path in needs if path is None]

    def default_commands(
        self, site: Site, paths: Sequence[str], family: OsFamily
    ) -> tuple[str | None, str | None]:
        """The test and reload commands run when the site sets none; ``paths`` are the main
        config and its companions on the host, ``family`` the kind of host (a command made
        for one kind cannot run on the other). None runs nothing."""
        return None, None

    def check_site(self, site: Site) -> None:
        """Rules this server alone has about a site, checked at validation (so the error names
        the playbook's line): raise ValueError with the reason."""

    def template_variables(self, site: Site, context: Mapping[str, Any]) -> dict[str, Any]:
        """Variables this server's templates get beside the common ones, which ``context``
        holds (``bindings``, ``virtual_directories``, ...: docs/templates.md)."""
        return {}
