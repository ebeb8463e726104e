"""``provision ca init``, ``revoke`` and ``crl``: internal authorities on the controller."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from provision.cli.common import Playbook, fail

if TYPE_CHECKING:
    from provision.sources.authority_store import AuthorityStore

app = typer.Typer(
    help="Internal certificate authorities.", no_args_is_help=True, rich_markup_mode=None
)


def _open(playbook: str, name: str) -> AuthorityStore:
    """The named authority of the playbook, loaded and checked (it must exist)."""
    from pathlib import Path

    from provision.inputs.targets import controller_authorities
    from provision.sources.authority_store import open_authority

    doc, specs = controller_authorities(playbook)
    index = next((i for i, a in enumerate(specs) if a.name == name), None)
    if index is None:
        known = ", ".join(a.name for a in specs) or "none"
        fail(f"{playbook}: no authority named {name!r} (defined: {known})")
    spec = specs[index].model_copy(update={"create": False})
    return open_authority(spec, Path(doc.file).resolve().parent, doc.locate(("authorities", index)))


@app.command("revoke")
def ca_revoke(
    playbook: Playbook,
    name: Annotated[str, typer.Argument(help="The authority's name in the playbook.")],
    serial: Annotated[
        str | None, typer.Option(help="The serial number to revoke, in hex (openssl's form).")
    ] = None,
    certificate: Annotated[
        str | None, typer.Option(help="A PEM or DER certificate file whose serial to revoke.")
    ] = None,
    reason: Annotated[
        str,
        typer.Option(
            help="unspecified, key-compromise, superseded, affiliation-changed "
            "or cessation-of-operation."
        ),
    ] = "unspecified",
) -> None:
    """Put a leaf of the authority on its CRL, and republish the CRL (its `crl.dir`)."""
    import datetime as dt

    from provision.errors import ProvisionError
    from provision.trust import revocation

    if (serial is None) == (certificate is None):
        fail("give one of --serial HEX or --certificate FILE")
    try:
        store = _open(playbook, name)
        number = _serial_of(store, serial, certificate)
        added = revocation.revoke(store, number, dt.datetime.now(dt.UTC), reason)
        published = revocation.publish(store, dt.datetime.now(dt.UTC)) if not added else []
    except ProvisionError as exc:
        fail(exc.message)
    word = "revoked" if added else "already revoked"
    typer.echo(f"{word} serial {number:X} of authority {name!r} ({reason})")
    folder = store.crl_dir
    if folder is not None:
        typer.echo(f"CRL published to {folder / revocation.CRL_DER} and {revocation.CRL_PEM}")
    elif not published:
        typer.echo("no crl configured for this authority: the revocation is recorded only")


@app.command("crl")
def ca_crl(
    playbook: Playbook,
    name: Annotated[str, typer.Argument(help="The authority's name in the playbook.")],
    superseded: Annotated[
        list[str] | None,
        typer.Option(
            "--superseded",
            help="A JSON result of a sharded apply (or of `provision merge`): revoke the "
            "leaves of this authority it replaced (superseded); repeatable.",
        ),
    ] = None,
) -> None:
    """The unsharded step after a sharded apply: put the leaves the shards replaced on the
    authority's revocation list, and publish its CRL (its `crl.dir`). Shards never write to
    the authority's folder: they would race on its list and CRL (docs/scale.md)."""
    import datetime as dt
    import json

    from provision.errors import ProvisionError
    from provision.trust import revocation

    serials: list[int] = []
    for path in superseded or ():
        try:
            with open(path, encoding="utf-8") as handle:
                document = json.load(handle)
            hosts = document["hosts"]
            for entry in hosts.values():
                for leaf in entry.get("superseded", ()):
                    if leaf["authority"] == name:
                        serials.append(int(leaf["serial"], 16))
        except OSError as exc:
            fail(f"{path}: cannot read it: {exc.strerror}; nothing was revoked")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            fail(
                f"{path}: not the JSON result of an apply ({type(exc).__name__}: {exc}); "
                "nothing was revoked"
            )
    now = dt.datetime.now(dt.UTC)
    try:
        store = _open(playbook, name)
        added = 0
        for number in sorted(set(serials)):
            added += revocation.revoke(store, number, now, "superseded")
        published = revocation.publish(store, now) if not added else []
    except ProvisionError as exc:
        fail(exc.message)
    typer.echo(f"revoked {added} superseded leaves of authority {name!r}")
    folder = store.crl_dir
    if folder is not None:
        typer.echo(f"CRL published to {folder / revocation.CRL_DER} and {revocation.CRL_PEM}")
    elif not published:
        typer.echo("no crl configured for this authority: the revocations are recorded only")


def _serial_of(store: AuthorityStore, serial: str | None, certificate: str | None) -> int:
    from pathlib import Path

    from provision.crypto import compare
    from provision.crypto.decode import load_bundle
    from provision.errors import CryptoError

    if serial is not None:
        try:
            return int(serial.replace(":", ""), 16)
        except ValueError:
            fail(f"--serial {serial!r} is not a hexadecimal serial number")
    assert certificate is not None
    try:
        bundle = load_bundle(Path(certificate).read_bytes(), source=certificate)
    except OSError as exc:
        fail(f"{certificate}: {exc.strerror}")
    except CryptoError as exc:
        fail(exc.message)
    if not bundle.certificates:
        fail(f"{certificate}: holds no certificate")
    leaf = bundle.certificates[0]
    assert store.material is not None
    if not compare.issued_by(leaf, store.material.leaf):
        fail(
            f"{certificate}: issued by {leaf.issuer.rfc4514_string()}, not by authority "
            f"{store.spec.name!r} ({store.subject_text})"
        )
    return leaf.serial_number


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
