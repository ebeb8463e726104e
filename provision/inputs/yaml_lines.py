"""YAML with line numbers: every value's path maps to the line a person would look at.

We compose PyYAML's node graph ourselves instead of calling ``safe_load`` so that we can:
- remember the line of every key (errors name ``file:line``);
- refuse duplicate keys, which ``safe_load`` silently lets the last one win;
- bound the work an alias graph can cause (billion laughs) and the nesting depth;
- refuse files that are too large or not UTF-8 before parsing anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provision.errors import InputError, Location
from provision.inputs.files import IsDirectory, UnreadableFile, read_regular
from provision.inputs.manifest import Manifest, read
from provision.inputs.vault import Vaulted

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64

PathKey = tuple[str | int, ...]

_PLAIN_COLLECTIONS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


@dataclass(frozen=True)
class Document:
    """A parsed YAML file: its data and the line of each path inside it."""

    file: str
    data: Any
    lines: Mapping[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def locate(self, path: PathKey) -> Location:
        return Location(self.file, self.line_of(path), format_path(path) or None)


def format_path(path: PathKey) -> str:
    """``('certificates', 0, 'key', 'size')`` -> ``certificates[0].key.size``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def load_file(path: Path, display: str | None = None, reads: Manifest | None = None) -> Document:
    name = display or str(path)
    read(reads, path)
    try:
        raw = read_regular(path, MAX_FILE_BYTES)
    except IsDirectory:
        raise InputError(Location(name), "is a directory, expected a YAML file") from None
    except UnreadableFile as exc:
        raise InputError(Location(name), str(exc)) from None
    return load_bytes(raw, name)


def load_bytes(raw: bytes, name: str) -> Document:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(Location(name, line), "is not valid UTF-8 text") from None
    return load_text(text, name)


# libyaml's parser, when PyYAML was built with it: 10-20x faster on a large inventory.
_FAST_LOADER = getattr(yaml, "CSafeLoader", None)


def load_text(text: str, name: str) -> Document:
    if _FAST_LOADER is not None:
        fast = _FAST_LOADER(text)
        try:
            node = fast.get_single_node()
            if node is None:
                return Document(name, None, {})
            builder = _Builder(name, fast)
            return Document(name, builder.build(node, (), 0), builder.lines)
        except (yaml.YAMLError, RecursionError):
            pass  # the pure-Python parser below says what is wrong, with its own words
        finally:
            fast.dispose()
    try:
        # The reader refuses control characters as soon as it is made, before any mark exists.
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, name) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "malformed YAML"
        context = exc.context_mark
        if exc.problem and exc.context and context is not None and context.line + 1 != line:
            # "expected ',' or '}'" is found on the line after the brace left open: say
            # where that brace is, so the person looks at the right line too.
            problem += f" ({exc.context} at line {context.line + 1})"
        raise InputError(Location(name, line), f"malformed YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:  # pragma: no cover - the reader checks it all at once
        raise _reader_error(exc, text, name) from None
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML always marks its errors
        raise InputError(Location(name), f"malformed YAML: {exc}") from None
    except RecursionError:
        raise InputError(Location(name), "malformed YAML: nested too deeply") from None
    finally:
        loader.dispose()
    if node is None:
        return Document(name, None, {})
    builder = _Builder(name, loader)
    data = builder.build(node, (), 0)
    return Document(name, data, builder.lines)


def _reader_error(exc: yaml.reader.ReaderError, text: str, name: str) -> InputError:
    """A character YAML does not allow (NUL, other control characters, U+FFFE...)."""
    line = text[: exc.position].count("\n") + 1 if isinstance(exc.position, int) else None
    return InputError(
        Location(name, line),
        f"malformed YAML: character #x{exc.character:04X} "
        "is not allowed in YAML (a control character?)",
    )


class _Builder:
    """Turns a composed node graph into plain Python data, recording lines."""

    def __init__(self, name: str, loader: yaml.SafeLoader) -> None:
        self.name = name
        self.loader = loader
        self.lines: dict[PathKey, int] = {}
        self.nodes = 0

    def _fail(self, node: yaml.Node, problem: str) -> InputError:
        return InputError(Location(self.name, node.start_mark.line + 1), problem)

    def build(self, node: yaml.Node, path: PathKey, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self._fail(node, f"more than {MAX_NODES} values (an alias bomb?); refused")
        if depth > MAX_DEPTH:
            raise self._fail(node, f"nested deeper than {MAX_DEPTH} levels; refused")
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.CollectionNode) and node.tag not in _PLAIN_COLLECTIONS:
            # We build collections ourselves, so a tag on one (``!!python/object/apply``,
            # ``!!set``, ``!vault``) would be dropped without a word; refuse it as safe_load does.
            raise self._fail(
                node, f"malformed YAML: could not determine a constructor for the tag {node.tag!r}"
            )
        if isinstance(node, yaml.ScalarNode) and node.tag == "!vault":
            # Kept encrypted, with its place: the inventory decrypts it when a password is
            # given, and a wrong one is an error naming this line.
            return Vaulted(str(node.value), Location(self.name, node.start_mark.line + 1))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise self._fail(node, f"malformed YAML: {exc.problem}") from None
        except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError) as exc:
            # PyYAML's constructors trust the resolver: ``2024-02-30`` (a date by its shape),
            # ``!!int abc`` or ``!!bool maybe`` fail inside them with Python's own errors.
            raise self._fail(node, _unreadable(node, exc)) from None

    def _mapping(self, node: yaml.MappingNode, path: PathKey, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        merged_lines: dict[PathKey, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                # Merged values keep the lines where they are written (the anchor), but
                # never over an explicit key's, wherever the ``<<`` sits in the mapping.
                outer, self.lines = self.lines, {}
                try:
                    merged.update(self._merge_sources(value_node, path, depth))
                finally:
                    merged_lines.update(self.lines)
                    self.lines = outer
                continue
            key = self.build(key_node, path, depth + 1)
            if not isinstance(key, str | int):
                raise self._fail(key_node, "a mapping key must be a string or a number")
            if key in result:
                raise self._fail(
                    key_node,
                    f"duplicate key {key!r} (first at line {self.lines[(*path, key)]})",
                )
            self.lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, (*path, key), depth + 1)
        for where, line in merged_lines.items():
            if len(where) > len(path) and where[len(path)] not in result:
                self.lines.setdefault(where, line)
        # Explicit keys win over merged ones, as YAML's merge key specifies.
        return {**merged, **result}

    def _merge_sources(self, node: yaml.Node, path: PathKey, depth: int) -> dict[Any, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[Any, Any] = {}
        for source in reversed(sources):
            value = self.build(source, path, depth + 1)
            if not isinstance(value, dict):
                raise self._fail(source, "a merge key (<<) takes a mapping or a list of them")
            merged.update(value)
        return merged


def _unreadable(node: yaml.Node, exc: Exception) -> str:
    kind = str(node.tag).rsplit(":", 1)[-1].replace("timestamp", "date")
    value = node.value if isinstance(node.value, str) else ""
    shown = repr(value) if len(value) <= 60 else repr(value[:57]) + "..."
    # Only a date's reason reads well ("day is out of range for month"); int()'s does not.
    why = f" ({exc})" if kind == "date" and isinstance(exc, ValueError) else ""
    hint = "; quote it if it is text" if node.tag.startswith("tag:yaml.org,2002:") else ""
    return f"malformed YAML: {shown} is not a valid {kind}{why}{hint}"
