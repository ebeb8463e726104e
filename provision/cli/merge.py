"""``provision merge``: the JSON results of a run's shards as one result (docs/scale.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from provision.cli.common import fail


def merge(
    results: Annotated[
        list[str],
        typer.Argument(
            help="The JSON result of every shard (plan, apply, verify or status --format json)."
        ),
    ],
    out: Annotated[
        str | None, typer.Option("--out", help="Write the merged result here, not to stdout.")
    ] = None,
) -> None:
    """Combine the JSON results of the shards of one run (`--shard 0/N` ... `N-1/N`) into one
    result with the schema of an unsharded run's; refuse results that are not exactly the
    shards of one run. Exit 0 once merged, whatever the hosts' statuses."""
    import json

    from provision import fsutil
    from provision.errors import ProvisionError
    from provision.report.merge import merge as merged_result

    documents = []
    for path in results:
        try:
            with open(path, encoding="utf-8") as handle:
                documents.append((path, json.load(handle)))
        except OSError as exc:
            fail(f"{path}: cannot read it: {exc.strerror}; nothing was merged")
        except ValueError as exc:
            fail(f"{path}: not JSON ({exc}); nothing was merged")
    try:
        text = json.dumps(merged_result(documents), indent=2) + "\n"
        if out is None:
            typer.echo(text, nl=False)
        else:
            fsutil.write_atomic(out, text.encode(), 0o644)
    except ProvisionError as exc:
        fail(exc.message)


def register(app: typer.Typer) -> None:
    app.command()(merge)
