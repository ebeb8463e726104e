"""``provision ca init``: internal certificate authorities on the controller."""

from __future__ import annotations

from typing import Annotated

import typer

from provision.cli.common import Playbook, fail

app = typer.Typer(
    help="Internal certificate authorities.", no_args_is_help=True, rich_markup_mode=None
)


@app.command("init")
def ca_init(
    playbook: Playbook,
    name: Annotated[str, typer.Argument(help="The authority's name in the playbook.")],
) -> None:
    """Create an authority's key and certificate in its folder (refuses to overwrite)."""
    from provision.errors import ProvisionError
    from provision.inputs.targets import controller_authorities
    from provision.sources.authority_store import create, open_authority

    try:
        doc, specs = controller_authorities(playbook)
        index = next((i for i, a in enumerate(specs) if a.name == name), None)
        if index is None:
            known = ", ".join(a.name for a in specs) or "none"
            fail(f"{playbook}: no authority named {name!r} (defined: {known})")
        spec = specs[index].model_copy(update={"create": True})
        from pathlib import Path

        store = open_authority(
            spec, Path(doc.file).resolve().parent, doc.locate(("authorities", index))
        )
        if not store.pending:
            fail(f"authority {name!r} already exists in {store.folder}")
        import datetime as dt

        create(store, dt.datetime.now(dt.UTC))
    except ProvisionError as exc:
        fail(exc.message)
    typer.echo(f"created authority {name!r} in {store.folder} ({store.subject_text})")
