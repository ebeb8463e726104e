"""Render web-server configuration from Jinja2 templates.

One sandboxed environment per run (templates may come from playbook authors), with
StrictUndefined so a misspelt variable fails instead of leaving a hole in a config. Templates
are found beside the playbook first (``templates/`` in its folder or its parent), then in the
ones shipped with `provision`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from provision.errors import ProvisionError

PACKAGED_TEMPLATES = Path(__file__).parent / "templates"


class RenderError(ProvisionError):
    pass


_NGINX_SAFE = re.compile(r"^[A-Za-z0-9_./:@%+=,~-]+$")


def nginx_quote(value: Any) -> str:
    """A value nginx reads as one token: bare when safe, else double-quoted and escaped."""
    text = str(value)
    if _NGINX_SAFE.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "${dollar}") + '"'


def apache_quote(value: Any) -> str:
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def xml_attr(value: Any) -> str:
    text = str(value)
    for raw, escaped in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;")):
        text = text.replace(raw, escaped)
    return text


def powershell_quote(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


class Renderer:
    def __init__(self, search_path: Sequence[Path]) -> None:
        self.search_path = [p for p in search_path if p.is_dir()] + [PACKAGED_TEMPLATES]
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader([str(p) for p in self.search_path]),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        self.env.filters.update(
            nginx_quote=nginx_quote,
            apache_quote=apache_quote,
            xml_attr=xml_attr,
            powershell_quote=powershell_quote,
        )

    def render(self, template: str, context: Mapping[str, Any]) -> str:
        """Render ``template`` (a name under a templates folder, or a path to a file)."""
        try:
            compiled = self._load(template)
            return str(compiled.render(context))
        except TemplateNotFound:
            raise RenderError(f"template {template} not found (looked in "
                              f"{', '.join(str(p) for p in self.search_path)})") from None
        except TemplateSyntaxError as exc:
            raise RenderError(f"{exc.filename or template}:{exc.lineno}: {exc.message}") from None
        except UndefinedError as exc:
            raise RenderError(f"{template}: undefined variable: {exc.message}") from None
        except SecurityError as exc:
            raise RenderError(f"{template}: not allowed in a template: {exc}") from None
        except TemplateError as exc:
            raise RenderError(f"{template}: {exc.message}") from None

    def _load(self, template: str) -> Any:
        path = Path(template)
        if path.is_absolute() or path.exists():
            # A playbook's own template, named by path: load it with the same environment.
            source = path.read_text(encoding="utf-8")
            return self.env.from_string(source)
        return self.env.get_template(template)
