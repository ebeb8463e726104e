"""``provision schema`` and ``provision lint``: editor support and review checks.

``register(app)`` adds both commands to the main app (``provision.cli`` mounts them).
Only typer is imported here; pydantic, jinja2 and cryptography are imported inside the
commands, so ``provision --help`` stays quick. Errors leave through ``common.fail``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from provision.cli.common import (
    FormatOpt,
    InventoryOpt,
    LimitOpt,
    OutputFormat,
    Playbooks,
    VaultIdOpt,
    VaultPasswordFileOpt,
    fail,
    load_each,
    vault_options,
)

if TYPE_CHECKING:  # imported inside the commands, for a fast `--help`
    from provision.api import Loaded


class SchemaKind(StrEnum):
    playbook = "playbook"
    inventory = "inventory"


def register(app: typer.Typer) -> None:
    """Add ``schema`` and ``lint`` to ``app``; calling it again adds nothing."""
    present = {info.name for info in app.registered_commands}
    if "schema" not in present:
        app.command("schema")(schema_command)
    if "lint" not in present:
        app.command("lint")(lint_command)


def schema_command(
    kind: Annotated[
        SchemaKind | None,
        typer.Option(
            "--kind",
            help="Which schema: playbook (printed by default) or inventory. "
            "With --out, write only this one.",
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            metavar="DIR",
            help="Write playbook.schema.json and "
            "inventory.schema.json into DIR instead of printing.",
        ),
    ] = None,
) -> None:
    """Print the JSON Schema of playbooks (or inventories), for editors and CI."""
    from pathlib import Path

    from provision import fsutil
    from provision.errors import ProvisionError
    from provision.inputs.schema import FILES, Kind, build, dumps

    kinds: list[Kind] = ["playbook", "inventory"]
    if kind is not None:
        kinds = [k for k in kinds if k == kind.value]
    if out is None:
        typer.echo(dumps(build(kinds[0])), nl=False)
        return
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"{out}: cannot create the folder: {exc.strerror}")
    for name in kinds:
        path = folder / FILES[name]
        text = dumps(build(name))
        try:
            if path.is_file() and path.read_text(encoding="utf-8") == text:
                typer.echo(f"unchanged {path}")
                continue
            fsutil.write_atomic(str(path), text.encode(), 0o644)
        except ProvisionError as exc:
            fail(exc.message)
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"{path}: {getattr(exc, 'strerror', None) or exc}")
        typer.echo(f"wrote {path}")


def lint_command(
    playbooks: Playbooks,
    inventory: InventoryOpt,
    limit: LimitOpt = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when there is any finding.")
    ] = False,
    output_format: FormatOpt = OutputFormat.text,
    vault_password_file: VaultPasswordFileOpt = None,
    vault_id: VaultIdOpt = None,
) -> None:
    """Flag what a reviewer would (weak keys, long validity, uncovered names, ...) in each
    playbook; exit 0, or 1 with --strict; 1 for a playbook that does not load."""
    if output_format is OutputFormat.json and len(playbooks) > 1:
        fail("--format json takes one playbook (its output is one JSON document)")
    unloaded = found = False
    vault = vault_options(vault_password_file, vault_id)
    for playbook, loaded in load_each(playbooks, inventory, limit, vault):
        if loaded is None:
            unloaded = True
        else:
            found = _lint_one(playbook, loaded, strict, output_format) or found
    if unloaded or (strict and found):
        raise typer.Exit(1)


def _lint_one(playbook: str, loaded: Loaded, strict: bool, output_format: OutputFormat) -> bool:
    """Print one playbook's findings; whether there were any."""
    import json

    from provision.lint import format_text, lint

    findings = lint(loaded)
    hosts = [t.host.name for t in loaded.targets]
    if output_format is OutputFormat.json:
        typer.echo(
            json.dumps(
                {
                    "playbook": playbook,
                    "hosts": hosts,
                    "strict": strict,
                    "findings": [f.as_dict() for f in findings],
                },
                indent=2,
            )
        )
    else:
        typer.echo(format_text(findings, len(hosts)), nl=False)
        count = len(findings)
        what = f"{count} finding{'s' if count != 1 else ''}" if count else "no findings"
        suffix = " (--strict: failing)" if strict and count else ""
        typer.echo(
            f"{playbook}: {what} for {len(hosts)} host{'s' if len(hosts) != 1 else ''}{suffix}"
        )
    return bool(findings)
