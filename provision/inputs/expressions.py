"""Evaluate a playbook's Jinja2 strings for one host.

- Sandboxed (user input must not reach Python internals) with StrictUndefined (a typo in a
  variable name is an error, not an empty string).
- Host variables are themselves templates (``certificates_dir: fleet/{{ host.name }}``), so
  they are evaluated lazily, on first use, with a guard against a variable that needs itself.
- A string that is one whole expression keeps its native type (``"{{ ports }}"`` -> a list),
  as in Ansible; anything else renders to a string.
- Each distinct string is compiled once per run, whatever the number of hosts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from provision.inputs.yaml_lines import PathKey
from provision.sandbox import (
    MAX_ITEMS,
    Bounded,
    BudgetExceeded,
    check_size,
    expression_budget,
    native_code_generator,
)

_MARKERS = ("{{", "{%", "{#")


def _concat(chunks: Iterator[Any]) -> Any:
    parts = []
    size = 0
    for chunk in chunks:
        parts.append(chunk)
        size += len(chunk) if isinstance(chunk, str) else 1
        if size > MAX_ITEMS:
            # Refused as it grows: a loop printing a large value each time must not fill the
            # controller's memory before the iteration or time budget notices.
            raise BudgetExceeded(f"the value would be larger than {MAX_ITEMS:,} characters")
    if len(parts) == 1:
        if isinstance(parts[0], Undefined):
            # The native code generator hands back Undefined instead of failing; make
            # StrictUndefined fail here, as it would when turned into a string.
            str(parts[0])
        return parts[0]
    return "".join(str(part) for part in parts)


class _NativeSandbox(Bounded, ImmutableSandboxedEnvironment):
    code_generator_class = native_code_generator()
    concat = staticmethod(_concat)  # type: ignore[assignment]


_ENV = _NativeSandbox(undefined=StrictUndefined, keep_trailing_newline=True)
_ENV.apply_budget()


@lru_cache(maxsize=4096)
def _compile(source: str) -> Any:
    return _ENV.from_string(source)


class TemplateFailure(Exception):
    """A string failed to evaluate; ``path`` says where in the document it sits."""

    def __init__(
        self, path: PathKey, source: str, problem: str, cycle: SelfReference | None = None
    ) -> None:
        super().__init__(problem)
        self.path = path
        self.source = source
        self.problem = problem
        self.cycle = cycle


class SelfReference(TemplateError):
    """A host variable that needs itself; reported once, with the whole chain."""


class _InVariable(TemplateError):
    """A host variable failed to evaluate; its message already says why."""


@dataclass(frozen=True)
class HostView:
    """What ``host`` means inside a template."""

    name: str
    address: str
    fqdn: str | None
    groups: tuple[str, ...]


class HostVariables(Mapping[str, Any]):
    """Host variables, each evaluated the first time a template asks for it."""

    def __init__(self, raw: Mapping[str, Any], host: HostView) -> None:
        self._raw = raw
        self._done: dict[str, Any] = {"host": host}
        self._resolving: list[str] = []

    def __getitem__(self, key: str) -> Any:
        if key in self._done:
            return self._done[key]
        if key not in self._raw:
            if key in _ENV.globals:
                return _ENV.globals[key]
            raise KeyError(key)
        if key in self._resolving:
            chain = " -> ".join([*self._resolving, key])
            raise SelfReference(f"variable {key!r} refers to itself ({chain})")
        self._resolving.append(key)
        try:
            value = self.evaluate(self._raw[key], ())
        except TemplateFailure as failure:
            if failure.cycle is not None:
                # Not "in variable 'a': in variable 'b': ...": the chain already says it all.
                raise failure.cycle from None
            raise _InVariable(f"in variable {key!r}: {failure.problem}") from None
        finally:
            self._resolving.pop()
        self._done[key] = value
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._done or key in self._raw or key in _ENV.globals

    def __iter__(self) -> Iterator[str]:
        return iter({**self._raw, **self._done})

    def __len__(self) -> int:
        return len({**self._raw, **self._done})

    def evaluate(self, value: Any, path: PathKey) -> Any:
        """Evaluate every string inside ``value`` (dicts and lists walked recursively)."""
        if isinstance(value, str):
            return self._render(value, path) if any(m in value for m in _MARKERS) else value
        if isinstance(value, dict):
            # A literal password is a secret, not a template: evaluating it would change it
            # ({# ... #}) and quote it in errors.
            return {
                k: v if k == "password" and isinstance(v, str) else self.evaluate(v, (*path, k))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.evaluate(v, (*path, i)) for i, v in enumerate(value)]
        return value

    def _render(self, source: str, path: PathKey) -> Any:
        try:
            template = _compile(source)
            context = _HostContext(_ENV, self, template.name, template.blocks)
            with expression_budget():
                value = check_size(_concat(template.root_render_func(context)))
        except UndefinedError as exc:
            raise TemplateFailure(path, source, f"undefined variable: {exc.message}") from None
        except BudgetExceeded as exc:
            raise TemplateFailure(path, source, f"template error: too costly: {exc}") from None
        except SecurityError as exc:
            raise TemplateFailure(path, source, f"not allowed in a template: {exc}") from None
        except SelfReference as exc:
            raise TemplateFailure(path, source, str(exc.message), cycle=exc) from None
        except _InVariable as exc:
            raise TemplateFailure(path, source, str(exc.message)) from None
        except TemplateError as exc:
            raise TemplateFailure(path, source, f"template error: {exc.message}") from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise TemplateFailure(path, source, f"template error: {exc}") from None
        except RecursionError:
            raise TemplateFailure(path, source, "template error: recursion too deep") from None
        except MemoryError:
            raise TemplateFailure(path, source, "template error: out of memory") from None
        except Exception as exc:
            # (`truncate(-5)` asserts, `xmlattr` on a string reads .items()): its words, with
            # the line, never a traceback.
            problem = str(exc) or type(exc).__name__
            raise TemplateFailure(path, source, f"template error: {problem}") from None
        return value


class _HostContext(Context):
    """A Jinja2 context whose variables come from ``HostVariables`` without copying them."""

    def __init__(self, env: Any, variables: HostVariables, name: str | None, blocks: Any) -> None:
        super().__init__(env, {}, name, blocks)
        self._variables = variables

    def resolve_or_missing(self, key: str) -> Any:
        if key in self.vars:
            return self.vars[key]
        try:
            return self._variables[key]
        except KeyError:
            from jinja2.utils import missing

            return missing
