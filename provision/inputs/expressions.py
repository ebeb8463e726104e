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
from jinja2.nativetypes import NativeCodeGenerator
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from provision.inputs.yaml_lines import PathKey

_MARKERS = ("{{", "{%", "{#")


def _concat(chunks: Iterator[Any]) -> Any:
    parts = list(chunks)
    if len(parts) == 1:
        if isinstance(parts[0], Undefined):
            # The native code generator hands back Undefined instead of failing; make
            # StrictUndefined fail here, as it would when turned into a string.
            str(parts[0])
        return parts[0]
    return "".join(str(part) for part in parts)


# The most characters or items one ``*`` may build, and bits one ``**`` may: a template like
# ``{{ 'x' * 10**12 }}`` would otherwise exhaust the controller's memory, ``{{ 9**9**9 }}``
# its CPU. Real playbooks and site templates never come near either.
MAX_PRODUCT = 1_000_000
MAX_POWER_BITS = 100_000


class BoundedOperators:
    """A sandbox mix-in that refuses ``*`` and ``**`` whose result would be enormous."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        check_operands(operator, left, right)
        return super().call_binop(context, operator, left, right)  # type: ignore[misc]


def check_operands(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for sequence, count in ((left, right), (right, left)):
            if (
                isinstance(sequence, str | bytes | list | tuple)
                and isinstance(count, int)
                and len(sequence) * count > MAX_PRODUCT
            ):
                raise SecurityError(
                    f"repeating a value {count} times would make more than {MAX_PRODUCT} items"
                )
    elif (
        operator == "**"
        and isinstance(left, int)
        and isinstance(right, int)
        and abs(left) > 1
        and right > 0
        and left.bit_length() * right > MAX_POWER_BITS
    ):
        raise SecurityError(f"{left} ** {right} is too large a number")


class RememberedSafety:
    """A sandbox mix-in that remembers which attribute names are safe on which type.

    jinja2.sandbox decides from the object's type and the name alone (a leading underscore,
    a function's or frame's internals, a mutating method of a known mutable type), yet asks
    on every ``a.b`` a template evaluates: a site template renders ~100 of them per host.
    """

    _safe_cache: dict[tuple[type, str], bool]

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        cache: dict[tuple[type, str], bool] = self.__dict__.setdefault("_safe_cache", {})
        key = (type(obj), attr)
        known = cache.get(key)
        if known is None:
            known = cache[key] = bool(super().is_safe_attribute(obj, attr, value))  # type: ignore[misc]
        return known


class _NativeSandbox(RememberedSafety, BoundedOperators, ImmutableSandboxedEnvironment):
    code_generator_class = NativeCodeGenerator
    concat = staticmethod(_concat)  # type: ignore[assignment]


_ENV = _NativeSandbox(undefined=StrictUndefined, keep_trailing_newline=True)


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
            return _concat(template.root_render_func(context))
        except UndefinedError as exc:
            raise TemplateFailure(path, source, f"undefined variable: {exc.message}") from None
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
