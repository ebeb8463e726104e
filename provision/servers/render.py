"""Render web-server configuration from Jinja2 templates.

One sandboxed environment per run (templates may come from playbook authors), with
StrictUndefined so a misspelt variable fails instead of leaving a hole in a config. Templates
are found beside the playbook first (``templates/`` in its folder or its parent), then in the
ones shipped with `provision`.
"""

from __future__ import annotations

import re
import traceback
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
from jinja2.loaders import split_template_path
from jinja2.sandbox import SandboxedEnvironment

from provision.errors import ProvisionError
from provision.inputs.manifest import Manifest, read
from provision.sandbox import (
    Bounded,
    BudgetExceeded,
    bounded_join,
    code_generator,
    expression_budget,
    time_budget,
)

PACKAGED_TEMPLATES = Path(__file__).parent.parent / "templates"


class RenderError(ProvisionError):
    pass


# Characters no config line may carry: a newline would end the directive (and start another).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters XML 1.0 cannot hold at all, even escaped.
_XML_INVALID = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def no_control(value: str, where: str) -> str:
    """``value``, unless it holds a control character ``where`` cannot hold."""
    if _CONTROL.search(value):
        raise RenderError(
            f"{value!r} has a control character (newline, tab, ...), which {where} cannot hold"
        )
    return value


def xml_attr(value: Any) -> str:
    text = str(value)
    if _XML_INVALID.search(text):
        raise RenderError(f"{text!r} has a character XML cannot hold")
    for raw, escaped in (
        ("&", "&amp;"),
        ("<", "&lt;"),
        (">", "&gt;"),
        ('"', "&quot;"),
        ("\t", "&#9;"),
        ("\n", "&#10;"),
        ("\r", "&#13;"),
    ):
        text = text.replace(raw, escaped)
    return text


def comment(value: Any) -> str:
    """Text safe inside a ``#`` line comment: one line (a newline would end the comment and
    make the rest a directive), no trailing backslash (Apache would join the next line)."""
    text = " ".join(_CONTROL.sub(" ", str(value)).split())
    while text.endswith("\\"):
        text = text[:-1].rstrip()
    return text


def xml_comment(value: Any) -> str:
    """Text safe inside ``<!-- -->``: one line, no ``--``, not ending in ``-``."""
    text = _XML_INVALID.sub("", comment(value))
    while "--" in text:
        text = text.replace("--", "- -")
    return text.rstrip("-")


_REGEX_SPECIAL = re.compile(r"([.^$*+?()\[\]{}|\\])")


def regex_escape(value: Any) -> str:
    """A literal string for a regular expression (Apache RedirectMatch, IIS rewrite rules):
    the metacharacters PCRE and .NET share, escaped; nothing else, so it stays readable."""
    return _REGEX_SPECIAL.sub(r"\\\1", str(value))


class _Sandbox(Bounded, SandboxedEnvironment):
    """Sandboxed, and held to the evaluation budget of provision/sandbox.py."""

    code_generator_class = code_generator()
    concat = staticmethod(bounded_join)


def _template_line(exc: BaseException, filename: str | None) -> int | None:
    """The template line a runtime error happened on (Jinja2 rewrites tracebacks so that
    the template's own frames carry its file name and line numbers)."""
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename in (filename, "<template>"):
            line = lineno
    return line


def _where(template: str, exc: BaseException, compiled: Any) -> str:
    line = _template_line(exc, getattr(compiled, "filename", None))
    return f"{template}:{line}" if line else template


class _RecordingLoader(FileSystemLoader):
    """Records in the run's manifest where each template (includes too) was looked for: in
    every folder a named template may come from, in order, existing or not, up to the one it
    was found in (a file created earlier in that order would shadow it)."""

    def __init__(self, search_path: list[Path], candidates: list[Path], reads: Manifest) -> None:
        super().__init__([str(p) for p in search_path])
        self.candidates = candidates
        self.reads = reads

    def get_source(self, environment: Any, template: str) -> Any:
        pieces = split_template_path(template)
        for folder in self.candidates:
            path = folder.joinpath(*pieces)
            self.reads.read(path)
            if path.is_file():
                break
        return super().get_source(environment, template)


class Renderer:
    def __init__(self, search_path: Sequence[Path], reads: Manifest | None = None) -> None:
        candidates = [*search_path, PACKAGED_TEMPLATES]
        self.search_path = [p for p in search_path if p.is_dir()] + [PACKAGED_TEMPLATES]
        self.reads = reads
        self._loaded: dict[str, Any] = {}
        self.env = _Sandbox(
            loader=FileSystemLoader([str(p) for p in self.search_path])
            if reads is None
            else _RecordingLoader(self.search_path, candidates, reads),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        self.env.filters.update(
            xml_attr=xml_attr,
            comment=comment,
            xml_comment=xml_comment,
            regex_escape=regex_escape,
        )
        # Each server's own quoting filters (nginx_quote, ...), from its module. Imported
        # here: the server modules import this one for RenderError.
        from provision.servers.registry import filters

        self.env.filters.update(filters())
        self.env.apply_budget()

    def render(self, template: str, context: Mapping[str, Any]) -> str:
        """Render ``template`` (a name under a templates folder, or a path to a file)."""
        compiled = None
        try:
            compiled = self._load(template)
            with time_budget(), expression_budget():
                return str(compiled.render(context))
        except TemplateNotFound:
            raise RenderError(
                f"template {template} not found (looked in "
                f"{', '.join(str(p) for p in self.search_path)})"
            ) from None
        except TemplateSyntaxError as exc:
            raise RenderError(f"{exc.filename or template}:{exc.lineno}: {exc.message}") from None
        except UndefinedError as exc:
            where = _where(template, exc, compiled)
            raise RenderError(f"{where}: undefined variable: {exc.message}") from None
        except BudgetExceeded as exc:
            where = _where(template, exc, compiled)
            raise RenderError(f"{where}: template error: too costly: {exc.message}") from None
        except SecurityError as exc:
            where = _where(template, exc, compiled)
            raise RenderError(f"{where}: not allowed in a template: {exc}") from None
        except TemplateError as exc:
            raise RenderError(f"{template}: {exc.message}") from None
        except RenderError as exc:  # a filter refused a value
            raise RenderError(f"{template}: {exc.message}") from None
        except Exception as exc:
            # A template's own mistake ({{ 1 // 0 }}, {{ "a" + 1 }}, a macro calling itself):
            # the template's fault, reported with its line, never as a traceback.
            where = _where(template, exc, compiled)
            problem = {RecursionError: "recursion too deep", MemoryError: "out of memory"}.get(
                type(exc), str(exc)
            )
            raise RenderError(f"{where}: template error: {problem}") from None

    def _load(self, template: str) -> Any:
        # Once per run, not once per host: a template named by path would otherwise be read
        # and compiled again for every host, and a named one stat()ed for freshness.
        compiled = self._loaded.get(template)
        if compiled is None:
            path = Path(template)
            read(self.reads, path)  # a name is tried as a path first: one created there wins
            if path.is_absolute() or path.exists():
                # A playbook's own template, named by path: load it with the same environment.
                try:
                    source = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    reason = getattr(exc, "strerror", None) or "not UTF-8 text"
                    raise RenderError(f"template {template}: {reason}") from None
                compiled = self.env.from_string(source)
            else:
                compiled = self.env.get_template(template)
            self._loaded[template] = compiled
        return compiled
