"""The YAML loader: values with the line of every key, and refusals that name file:line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from provision.errors import InputError
from provision.inputs.yaml_lines import (
    MAX_DEPTH,
    MAX_NODES,
    Document,
    format_path,
    load_bytes,
    load_file,
    load_text,
)


def refusal(text: str | bytes, name: str = "f.yml") -> str:
    with pytest.raises(InputError) as caught:
        if isinstance(text, bytes):
            load_bytes(text, name)
        else:
            load_text(text, name)
    return str(caught.value)


DOC = """\
# a comment
name: x
certificates:
  - name: a
    names:
      - one.example.com
      - two.example.com
  - {name: b, names: [three.example.com]}
sites: []
"""


def test_values_are_plain_python() -> None:
    doc = load_text(DOC, "p.yml")
    assert doc.data == {
        "name": "x",
        "certificates": [
            {"name": "a", "names": ["one.example.com", "two.example.com"]},
            {"name": "b", "names": ["three.example.com"]},
        ],
        "sites": [],
    }
    assert doc.file == "p.yml"


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ((), 2),
        (("name",), 2),
        (("certificates",), 3),
        (("certificates", 0), 4),
        (("certificates", 0, "name"), 4),
        (("certificates", 0, "names"), 5),
        (("certificates", 0, "names", 0), 6),
        (("certificates", 0, "names", 1), 7),
        (("certificates", 1), 8),
        (("certificates", 1, "names", 0), 8),
        (("sites",), 9),
    ],
)
def test_every_path_has_the_line_a_person_looks_at(path: tuple[str | int, ...], line: int) -> None:
    assert load_text(DOC, "p.yml").line_of(path) == line


def test_a_path_without_a_line_falls_back_to_its_nearest_ancestor() -> None:
    doc = load_text(DOC, "p.yml")
    # A missing key (reported by validation) points at the mapping that lacks it.
    assert doc.line_of(("certificates", 0, "outputs")) == 4
    assert doc.line_of(("certificates", 7, "names")) == 3
    location = doc.locate(("certificates", 0, "outputs"))
    assert str(location) == "p.yml:4: certificates[0].outputs"


def test_format_path() -> None:
    assert format_path(("certificates", 0, "key", "size")) == "certificates[0].key.size"
    assert format_path(("a", 1, 2, "b")) == "a[1][2].b"
    assert format_path(()) == ""


def test_duplicate_key_names_both_lines() -> None:
    text = "a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n"
    assert refusal(text) == "f.yml:5: duplicate key 'c' (first at line 3)"


def test_duplicate_key_at_top_level() -> None:
    assert refusal("x: 1\ny: 2\nx: 3\n") == "f.yml:3: duplicate key 'x' (first at line 1)"


def test_malformed_yaml_names_the_line() -> None:
    assert refusal("a: 1\nb: @oops\n") == (
        "f.yml:2: malformed YAML: found character '@' that cannot start any token"
    )


def test_an_unclosed_bracket_names_where_it_was_opened() -> None:
    assert refusal("a: 1\nb: [1, 2\nc: 3\n") == (
        "f.yml:3: malformed YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence at line 2)"
    )


def test_not_utf8_names_the_line() -> None:
    assert refusal(b"a: 1\nb: 2\nc: caf\xe9\n") == "f.yml:3: is not valid UTF-8 text"


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        (
            "!!python/object/apply:os.system [echo hi]",
            "tag:yaml.org,2002:python/object/apply:os.system",
        ),
        ("!!python/name:os.system ''", "tag:yaml.org,2002:python/name:os.system"),
        ("!!set {a, b}", "tag:yaml.org,2002:set"),
        ("!vault {x: 1}", "!vault"),
    ],
)
def test_only_plain_tags(value: str, tag: str) -> None:
    """Tags on scalars and on collections alike: never dropped silently, never constructed."""
    assert refusal(f"a: 1\nb: {value}\n") == (
        f"f.yml:2: malformed YAML: could not determine a constructor for the tag {tag!r}"
    )


def test_standard_tags_are_fine() -> None:
    assert load_text("a: !!map {x: 1}\nb: !!seq [1]\nc: !!str 5\n", "f.yml").data == {
        "a": {"x": 1},
        "b": [1],
        "c": "5",
    }


def test_mapping_keys_must_be_scalars() -> None:
    assert refusal("ok: 1\n? [1, 2]\n: x\n") == (
        "f.yml:2: a mapping key must be a string or a number"
    )


def test_alias_bomb_is_refused_quickly() -> None:
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    previous = "a"
    for name in "bcdefghi":  # 10^9 values once expanded
        text += f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]\n"
        previous = name
    started = time.perf_counter()
    message = refusal(text)
    assert message == f"f.yml:1: more than {MAX_NODES} values (an alias bomb?); refused"
    assert time.perf_counter() - started < 5


def test_a_few_aliases_are_fine() -> None:
    doc = load_text("a: &a [1, 2]\nb: [*a, *a]\n", "f.yml")
    assert doc.data == {"a": [1, 2], "b": [[1, 2], [1, 2]]}


def test_nesting_is_bounded() -> None:
    deep = "a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    assert refusal(deep) == f"f.yml:1: nested deeper than {MAX_DEPTH} levels; refused"
    shallow = "a: " + "[" * 10 + "]" * 10 + "\n"
    assert load_text(shallow, "f.yml").data is not None


def test_merge_keys_explicit_wins_and_keeps_its_line() -> None:
    text = "base: &b {x: 1, y: 2}\nm:\n  y: 3\n  <<: *b\n"
    doc = load_text(text, "f.yml")
    assert doc.data["m"] == {"x": 1, "y": 3}
    # y is written at line 3 in m, even though the merge (after it) also brings a y.
    assert doc.line_of(("m", "y")) == 3
    # x comes from the anchor: its line is where it is written.
    assert doc.line_of(("m", "x")) == 1


def test_merge_key_before_explicit_keys() -> None:
    doc = load_text("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n", "f.yml")
    assert doc.data["m"] == {"x": 1, "y": 3}
    assert doc.line_of(("m", "y")) == 4


def test_merge_of_a_list_of_mappings() -> None:
    text = "a: &a {x: 1}\nb: &b {x: 2, y: 2}\nm:\n  <<: [*a, *b]\n"
    # The first mapping in the list wins, as YAML's merge key specifies.
    assert load_text(text, "f.yml").data["m"] == {"x": 1, "y": 2}


def test_merge_of_a_scalar_is_refused() -> None:
    assert refusal("a: &a 1\nm:\n  <<: *a\n") == (
        "f.yml:1: a merge key (<<) takes a mapping or a list of them"
    )


def test_empty_document() -> None:
    assert load_text("# only a comment\n", "f.yml") == Document("f.yml", None, {})


def test_load_file_refusals(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        load_file(tmp_path / "nope.yml", "nope.yml")
    assert str(caught.value) == "nope.yml: no such file"
    with pytest.raises(InputError) as caught:
        load_file(tmp_path, "folder")
    assert str(caught.value) == "folder: is a directory, expected a YAML file"


def test_load_file_refuses_huge_files_before_reading(tmp_path: Path) -> None:
    from provision.inputs import yaml_lines as loader

    big = tmp_path / "big.yml"
    with big.open("wb") as handle:
        handle.truncate(loader.MAX_FILE_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(InputError) as caught:
        load_file(big, "big.yml")
    assert str(caught.value) == (
        f"big.yml: file is {loader.MAX_FILE_BYTES + 1} bytes, larger than the "
        f"{loader.MAX_FILE_BYTES} allowed"
    )


def test_load_file_reads_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.yml"
    path.write_text(DOC)
    doc = load_file(path)
    assert doc.file == str(path)
    assert doc.line_of(("certificates", 0, "names", 1)) == 7
