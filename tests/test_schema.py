"""`provision schema`: JSON Schemas that accept every real file and refuse broken ones.

Judged by the `jsonschema` package (Draft 2020-12), an implementation independent of pydantic.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Cli
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.exceptions import best_match

from provision.inputs.schema import DRAFT, TEMPLATE_REF, dumps, inventory_schema, playbook_schema
from provision.inputs.yaml_lines import load_file


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    from provision.cli import app
    from provision.cli.review import register

    register(app)


@pytest.fixture(scope="module")
def playbook_validator() -> Draft202012Validator:
    return Draft202012Validator(playbook_schema())


@pytest.fixture(scope="module")
def inventory_validator() -> Draft202012Validator:
    return Draft202012Validator(inventory_schema())


def _repo_files() -> Iterator[tuple[str, Path]]:
    """Every playbook and inventory in the repository, with its kind."""
    for path in sorted((ROOT / "playbooks").glob("*.y*ml")):
        yield "playbook", path
    for path in sorted((ROOT / "inventory").glob("*.y*ml")):
        yield "inventory", path
    data = ROOT / "tests" / "data"
    for path in sorted(data.rglob("*.y*ml")) if data.is_dir() else []:
        parts = path.relative_to(data).parts
        if "group_vars" in parts or "host_vars" in parts:
            continue  # plain variable mappings, not inventories
        if "playbooks" in parts:
            yield "playbook", path
        elif "inventories" in parts:
            yield "inventory", path


REPO_FILES = list(_repo_files())


def _errors(validator: Draft202012Validator, data: Any) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)
    ]


def test_the_repository_has_files_to_check() -> None:
    kinds = {kind for kind, _ in REPO_FILES}
    assert kinds == {"playbook", "inventory"}
    assert sum(1 for kind, _ in REPO_FILES if kind == "playbook") >= 2


@pytest.mark.parametrize(
    ("kind", "path"), REPO_FILES, ids=[str(p.relative_to(ROOT)) for _, p in REPO_FILES]
)
def test_every_repository_file_validates(
    kind: str,
    path: Path,
    playbook_validator: Draft202012Validator,
    inventory_validator: Draft202012Validator,
) -> None:
    if kind == "inventory":
        from provision.errors import ProvisionError
        from provision.inputs.inventory import load_inventory

        try:
            load_inventory(path)
        except ProvisionError as exc:  # a fixture meant to be refused: not ours to judge
            pytest.skip(f"provision itself refuses it: {exc.message}")
    validator = playbook_validator if kind == "playbook" else inventory_validator
    assert _errors(validator, load_file(path).data) == []


def test_schemas_are_valid_2020_12_and_read_the_same_in_draft_07() -> None:
    for schema in (playbook_schema(), inventory_schema()):
        Draft202012Validator.check_schema(schema)
        # The YAML language server implements draft-07: no keyword whose meaning changed
        # (a $ref with siblings, which draft-07 ignores; prefixItems; $dynamicRef).
        Draft7Validator.check_schema({k: v for k, v in schema.items() if k != "$schema"})
        for node in _walk(schema):
            if "$ref" in node:
                assert set(node) == {"$ref"}, node
            assert not {"prefixItems", "$dynamicRef", "unevaluatedProperties"} & set(node)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def test_draft_07_validator_agrees_on_the_example() -> None:
    data = load_file(ROOT / "playbooks" / "callmanager-https.yml").data
    validator = Draft7Validator({k: v for k, v in playbook_schema().items() if k != "$schema"})
    assert list(validator.iter_errors(data)) == []
    broken = copy.deepcopy(data)
    broken["sites"][0]["bindings"][0]["port"] = "abc"
    assert list(validator.iter_errors(broken))


def test_headers() -> None:
    for schema, name in ((playbook_schema(), "playbook"), (inventory_schema(), "inventory")):
        assert schema["$schema"] == DRAFT == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].endswith(f"/{name}.schema.json")
        assert schema["title"] == f"provision {name}"
        assert schema["description"]


def test_output_is_deterministic_and_sorted() -> None:
    first, second = dumps(playbook_schema()), dumps(playbook_schema())
    assert first == second
    assert (
        first == json.dumps(json.loads(first), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )
    assert dumps(inventory_schema()) == dumps(inventory_schema())


# --- the playbook schema refuses what is broken --------------------------------------------


def _example() -> dict[str, Any]:
    data = load_file(ROOT / "playbooks" / "callmanager-https.yml").data
    assert isinstance(data, dict)
    return data


def _set(data: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(data)
    node: Any = changed
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return changed


def _drop(data: dict[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
    changed = copy.deepcopy(data)
    node: Any = changed
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return changed


CERT = ("certificates", 0)
BINDING = ("sites", 0, "bindings", 0)

BROKEN_PLAYBOOKS = {
    "unknown top-level key": lambda d: _set(d, ("nmae",), "x"),
    "unknown certificate key": lambda d: _set(d, (*CERT, "validity"), 30),
    "unknown binding key": lambda d: _set(d, (*BINDING, "prot"), 443),
    "port abc": lambda d: _set(d, (*BINDING, "port"), "abc"),
    "port out of range": lambda d: _set(d, (*BINDING, "port"), 70000),
    "missing name": lambda d: _drop(d, ("name",)),
    "missing certificates_dir": lambda d: _drop(d, ("certificates_dir",)),
    "missing outputs": lambda d: _drop(d, (*CERT, "outputs")),
    "reload not a boolean": lambda d: _set(d, ("sites", 0, "reload"), "sometimes"),
    "unknown source shorthand": lambda d: _set(d, (*CERT, "source"), "self-made"),
    "source ca as shorthand": lambda d: _set(d, (*CERT, "source"), "ca"),
    "unknown key type": lambda d: _set(d, (*CERT, "key"), {"type": "dsa"}),
    "rsa 1024": lambda d: _set(d, (*CERT, "key"), {"type": "rsa", "size": 1024}),
    "unknown output format": lambda d: _set(d, (*CERT, "outputs", 0, "format"), "jks"),
    "names not a list": lambda d: _set(d, (*CERT, "names"), {"a": 1}),
    "certificate name with a space": lambda d: _set(d, (*CERT, "name"), "my cert"),
    "country of three letters": lambda d: _set(d, (*CERT, "subject", "country"), "USA"),
    "virtual directory without slash": lambda d: _set(
        d, ("sites", 0, "virtual_directories", 0, "path"), "CCMAdmin"
    ),
    "password with env and file": lambda d: _set(
        d, (*CERT, "outputs", 0, "password"), {"env": "A", "file": "b"}
    ),
    "password reference empty": lambda d: _set(d, (*CERT, "outputs", 0, "password"), {}),
    "certificates not a list": lambda d: _set(d, ("certificates",), {"name": "x"}),
    "a plain string where a number goes": lambda d: _set(d, ("backups",), "five"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_PLAYBOOKS))
def test_broken_playbooks_are_refused(case: str, playbook_validator: Draft202012Validator) -> None:
    example = _example()
    assert _errors(playbook_validator, example) == []
    assert _errors(playbook_validator, BROKEN_PLAYBOOKS[case](example))


def test_the_best_error_names_the_key(playbook_validator: Draft202012Validator) -> None:
    # Templates add an anyOf at each level; the most relevant error is still the key's own.
    best = best_match(playbook_validator.iter_errors(_set(_example(), (*BINDING, "port"), "abc")))
    assert best is not None
    assert list(best.absolute_path) == ["sites", 0, "bindings", 0, "port"]
    assert "'abc'" in best.message
    errors = _errors(playbook_validator, _drop(_example(), ("name",)))
    assert errors == [": 'name' is a required property"]


# --- and accepts templates where the model will see a number, list or object ---------------

TEMPLATED = {
    "port": ((*BINDING, "port"), "{{ https_port }}"),
    "boolean": (("sites", 0, "reload"), "{{ reload_sites }}"),
    "names list": ((*CERT, "names"), "{{ certificate_names }}"),
    "a whole key": ((*CERT, "key"), "{{ key_spec }}"),
    "key size": ((*CERT, "key", "size"), "{{ rsa_bits }}"),
    "enum": ((*BINDING, "protocol"), "{% if tls %}https{% else %}http{% endif %}"),
    "pattern": ((*CERT, "name"), "{{ cert_name }}"),
    "validity": ((*CERT, "validity_days"), "{{ 365 + 32 }}"),
    "list item": (("certificates", 1), "{{ extra_certificate }}"),
    "backups": (("backups",), "{# kept for audits #}{{ backups }}"),
}


@pytest.mark.parametrize("case", sorted(TEMPLATED))
def test_templates_are_accepted(case: str, playbook_validator: Draft202012Validator) -> None:
    path, value = TEMPLATED[case]
    data = _example()
    if path == ("certificates", 1):
        data["certificates"].append(value)
    else:
        data = _set(data, path, value)
    assert _errors(playbook_validator, data) == []


def test_source_shorthand_and_objects(playbook_validator: Draft202012Validator) -> None:
    for source in (
        "self-signed",
        {"type": "self-signed"},
        {"type": "ca", "authority": "r"},
        {"type": "provided", "certificate": "files/a.cer", "key": "files/a.key"},
    ):
        assert _errors(playbook_validator, _set(_example(), (*CERT, "source"), source)) == []
    assert _errors(
        playbook_validator, _set(_example(), (*CERT, "source"), {"type": "ca"})
    )  # no authority


def test_passwords(playbook_validator: Draft202012Validator) -> None:
    where = (*CERT, "outputs", 0, "password")
    for password in ({"env": "PFX_PASSWORD"}, {"file": "secrets/pfx"}, "literal"):
        assert _errors(playbook_validator, _set(_example(), where, password)) == []
    literal = next(
        b
        for node in _walk(playbook_schema())
        for b in node.get("anyOf", [])
        if b.get("format") == "password"
    )
    assert literal["deprecated"] is True
    assert "provision lint" in literal["description"]


def test_every_non_string_value_takes_a_template() -> None:
    """No value position of the playbook schema refuses "{{ x }}" (the root excepted)."""
    schema = playbook_schema()
    validator = Draft202012Validator(schema)
    template = "{{ x }}"
    for name, body in schema["$defs"].items():
        if name == "Template":
            continue
        for key, prop in body.get("properties", {}).items():
            sub = {"$defs": schema["$defs"], **prop}
            assert Draft202012Validator(sub).is_valid(template), f"{name}.{key}"
    assert not validator.is_valid(template)  # a playbook is a mapping


def test_verify_shorthand(playbook_validator: Draft202012Validator) -> None:
    for verify in (True, False, {}, {"port": 8443}, "{{ verify_sites }}"):
        changed = _set(_example(), ("sites", 0, "verify"), verify)
        assert _errors(playbook_validator, changed) == [], verify
    assert _errors(playbook_validator, _set(_example(), ("sites", 0, "verify"), "yes"))


# --- every field is described, from the models ------------------------------------------------


def _properties(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(where, key, property) for every property anywhere in the schema."""
    for node in _walk(schema):
        for key, prop in node.get("properties", {}).items():
            yield node.get("title", "(top level)"), key, prop


