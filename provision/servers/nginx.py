"""nginx: one `server` block per binding, in a file included inside `http { }`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from provision.model.playbook import Site
from provision.servers.base import Filter, WebServer
from provision.servers.render import RenderError, no_control
from provision.transport.base import OsFamily

_NGINX_SAFE = re.compile(r"^[A-Za-z0-9_./:@%+=,~-]+$")


def nginx_quote(value: Any) -> str:
    """A value nginx reads as one token: bare when safe, else double-quoted and escaped.

    nginx has no escape for ``$`` (it would start a variable), so such values are refused.
    """
    text = no_control(str(value), "an nginx config")
    if _NGINX_SAFE.match(text):
        return text
    if "$" in text:
        raise RenderError(
            f"{text!r} contains '$', which nginx would read as a variable "
            f"(nginx has no escape for it)"
        )
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nginx_regex(value: Any) -> str:
    """A regular expression as one nginx token, always double-quoted (``{`` and ``;`` in a
    pattern would otherwise end it). nginx compiles a pattern as written: ``$`` there is the
    anchor, not a variable. Backslashes are doubled because nginx reads ``\\\\`` in a
    token as one."""
    text = no_control(str(value), "an nginx config")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nginx_rewrite_target(value: Any) -> str:
    """A rewrite's replacement: the path ``value`` (checked as nginx_quote checks it: no
    ``$``) followed by the pattern's first capture, ``$1``, in the same token."""
    token = nginx_quote(value)
    return token[:-1] + '$1"' if token.startswith('"') else token + "$1"


class Nginx(WebServer):
    name = "nginx"
    template = "nginx/site.conf.j2"
    redirect_variables = ("$host", "$request_uri")
    filters: ClassVar[Mapping[str, Filter]] = {
        "nginx_quote": nginx_quote,
        "nginx_regex": nginx_regex,
        "nginx_rewrite_target": nginx_rewrite_target,
    }
    # A site with case_insensitive_paths gets a rewrite per directory (templates/nginx).
    case_insensitive_option = True

    def default_commands(
        self, site: Site, paths: Sequence[str], family: OsFamily
    ) -> tuple[str | None, str | None]:
        return "nginx -t", "nginx -s reload"


SERVER = Nginx()
