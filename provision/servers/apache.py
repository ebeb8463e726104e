"""Apache httpd: `Listen` once per address:port, one `<VirtualHost>` per binding."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from provision.model.playbook import Site
from provision.servers.base import Filter, WebServer
from provision.servers.render import RenderError, no_control
from provision.transport.base import OsFamily

# What Apache's regex substitution reads specially: a backslash, and $ before a capture's number.
_REGSUB_SPECIAL = re.compile(r"([\\$])")


def apache_quote(value: Any) -> str:
    """A double-quoted Apache argument. Apache substitutes ``${NAME}`` everywhere in its
    config, with no escape, so such values are refused."""
    text = no_control(str(value), "an Apache config")
    if "${" in text:
        raise RenderError(
            f"{text!r} contains '${{', which Apache would read as a variable "
            f"(Apache has no escape for it)"
        )
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def apache_regsub_literal(value: Any) -> str:
    """``value`` as literal text in the target of AliasMatch, ProxyPassMatch or RedirectMatch,
    where ``$1`` is a capture and a backslash takes the next character as it is (Apache's
    ap_pregsub): each backslash and ``$`` escaped. Quote the result with apache_quote."""
    return _REGSUB_SPECIAL.sub(r"\\\1", str(value))


class Apache(WebServer):
    name = "apache"
    template = "apache/site.conf.j2"
    redirect_variables = ("%{SERVER_NAME}", "%{REQUEST_URI}")
    filters: ClassVar[Mapping[str, Filter]] = {
        "apache_quote": apache_quote,
        "apache_regsub_literal": apache_regsub_literal,
    }
    # A site with case_insensitive_paths gets AliasMatch and ProxyPassMatch (templates/apache).
    case_insensitive_option = True

    def default_commands(
        self, site: Site, paths: Sequence[str], family: OsFamily
    ) -> tuple[str | None, str | None]:
        return "apache2ctl -t", "apache2ctl graceful"


SERVER = Apache()
