"""JSON Schemas of playbooks and inventories, for editors (YAML language server) and CI.

Both come from the pydantic models, adjusted so that the files people really write validate:

- Playbook values may be Jinja2 templates, evaluated per host before the model sees them, and
  a value that is one whole template keeps its native type (``port: "{{ https_port }}"`` is a
  number for the model). So every value the model types as something other than a free
  string (a number, a boolean, a list, an object, an enum, a pattern) also accepts a string
  holding a template marker (``{{``, ``{%`` or ``{#``): ``#/$defs/Template``.
- ``source: self-signed`` is the shorthand the model accepts for ``{type: self-signed}``, and
  ``verify: true`` (or false) for ``verify: {}`` (or none).
- A password is ``{env: VAR}`` or ``{file: PATH}`` (exactly one); a plain string is accepted,
  as the model does, but marked deprecated (``provision lint`` flags it: literal-password).
- Discriminated unions become ``anyOf`` without pydantic's ``discriminator`` (an OpenAPI
  keyword), so a template may stand for the ``type`` too.
- Inventory host entries and group ``vars`` stay free-form, with the keys ``provision``
  reads (``address``, ``port``, ``connection``, ... and their ``ansible_*`` aliases) typed.

The schema checks shape only. What it cannot see (cross-references, rules that span fields,
each host's evaluated values) is ``provision validate``'s job. It uses only keywords that
mean the same in draft-07, which is what the YAML language server implements. Output is
deterministic: sorted keys, two-space indent, one trailing newline.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

Schema = dict[str, Any]
Kind = Literal["playbook", "inventory"]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
FILES: dict[Kind, str] = {
    "playbook": "playbook.schema.json",
    "inventory": "inventory.schema.json",
}
# An identifier, not a download location: editors are pointed at the file itself.
ID_BASE = "https://provision.invalid/schema/"

TEMPLATE_REF = "#/$defs/Template"
TEMPLATE_PATTERN = r"\{[{%#]"
TEMPLATE: Schema = {
    "type": "string",
    "pattern": TEMPLATE_PATTERN,
    "description": (
        "A Jinja2 template ({{ ... }}, {% ... %}), evaluated for each host before "
        "validation. A value that is one whole expression keeps its type, so "
        '"{{ https_port }}" may stand for a number and "{{ names }}" for a list.'
    ),
}

# Keywords that describe rather than constrain: they stay outside an added anyOf.
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated", "$comment"})
# A free string accepts any template; these keywords make a string refuse some of them.
_STRING_CONSTRAINTS = frozenset({"enum", "const", "pattern", "maxLength"})
_SHORTEST_TEMPLATE = len("{{x}}")


def build(kind: Kind) -> Schema:
    return playbook_schema() if kind == "playbook" else inventory_schema()


def dumps(schema: Schema) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def playbook_schema() -> Schema:
    from provision.model.playbook import Playbook

    raw = copy.deepcopy(Playbook.model_json_schema())
    _source_shorthand(raw["$defs"]["Certificate"]["properties"]["source"])
    _verify_shorthand(raw["$defs"]["Site"]["properties"]["verify"])
    defs = {name: _children(body) for name, body in raw.pop("$defs").items()}
    root = _children(raw)
    defs["Template"] = dict(TEMPLATE)
    defs["SecretRef"]["oneOf"] = [{"required": ["env"]}, {"required": ["file"]}]
    for body in defs.values():
        for value in body.get("properties", {}).values():
            _mark_literal_password(value)
    root["$defs"] = defs
    return _head(
        root,
        "playbook",
        "provision playbook",
        (
            "Certificates, their sources and outputs, and the web-server sites that use them, "
            "for the hosts of an inventory. Strings may hold Jinja2 templates evaluated for each "
            "host. This schema checks the shape; `provision validate` checks the rest."
        ),
    )


def inventory_schema() -> Schema:
    from provision.inputs.connection_vars import ALIASES as aliases
    from provision.inputs.connection_vars import CONNECTIONS as connections
    from provision.inputs.inventory import HOST_FIELDS
    from provision.model.inventory import Host, InventoryFile

    raw = copy.deepcopy(InventoryFile.model_json_schema())
    host_props = Host.model_json_schema()["properties"]
    typed: Schema = {}
    # The host keys the inventory reads (inventory._make_host); what each means is the
    # description of the Host model's field.
    for key in HOST_FIELDS:
        typed[key] = dict(host_props[key])
    for alias, key in sorted(aliases.items()):
        if key in typed:
            typed[alias] = {**host_props[key], "description": f"Ansible's name for {key}."}
    if "ansible_connection" in typed:
        # Ansible's plugin names (smart, paramiko, ansible.builtin.ssh) are read as ours.
        typed["ansible_connection"] = {**typed["ansible_connection"], "enum": sorted(connections)}
    for prop in typed.values():
        prop.pop("title", None)
    _use_variables(raw)
    raw["$defs"]["Variables"] = {
        "type": "object",
        "additionalProperties": True,
        "properties": typed,
        "description": "Variables, free-form as in Ansible; the keys provision reads are typed.",
    }
    return _head(
        raw,
        "inventory",
        "provision inventory",
        (
            "An Ansible-style YAML inventory: `all` and other groups, each with hosts, vars and "
            "children. Variables are free-form; the keys provision reads are typed. "
            "group_vars/ and host_vars/ files beside it are plain variable mappings."
        ),
    )


def _head(schema: Schema, kind: Kind, title: str, description: str) -> Schema:
    _fold_descriptions(schema)
    schema["$schema"] = DRAFT
    schema["$id"] = ID_BASE + FILES[kind]
    schema["$comment"] = "Generated by `provision schema`; do not edit."
    schema["title"] = title
    schema["description"] = description
    return schema


def _fold_descriptions(node: Any) -> None:
    """Each description on one line: the models' docstrings wrap at the code's width, which
    means nothing in an editor's hover."""
    if isinstance(node, dict):
        text = node.get("description")
        if isinstance(text, str):
            node["description"] = " ".join(text.split())
        for value in node.values():
            _fold_descriptions(value)
    elif isinstance(node, list):
        for item in node:
            _fold_descriptions(item)


