"""The documentation says what the code does: docs/playbook.md has an entry, with an example,
for every field of every playbook model, each example fits the schema, the complete playbook
validates; links between documents lead somewhere."""

from __future__ import annotations

import copy
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, Cli
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from provision.inputs.schema import playbook_schema
from provision.model import playbook as models

REFERENCE = ROOT / "docs" / "playbook.md"
# Each section of the reference, and the models whose fields it lists.
SECTIONS: dict[str, tuple[type[BaseModel], ...]] = {
    "Top level": (models.Playbook,),
    "`authorities[]`": (models.Authority,),
    "`authorities[].crl`": (models.AuthorityCrl,),
    "`certificates[]`": (models.Certificate,),
    "`certificates[].source`": (
        models.SelfSignedSource,
        models.CaSource,
        models.ProvidedSource,
        models.AcmeSource,
    ),
    "`certificates[].source.eab`": (models.Eab,),
    "`certificates[].source.dns_hook`": (models.DnsHook,),
    "`certificates[].key`": (models.RsaKey, models.EcdsaKey, models.Ed25519Key),
    "`certificates[].subject`": (models.Subject,),
    "`certificates[].outputs[]`": (models.Output,),
    "Passwords": (models.SecretRef,),
    "`sites[]`": (models.Site,),
    "`sites[].bindings[]`": (models.Binding,),
    "`sites[].virtual_directories[]`": (models.VirtualDirectory,),
    "`sites[].verify`": (models.Verify,),
    "`trust[]`": (models.Trust,),
    "`trust[].roots[]`": (models.TrustRoot,),
    "`trust[].stores[]`": (
        models.BundleStore,
        models.DebianStore,
        models.RhelStore,
        models.NssStore,
        models.JavaStore,
        models.WindowsStore,
    ),
}
COMPLETE = "A complete playbook"


def sections() -> dict[str, str]:
    """The reference's ``##`` sections by title: their text up to the next one."""
    parts = re.split(r"^## (.+)$", REFERENCE.read_text(), flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def entries(body: str) -> dict[str, str]:
    """A section's ``### `field` `` entries by field name."""
    parts = re.split(r"^### `([a-z_]+)`$", body, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def reachable_models(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """``model`` and every model its fields hold, at any depth."""
    seen: set[type[BaseModel]] = set()

    def visit(annotation: Any) -> Iterator[type[BaseModel]]:
        model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if model and annotation not in seen:
            seen.add(annotation)
            yield annotation
            for field in annotation.model_fields.values():
                yield from visit(field.annotation)
        for argument in typing.get_args(annotation):
            yield from visit(argument)

    yield from visit(model)


def test_every_model_has_a_section() -> None:
    documented = {model for group in SECTIONS.values() for model in group}
    assert set(reachable_models(models.Playbook)) == documented
    assert list(sections()) == ["How values are read", *SECTIONS, COMPLETE]


@pytest.mark.parametrize("title", list(SECTIONS))
def test_every_field_has_an_entry_with_an_example(title: str) -> None:
    fields = {name for model in SECTIONS[title] for name in model.model_fields}
    found = entries(sections()[title])
    assert sorted(found) == sorted(fields), f"{title}: entries do not match the model's fields"
    for name, text in found.items():
        assert text.split("```")[0].strip(), f"{title} {name}: no description"
        assert len(yaml_blocks(text)) == 1, f"{title} {name}: one example, in a yaml block"


def _partial_schema() -> dict[str, Any]:
    """The playbook schema without `required`: a fragment may leave out what it does not
    show, and everything it does show must fit."""
    schema = copy.deepcopy(playbook_schema())

    def strip(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node:  # not a password's oneOf: {required: [env]} | [file]
                node.pop("required", None)
            for value in node.values():
                strip(value)
        elif isinstance(node, list):
            for item in node:
                strip(item)

    strip(schema)
    return schema


def test_every_example_fits_the_schema() -> None:
    validator = Draft202012Validator(_partial_schema())
    blocks = yaml_blocks(REFERENCE.read_text())
    assert len(blocks) > 70
    for block in blocks:
        data = yaml.safe_load(block)
        assert isinstance(data, dict), block
        errors = [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(data)
        ]
        assert errors == [], f"{block}\n{errors}"


def test_the_complete_playbook_validates(project: Path, cli: Cli) -> None:
    (block,) = yaml_blocks(sections()[COMPLETE])
    data = yaml.safe_load(block)
    assert Draft202012Validator(playbook_schema()).is_valid(data)
    top = {
        name for name in models.Playbook.model_fields if name not in ("shared_with", "takes_over")
    }
    assert top <= set(data)  # all but the two that need another playbook
    (project / "playbooks" / "reference.yml").write_text(block)
    result = cli(
        "validate",
        "playbooks/reference.yml",
        "-i",
        "inventory/example.yml",
        env={"PFX_PASSWORD": "x"},
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "playbooks/reference.yml: valid for 3 hosts\n"


# --- links ------------------------------------------------------------------------------------

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_links_lead_somewhere(document: Path) -> None:
    text = document.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        assert (document.parent / target).exists(), f"{document.name}: link to {target}"
    for named in re.findall(r"`(docs/[\w-]+\.md)`", text):
        assert (ROOT / named).exists(), f"{document.name}: names {named}"


def test_the_playbook_reference_is_linked() -> None:
    for document in DOCUMENTS:
        text = document.read_text()
        for mention in re.finditer(r"playbook reference", text):
            after = text[mention.end() : mention.end() + 20]
            assert after.startswith("](playbook.md)") or document == REFERENCE, (
                f"{document.name} mentions the playbook reference without linking it"
            )
    assert "[playbook reference](playbook.md)" in (ROOT / "docs" / "templates.md").read_text()


def test_the_readme_lists_every_document() -> None:
    readme = (ROOT / "README.md").read_text()
    for document in sorted((ROOT / "docs").glob("*.md")):
        assert f"`docs/{document.name}`" in readme, document.name