@pytest.mark.parametrize("kind", ["playbook", "inventory"])
def test_every_property_has_a_description(kind: str) -> None:
    schema = playbook_schema() if kind == "playbook" else inventory_schema()
    missing = [
        f"{where}.{key}"
        for where, key, prop in _properties(schema)
        if not str(prop.get("description", "")).strip()
    ]
    assert missing == [], f"fields without a description: {', '.join(missing)}"
    undescribed = [
        name
        for name, body in schema["$defs"].items()
        if body.get("type") == "object" and not body.get("description")
    ]
    assert undescribed == [], f"definitions without a description: {', '.join(undescribed)}"


def test_descriptions_come_from_the_models() -> None:
    """The schema says what the model's field docstrings say (one line each), so the text an
    editor shows cannot drift from the code."""
    from pydantic import BaseModel

    import provision.model.inventory as inventory_models
    import provision.model.playbook as playbook_models

    schemas = {playbook_models: playbook_schema(), inventory_models: inventory_schema()}
    checked = 0
    for module, schema in schemas.items():
        for name, body in schema["$defs"].items():
            model = getattr(module, name, None)
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                continue
            for key, prop in body.get("properties", {}).items():
                description = model.model_fields[key].description
                assert description, f"{name}.{key} has no description in the model"
                assert prop["description"] == " ".join(description.split()), f"{name}.{key}"
                checked += 1
    assert checked > 60