# --- playbook: templates ------------------------------------------------------------------


def _children(node: Schema) -> Schema:
    """``node`` with each value position inside it made to accept templates."""
    out = dict(node)
    out.pop("discriminator", None)
    if "oneOf" in out:
        # The branches of a discriminated union: with templates allowed (even for `type`),
        # more than one may match, so "exactly one" would refuse good files.
        out["anyOf"] = out.pop("oneOf")
    if isinstance(out.get("properties"), dict):
        out["properties"] = {key: _value(value) for key, value in out["properties"].items()}
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _value(out["additionalProperties"])
    if isinstance(out.get("items"), dict):
        out["items"] = _value(out["items"])
    if "anyOf" in out:
        out["anyOf"] = [_children(branch) for branch in out["anyOf"]]
    return out


def _value(node: Schema) -> Schema:
    node = _children(node)
    if _takes_template(node):
        return node
    outside = {k: v for k, v in node.items() if k in _ANNOTATIONS}
    inside = {k: v for k, v in node.items() if k not in _ANNOTATIONS}
    if set(inside) == {"anyOf"}:
        return {**outside, "anyOf": [*inside["anyOf"], {"$ref": TEMPLATE_REF}]}
    return {**outside, "anyOf": [inside, {"$ref": TEMPLATE_REF}]}


def _takes_template(node: Schema) -> bool:
    """Whether every template string is already valid here."""
    if node.get("$ref") == TEMPLATE_REF:
        return True
    if "anyOf" in node:
        return any(_takes_template(branch) for branch in node["anyOf"])
    if "$ref" in node or node.get("type", "string") != "string":
        return False
    if _STRING_CONSTRAINTS & set(node):
        return False
    return int(node.get("minLength", 0)) <= _SHORTEST_TEMPLATE


def _source_shorthand(node: Schema) -> None:
    branches = node.get("oneOf", node.get("anyOf"))
    assert isinstance(branches, list), "Certificate.source is no longer a union"
    branches.append(
        {
            "type": "string",
            "const": "self-signed",
            "description": "Shorthand for {type: self-signed}.",
        }
    )


def _verify_shorthand(node: Schema) -> None:
    branches = node.get("anyOf")
    assert isinstance(branches, list), "Site.verify is no longer optional"
    branches.append(
        {
            "type": "boolean",
            "description": "true: verify with the defaults; false: do not verify.",
        }
    )


def _mark_literal_password(node: Schema) -> None:
    """The SecretStr branch of a password: allowed, deprecated, and said why."""
    for branch in node.get("anyOf", ()):
        if branch.get("format") == "password" and branch.get("type") == "string":
            branch["deprecated"] = True
            branch["description"] = (
                "A literal password: accepted, but kept in plain text in the playbook "
                "(`provision lint` flags it as literal-password). Prefer {env: VAR} or "
                "{file: PATH}."
            )
            # VS Code's extension keyword: the YAML extension warns with this text.
            branch["deprecationMessage"] = (
                "A literal password is kept in plain text; use {env: VAR} or {file: PATH}."
            )


# --- inventory: typed host keys -----------------------------------------------------------


def _use_variables(node: Any) -> None:
    """Point every free-form mapping (host entries, group vars) at ``#/$defs/Variables``."""
    items: Any = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items):
        if _free_mapping(value):
            node[key] = {"$ref": "#/$defs/Variables"}
        elif isinstance(value, dict | list):
            _use_variables(value)


def _free_mapping(node: Any) -> bool:
    return (
        isinstance(node, dict)
        and node.get("type") == "object"
        and node.get("additionalProperties") is True
        and "properties" not in node
    )
