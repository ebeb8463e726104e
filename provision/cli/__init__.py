"""The command line, assembled: the run commands (``cli.run``) on the main app, and the
sub-apps (``cert``, ``ca``) and review commands (``schema``, ``lint``) mounted only when the
command line may need them.

Modules here import typer and ``cli.common`` only; each command imports what it needs when
it runs, so ``provision --help`` and an idle ``apply`` start quickly. None of them imports
this package's ``__init__`` (no circle): this module is the only one that knows them all.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from provision.cli import run

app = typer.Typer(
    name="provision",
    help="Declarative certificates and web-server bindings for server fleets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: rich's help renderer imports Markdown and syntax highlighting, a third of
    # the start-up time of `provision --help`, for boxes around the same text.
    rich_markup_mode=None,
)
run.register(app)


def _mount_subcommands() -> None:
    if any(group.name == "cert" for group in app.registered_groups):
        return  # already mounted (tests call main's setup more than once in one process)
    from provision.cli import review
    from provision.cli.ca import app as ca_app
    from provision.cli.cert import app as cert_app

    app.add_typer(cert_app, name="cert", help="Show, export and check certificates.")
    app.add_typer(ca_app, name="ca")
    review.register(app)


def _own_command(argv: list[str]) -> bool:
    """Whether the command line names one of the run commands (apply, plan, ...), which need
    none of the sub-apps: not importing them keeps an idle apply's start short."""
    return len(argv) > 1 and argv[1] in run.command_names()


def main() -> NoReturn:
    if not _own_command(sys.argv):
        _mount_subcommands()
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(0)  # pragma: no cover - typer exits itself