def test_descriptions_are_one_line() -> None:
    for schema in (playbook_schema(), inventory_schema()):
        for node in _walk(schema):
            description = node.get("description")
            if isinstance(description, str):
                assert description == " ".join(description.split()), description


# --- the inventory schema ------------------------------------------------------------------


def _inventory() -> dict[str, Any]:
    data = load_file(ROOT / "inventory" / "example.yml").data
    assert isinstance(data, dict)
    return data


HOSTS = ("all", "children", "callmanager", "hosts")

BROKEN_INVENTORIES = {
    "unknown group key": lambda d: _set(d, ("all", "hostz"), {}),
    "unknown key in a top-level group": lambda d: {**d, "web": {"host": {"a": None}}},
    "top-level group not a mapping": lambda d: {**d, "web": ["a", "b"]},
    "hosts as a list": lambda d: _set(d, ("all", "hosts"), ["a", "b"]),
    "connection telnet": lambda d: _set(d, ("all", "vars", "connection"), "telnet"),
    "ansible_connection telnet": lambda d: _set(
        d, (*HOSTS, "cm-pub-01", "ansible_connection"), "telnet"
    ),
    "os macos": lambda d: _set(d, (*HOSTS, "cm-pub-01", "os"), "macos"),
    "port abc": lambda d: _set(d, (*HOSTS, "cm-pub-01", "port"), "abc"),
    "ansible_port 0": lambda d: _set(d, (*HOSTS, "cm-pub-01", "ansible_port"), 0),
    "become maybe": lambda d: _set(d, ("all", "vars", "become"), "maybe"),
    "vars a list": lambda d: _set(d, ("all", "vars"), ["a"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN_INVENTORIES))
def test_broken_inventories_are_refused(
    case: str, inventory_validator: Draft202012Validator
) -> None:
    assert _errors(inventory_validator, _inventory()) == []
    assert _errors(inventory_validator, BROKEN_INVENTORIES[case](_inventory()))


def test_inventory_variables_stay_free_form(inventory_validator: Draft202012Validator) -> None:
    data = _set(_inventory(), ("all", "vars", "anything"), {"nested": [1, 2, {"x": None}]})
    data = _set(data, (*HOSTS, "cm-pub-01", "ansible_user"), "admin")
    data["web"] = {"hosts": {"www-01": None}, "vars": None}
    assert _errors(inventory_validator, data) == []


def test_inventory_is_not_templated() -> None:
    # Host keys are read as written (provision.inputs.inventory does not evaluate them), so a
    # template where a number goes is refused here as it is by the model.
    schema = inventory_schema()
    assert TEMPLATE_REF not in json.dumps(schema)
    data = _set(_inventory(), (*HOSTS, "cm-pub-01", "port"), "{{ ssh_port }}")
    assert not Draft202012Validator(schema).is_valid(data)


# --- the command -----------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def test_schema_prints_the_playbook_schema_by_default(cli: Cli) -> None:
    result = cli("schema")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == dumps(playbook_schema())
    assert json.loads(result.stdout)["title"] == "provision playbook"


def test_schema_kind_inventory(cli: Cli) -> None:
    result = cli("schema", "--kind", "inventory")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == dumps(inventory_schema())


def test_schema_out_writes_two_files(cli: Cli, tmp_path: Path) -> None:
    result = cli("schema", "--out", "schema")
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "schema"
    assert sorted(p.name for p in folder.iterdir()) == [
        "inventory.schema.json",
        "playbook.schema.json",
    ]
    assert (folder / "playbook.schema.json").read_text() == dumps(playbook_schema())
    assert (folder / "inventory.schema.json").read_text() == dumps(inventory_schema())
    assert result.stdout.splitlines() == [
        f"wrote {Path('schema', 'playbook.schema.json')}",
        f"wrote {Path('schema', 'inventory.schema.json')}",
    ]
    again = cli("schema", "--out", "schema")
    assert again.exit_code == 0
    assert [line.split()[0] for line in again.stdout.splitlines()] == ["unchanged"] * 2


def test_schema_out_with_kind_writes_one(cli: Cli, tmp_path: Path) -> None:
    result = cli("schema", "--out", "s", "--kind", "inventory")
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["inventory.schema.json"]


def test_schema_out_onto_a_file_fails_in_one_line(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    result = cli("schema", "--out", "taken")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: taken: ")
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_bad_kind_is_a_usage_error(cli: Cli) -> None:
    assert cli("schema", "--kind", "site").exit_code == 2


def test_committed_schema_files_are_current() -> None:
    """If the repository keeps generated schemas (schema/), they match the models."""
    folder = ROOT / "schema"
    if not folder.is_dir():
        pytest.skip("no schema/ folder in the repository")
    assert (folder / "playbook.schema.json").read_text() == dumps(playbook_schema()), (
        "run `provision schema --out schema`"
    )
    assert (folder / "inventory.schema.json").read_text() == dumps(inventory_schema()), (
        "run `provision schema --out schema`"
    )
