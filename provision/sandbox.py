"""What both Jinja2 sandboxes share: playbook strings (inputs/expressions.py) and site config
templates (servers/render.py) are written by people, so evaluating them must be bounded.

jinja2.sandbox keeps a template away from Python's internals, but not from the controller's
CPU and memory: nested loops, a filter asked for a hundred million items, or a string padded
to a gigabyte run for minutes or exhaust memory, and nothing can interrupt them. Each
evaluation here has a budget:

- at most ``MAX_ITERATIONS`` loop iterations per expression or template (every ``{% for %}``
  counts, nested ones multiply);
- no value larger than ``MAX_ITEMS`` characters or items from a filter, a call or a ``*``;
  no integer argument to a filter or a call above it either (a width, a count, a size);
- at most ``SECONDS`` of wall-clock time for one host's evaluation (the whole playbook) or
  one rendered config, checked as loops run and values are made.

A template over budget fails with its file, line and the rule it broke, like any other
template error. Real playbooks and site templates never come near any of these.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS as DEFAULT_FILTERS
from jinja2.nativetypes import NativeCodeGenerator
from jinja2.runtime import Context
from jinja2.sandbox import safe_range

MAX_ITERATIONS = 1_000_000
MAX_ITEMS = 1_000_000
SECONDS = 10.0
# ``*`` and ``**``: the most characters or items one ``*`` may build, and bits one ``**`` may
# (``{{ 'x' * 10**12 }}``, ``{{ 9**9**9 }}``).
MAX_PRODUCT = MAX_ITEMS
MAX_POWER_BITS = 100_000

# The filter every ``{% for %}`` iterable is passed through (see _CountedLoops).
COUNTED = "provision_counted"


class BudgetExceeded(TemplateError):
    """A template asked for more than its evaluation budget allows."""


@dataclass
class _Budget:
    deadline: float
    iterations: int = 0


_current: ContextVar[_Budget | None] = ContextVar("provision_template_budget", default=None)


@contextlib.contextmanager
def time_budget() -> Iterator[None]:
    """The wall-clock budget of one evaluation (a host's playbook, a rendered config). Nested
    budgets keep the earlier deadline."""
    outer = _current.get()
    deadline = time.monotonic() + SECONDS
    if outer is not None:
        deadline = min(deadline, outer.deadline)
    token = _current.set(_Budget(deadline))
    try:
        yield
    finally:
        _current.reset(token)


@contextlib.contextmanager
def expression_budget() -> Iterator[None]:
    """A fresh count of loop iterations for one expression or template, within the deadline
    of the evaluation around it (or a deadline of its own)."""
    outer = _current.get()
    deadline = outer.deadline if outer is not None else time.monotonic() + SECONDS
    token = _current.set(_Budget(deadline))
    try:
        yield
    finally:
        _current.reset(token)


def _over_time(budget: _Budget) -> None:
    if time.monotonic() > budget.deadline:
        raise BudgetExceeded(f"evaluation took longer than {SECONDS:g} seconds")


def _count(items: Iterable[Any]) -> Iterator[Any]:
    budget = _current.get()
    for item in items:
        if budget is not None:
            budget.iterations += 1
            if budget.iterations > MAX_ITERATIONS:
                raise BudgetExceeded(f"more than {MAX_ITERATIONS:,} loop iterations")
            if budget.iterations % 1024 == 0:
                _over_time(budget)
        yield item


def check_size(value: Any) -> Any:
    """``value`` unchanged, unless it is a string or collection larger than the budget. (The
    clock is looked at where time can pile up, in loops and growing output, not here: this
    runs for every filter and call a template makes.)"""
    if isinstance(value, str | bytes | list | tuple | dict | set) and len(value) > MAX_ITEMS:
        raise BudgetExceeded(
            f"a value of {len(value):,} characters or items (at most {MAX_ITEMS:,})"
        )
    return value


def _check_arguments(args: Iterable[Any], kwargs: Mapping[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ITEMS:
            raise BudgetExceeded(f"an argument of {value:.3g} is too large (at most {MAX_ITEMS:,})")


def bounded_filter(function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose extra arguments and result are held to the budget (the value it filters
    may be anything the template already holds)."""
    # Filters marked pass_context/pass_environment get that first, then the value.
    pass_arg = getattr(function, "jinja_pass_arg", None)
    free = 2 if pass_arg is not None else 1

    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_arguments(args[free:], kwargs)
        return check_size(function(*args, **kwargs))

    if pass_arg is not None:
        bounded.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return bounded


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


class _CountedLoops(CodeGenerator):
    """Passes every ``{% for %}`` iterable through the counting filter, so loops spend the
    budget however they nest. (The tree is rewritten before any code is generated: the
    generator collects the filters a template uses first.)"""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in node.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, COUNTED, [], [], None, None, lineno=loop.lineno)
        super().visit_Template(node, frame)


class _CountedNativeLoops(_CountedLoops, NativeCodeGenerator):
    """The same for the native environment (playbook strings keep their Python types)."""


class Bounded:
    """A sandbox mix-in: the budget above for loops, filters, calls and ``*``/``**``, and
    attribute-safety answers remembered per type and name.

    jinja2.sandbox decides an attribute's safety from the object's type and the name alone,
    yet asks on every ``a.b`` a template evaluates: a site template renders ~100 of them per
    host.
    """

    intercepted_binops = frozenset({"*", "**"})
    _safe_cache: dict[tuple[type, str], bool]

    def apply_budget(self) -> None:
        """Hold every filter to the budget and add the loop counter; call once, after the
        environment's own filters are registered."""
        filters: dict[str, Any] = self.filters  # type: ignore[attr-defined]
        for name, function in list(filters.items()):
            # Jinja2's own filters take sizes and counts (center, indent, slice, batch...);
            # provision's quoting filters take none and are called ~60 times a host: left bare.
            default = DEFAULT_FILTERS.get(name)
            if default is not None and function is default:
                filters[name] = bounded_filter(default)
        filters[COUNTED] = _count
        # lipsum(n) writes n paragraphs of filler in one uninterruptible call, and no config
        # or playbook has a use for it.
        globals_: dict[str, Any] = self.globals  # type: ignore[attr-defined]
        globals_.pop("lipsum", None)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        check_operands(operator, left, right)
        return super().call_binop(context, operator, left, right)  # type: ignore[misc]

    def call(self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if __obj is not safe_range:  # (range has a bound of its own: "Range too big")
            _check_arguments(args, kwargs)
        return check_size(super().call(__context, __obj, *args, **kwargs))  # type: ignore[misc]

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        cache: dict[tuple[type, str], bool] = self.__dict__.setdefault("_safe_cache", {})
        key = (type(obj), attr)
        known = cache.get(key)
        if known is None:
            known = cache[key] = bool(super().is_safe_attribute(obj, attr, value))  # type: ignore[misc]
        return known


def native_code_generator() -> type[CodeGenerator]:
    return _CountedNativeLoops


def code_generator() -> type[CodeGenerator]:
    return _CountedLoops


def bounded_join(chunks: Iterable[Any]) -> str:
    """``"".join`` for a rendered config, refusing output past the budget as it grows (in
    slices of chunks, so the check costs next to nothing per chunk)."""
    parts: list[str] = []
    size = 0
    remaining = iter(chunks)
    while batch := list(itertools.islice(remaining, 256)):
        text = "".join(batch)
        size += len(text)
        if size > MAX_ITEMS * 4:
            raise BudgetExceeded(f"the output would be larger than {MAX_ITEMS * 4:,} characters")
        parts.append(text)
    return "".join(parts)
