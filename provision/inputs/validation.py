"""Turn pydantic's validation errors into one clear sentence naming file, line and key.

The sentence quotes the offending value (never a secret's), and for an unknown key suggests
the nearest valid one, found by walking the model classes along the error's path.
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from typing import Any, NoReturn

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from provision.errors import InputError
from provision.inputs.yaml_lines import Document, PathKey, format_path

_SECRET_KEYS = frozenset({"password", "passphrase", "secret", "private_key"})
_MAX_QUOTE = 80


def raise_for(
    exc: ValidationError, doc: Document, model: type[BaseModel], *, suffix: str = ""
) -> NoReturn:
    """Raise an ``InputError`` for the most telling error of ``exc``."""
    raise describe(_first(exc.errors(include_url=False)), doc, model, suffix=suffix) from None


def _first(errors: list[ErrorDetails]) -> ErrorDetails:
    """The first error, except that a misspelt key beats the "missing" it causes.

    Pydantic lists a missing field before an unknown one; for ``nome: x`` the person needs
    "unknown key 'nome'; did you mean 'name'?", not "name: is required but missing".
    """
    missing = {(e["loc"][:-1], e["loc"][-1]) for e in errors if e["type"] == "missing" and e["loc"]}
    for error in errors:
        if error["type"] != "extra_forbidden" or not error["loc"]:
            continue
        parent, key = error["loc"][:-1], str(error["loc"][-1])
        siblings = [str(name) for where, name in missing if where == parent]
        if difflib.get_close_matches(key, siblings, n=1, cutoff=0.6):
            return error
    return errors[0]


def describe(
    error: ErrorDetails, doc: Document, model: type[BaseModel], *, suffix: str = ""
) -> InputError:
    path = data_path(error["loc"], doc.data)
    location = doc.locate(path)
    problem = _problem(error, path, model)
    return InputError(location, problem + suffix)


def data_path(loc: tuple[int | str, ...], data: Any) -> PathKey:
    """Pydantic's loc without the union tags it inserts, so it addresses the YAML data."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if _has(current, part):
            path.append(part)
            current = current[part]
        elif isinstance(current, dict | list):
            # A tag of a discriminated union ('self-signed', 'rsa', 'function-after[...]')
            # or a key that is missing: the latter is reported on its parent.
            if error_key_missing(part, current):
                path.append(part)
                break
            continue
        else:
            break
    return tuple(path)


def _has(container: Any, part: int | str) -> bool:
    if isinstance(container, dict):
        return part in container
    return isinstance(container, list) and isinstance(part, int) and 0 <= part < len(container)


def error_key_missing(part: int | str, current: Any) -> bool:
    return (
        isinstance(current, dict)
        and isinstance(part, str)
        and part not in current
        and (not _looks_like_tag(part))
    )


def _looks_like_tag(part: str) -> bool:
    """Whether a part of pydantic's error location names a union member rather than a key of
    the data: a source's or key's ``type`` tag, a model's class name, or a scalar type."""
    return "[" in part or part in _union_labels()


@functools.cache
def _union_labels() -> frozenset[str]:
    """Every label pydantic may put in a location for a union member, taken from the models
    themselves, so a new source or key type needs no entry here."""
    from provision.model.inventory import InventoryFile
    from provision.model.playbook import Playbook

    labels = {"str", "int", "float", "bool"}
    seen: set[type[BaseModel]] = set()

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        labels.add(model.__name__)
        tag = model.model_fields.get("type")
        if tag is not None:
            labels.update(str(value) for value in typing.get_args(tag.annotation))
        for field in model.model_fields.values():
            for member in _models_in(field.annotation):
                walk(member)
        for member in _models_in(_extra_annotation(model)):
            walk(member)

    walk(Playbook)
    walk(InventoryFile)
    return frozenset(labels)


def _problem(error: ErrorDetails, path: PathKey, model: type[BaseModel]) -> str:
    kind = error["type"]
    key = str(path[-1]) if path else ""
    if kind == "extra_forbidden":
        valid = sorted(_fields_at(model, error["loc"][:-1]))
        hint = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
        listing = f" (valid keys: {', '.join(valid)})" if valid and not hint else ""
        return f"unknown key {key!r}{suggestion}{listing}"
    if kind == "missing":
        return "is required but missing"
    message = _clean_message(error["msg"])
    if key in _SECRET_KEYS or isinstance(error.get("input"), SecretStr):
        return message
    value = error.get("input")
    if isinstance(value, dict | list) or value is None:
        return message
    if f"({value})" in message:
        return message  # the message already names the value
    return (
        f"{_quote(value)} {message}"
        if _reads_as_predicate(message)
        else (f"{message} (got {_quote(value)})")
    )


def _reads_as_predicate(message: str) -> bool:
    """Our own validators phrase problems as predicates: "'x' is neither ...", "'y' escapes"."""
    return message.split(" ", 1)[0] in {"is", "escapes", "must", "cannot"}


def _clean_message(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


def _quote(value: Any) -> str:
    if not isinstance(value, str | int | float | bool | list | dict | tuple | type(None)):
        # A template tool (a cycler, a namespace) or any other object: its kind, not a repr
        # with a memory address that changes on every run.
        return f"a {type(value).__name__} object"
    text = repr(value)
    return text if len(text) <= _MAX_QUOTE else text[: _MAX_QUOTE - 3] + "..."


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> set[str]:
    """The valid keys of whatever model sits at ``loc`` (union tags select the member)."""
    candidates: list[Any] = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        next_candidates: list[Any] = []
        for candidate in candidates:
            for member in _models_in(candidate):
                if part in member.model_fields:
                    next_candidates.extend(_models_in(member.model_fields[part].annotation))
                elif _tag_of(member) == part:
                    next_candidates.append(member)
                else:
                    # A key of a free-form mapping: a typed extra (the inventory's
                    # top-level groups) or a dict's key (``hosts.NAME``).
                    next_candidates.extend(_models_in(_extra_annotation(member)))
        if next_candidates:
            candidates = next_candidates
    fields: set[str] = set()
    for candidate in candidates:
        for member in _models_in(candidate):
            fields |= set(member.model_fields)
    return fields


def _extra_annotation(model: type[BaseModel]) -> Any:
    """The value type of a model's typed extra keys (``__pydantic_extra__: dict[str, X]``)."""
    try:
        hints = typing.get_type_hints(model)
    except (NameError, TypeError):  # pragma: no cover - unresolvable forward references
        return None
    args = typing.get_args(hints.get("__pydantic_extra__"))
    return args[1] if len(args) == 2 else None


def _tag_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    if field is None:
        return None
    args = typing.get_args(field.annotation)
    return str(args[0]) if args else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    found: list[type[BaseModel]] = []
    if origin in (typing.Union, types.UnionType, list, dict, tuple):
        for arg in typing.get_args(annotation):
            found.extend(_models_in(arg))
    return found


__all__ = ["data_path", "describe", "format_path", "raise_for"]
