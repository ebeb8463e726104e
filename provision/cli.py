"""The command line: parse arguments, call the api, print the report, exit with a status.

Heavy modules (cryptography, pydantic, jinja2) are imported inside the commands, so
``provision --help`` starts quickly.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, NoReturn

import typer

app = typer.Typer(
    name="provision",
    help="Declarative certificates and web-server bindings for server fleets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


Playbook = Annotated[str, typer.Argument(help="The playbook (YAML).")]
InventoryOpt = Annotated[str, typer.Option("-i", "--inventory", help="The inventory (YAML).")]
LimitOpt = Annotated[
    str | None, typer.Option("--limit", "-l", help="Narrow the hosts: names, groups, globs, "
                             "!exclude, &intersect, comma lists.")
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="text or json.")]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _load(playbook: str, inventory: str, limit: str | None):  # type: ignore[no-untyped-def]
    from provision.api import load
    from provision.errors import ProvisionError

    try:
        return load(playbook, inventory, limit)
    except ProvisionError as exc:
        _fail(exc.message)


@app.command()
def validate(playbook: Playbook, inventory: InventoryOpt, limit: LimitOpt = None) -> None:
    """Check the playbook and inventory for every selected host; change nothing."""
    loaded = _load(playbook, inventory, limit)
    typer.echo(f"{playbook}: valid for {len(loaded.targets)} host"
               f"{'s' if len(loaded.targets) != 1 else ''}")


@app.command()
def plan(
    playbook: Playbook,
    inventory: InventoryOpt,
    limit: LimitOpt = None,
    output_format: FormatOpt = OutputFormat.text,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 2 when changes are pending.")
    ] = False,
) -> None:
    """Show what apply would change on each host, and why. Writes nothing."""
    _run(playbook, inventory, limit, output_format, apply=False,
         detailed_exitcode=detailed_exitcode)


@app.command()
def apply(
    playbook: Playbook,
    inventory: InventoryOpt,
    limit: LimitOpt = None,
    output_format: FormatOpt = OutputFormat.text,
    check: Annotated[bool, typer.Option("--check", help="Only plan (same as `plan`).")] = False,
) -> None:
    """Make each host match the playbook; a host that fails does not stop the others."""
    _run(playbook, inventory, limit, output_format, apply=not check, detailed_exitcode=False)


def _run(playbook: str, inventory: str, limit: str | None, output_format: OutputFormat,
         *, apply: bool, detailed_exitcode: bool) -> None:
    from provision import report as render
    from provision.api import run

    loaded = _load(playbook, inventory, limit)
    plan_, result = run(loaded, apply=apply)
    if output_format is OutputFormat.json:
        typer.echo(render.report_json(result), nl=False)
    elif apply:
        typer.echo(render.recap_text(result), nl=False)
    else:
        typer.echo(render.plan_text(result), nl=False)
    if result.failed:
        raise typer.Exit(1)
    if detailed_exitcode and plan_.has_changes:
        raise typer.Exit(2)


def _mount_subcommands() -> None:
    from provision.cert_cli import app as cert_app

    app.add_typer(cert_app, name="cert", help="Show, export and check certificates.")


def main() -> NoReturn:
    _mount_subcommands()
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(0)  # pragma: no cover - typer exits itself
