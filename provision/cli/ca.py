"""``provision ca``: internal certificate authorities on the controller (init, revoke, crl,
rotate)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from provision.cli.common import (
    OptionalInventoryOpt,
    Playbook,
    VaultIdOpt,
    VaultPasswordFileOpt,
    fail,
    vault_options,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from provision.sources.authority_store import AuthorityStore

app = typer.Typer(
    help="Internal certificate authorities.", no_args_is_help=True, rich_markup_mode=None
)


def _open(playbook: str, name: str, arranged: bool = False) -> AuthorityStore:
    """The named authority of the playbook, loaded and checked (it must exist); with
    ``arranged``, as a rotation's phase has it (the CA that issues, the old one beside)."""
    from pathlib import Path

    from provision.inputs.targets import controller_authorities
    from provision.sources.authority_store import open_authority
    from provision.trust import rotation

    doc, specs = controller_authorities(playbook)
    index = next((i for i, a in enumerate(specs) if a.name == name), None)
    if index is None:
        known = ", ".join(a.name for a in specs) or "none"
        fail(f"{playbook}: no authority named {name!r} (defined: {known})")
    spec = specs[index].model_copy(update={"create": False})
    where = doc.locate(("authorities", index))
    store = open_authority(spec, Path(doc.file).resolve().parent, where)
    return rotation.arrange(store, where) if arranged else store


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
    """Put a leaf of the authority on its CRL, and republish the CRL (its `crl.dir`). While
    the authority rotates, a --certificate goes on the CRL of the CA that signed it, and a
    --serial on both CAs' (its 64 random bits make it name no other certificate)."""
    import datetime as dt

    from provision.errors import ProvisionError
    from provision.trust import revocation, rotation

    if (serial is None) == (certificate is None):
        fail("give one of --serial HEX or --certificate FILE")
    try:
        signers = rotation.all_stores([_open(playbook, name, arranged=True)])
        number, signers = _serial_of(signers, serial, certificate)
        for store in signers:
            added = revocation.revoke(store, number, dt.datetime.now(dt.UTC), reason)
            published = revocation.publish(store, dt.datetime.now(dt.UTC)) if not added else []
            word = "revoked" if added else "already revoked"
            which = f" (CA in {store.folder})" if len(signers) > 1 else ""
            typer.echo(f"{word} serial {number:X} of authority {name!r}{which} ({reason})")
            folder = store.crl_dir
            if folder is not None:
                typer.echo(
                    f"CRL published to {folder / (store.crl_stem + '.der')} "
                    f"and {store.crl_stem}.pem"
                )
            elif not published:
                typer.echo("no crl configured for this authority: the revocation is recorded only")
    except ProvisionError as exc:
        fail(exc.message)


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
        typer.echo(
            f"CRL published to {folder / (store.crl_stem + '.der')} and {store.crl_stem}.pem"
        )
    elif not published:
        typer.echo("no crl configured for this authority: the revocations are recorded only")


def _serial_of(
    stores: list[AuthorityStore], serial: str | None, certificate: str | None
) -> tuple[int, list[AuthorityStore]]:
    """The serial to revoke, and the CAs whose lists it goes on."""
    from pathlib import Path

    from provision.crypto import compare
    from provision.crypto.decode import load_bundle
    from provision.errors import CryptoError

    if serial is not None:
        try:
            return int(serial.replace(":", ""), 16), stores
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
    for store in stores:
        assert store.material is not None
        if compare.issued_by(leaf, store.material.leaf):
            return leaf.serial_number, [store]
    first = stores[0]
    fail(
        f"{certificate}: issued by {leaf.issuer.rfc4514_string()}, not by authority "
        f"{first.spec.name!r} ({first.subject_text})"
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


@app.command("rotate")
def ca_rotate(
    playbook: Playbook,
    name: Annotated[str, typer.Argument(help="The authority's name in the playbook.")],
    phase: Annotated[
        int | None,
        typer.Option(
            min=2,
            max=3,
            help="Move the rotation to phase 2 (issue: reissue every leaf from the new CA) "
            "or 3 (retire: remove the old root from trust stores; needs -i).",
        ),
    ] = None,
    next_phase: Annotated[
        bool, typer.Option("--next", help="Move the rotation to its next phase.")
    ] = False,
    finish: Annotated[
        bool,
        typer.Option(
            "--finish",
            help="After phase 3 is applied: archive the old CA under retired/ and make the "
            "new one the authority.",
        ),
    ] = False,
    cross_sign: Annotated[
        bool,
        typer.Option(
            "--cross-sign",
            help="At the start: also certify the new root's key by the old CA "
            "(next/cross-signed.crt), for clients that trust only the old root.",
        ),
    ] = False,
    # (phase 3: the inventory whose hosts are asked over TLS what they serve)
    inventory: OptionalInventoryOpt = None,
    vault_password_file: VaultPasswordFileOpt = None,
    vault_id: VaultIdOpt = None,
) -> None:
    """Rotate an authority to a new key and root in three phases, each applied with
    `provision plan`/`apply`: (1) trust the new root beside the old, (2) reissue every leaf
    from the new CA, (3) retire the old root. Without options: start (phase 1)."""
    import datetime as dt

    from provision.errors import ProvisionError
    from provision.trust import rotation

    now = dt.datetime.now(dt.UTC)
    chosen = [o for o, given in (("--phase", phase is not None), ("--next", next_phase),
                                 ("--finish", finish)) if given]  # fmt: skip
    if len(chosen) > 1:
        fail(f"give one of --phase, --next and --finish, not {' and '.join(chosen)}")
    if cross_sign and chosen:
        fail("--cross-sign is given when a rotation starts (without --phase, --next, --finish)")
    try:
        store = _open(playbook, name)
        current = rotation.read_record(store)
        if current is not None and current.finishing is None:
            _open(playbook, name, arranged=True)  # the record must belong to these CA files
        if finish:
            archive = rotation.finish(store, now)
            typer.echo(
                f"authority {name!r}: rotation finished; the new CA is the authority in "
                f"{store.folder}, the old one is kept in {archive}"
            )
            return
        if not chosen:
            started = rotation.start(store, now, cross_sign)
            _echo_phase(name, started.phase)
            folder = rotation.next_folder(store)
            typer.echo(f"the new CA is in {folder}; the old one stays in {store.folder}")
            if started.cross_signed:
                typer.echo(f"cross-signed by the old CA: {folder / rotation.CROSS_FILE}")
            typer.echo(f"next: `provision plan {playbook} -i INVENTORY`, then apply it")
            return
        record = current
        if record is None:
            fail(
                f"authority {name!r} is not rotating; start with "
                f"`provision ca rotate {playbook} {name}`"
            )
        target = rotation.next_phase(record, phase)
        served: list[str] = []
        if target == 3:
            if not inventory:
                fail(
                    "phase 3 retires the old root: give the inventory (-i INVENTORY) whose "
                    "hosts are asked over TLS that none still serves a leaf of the old CA"
                )
            vault = vault_options(vault_password_file, vault_id)
            served = _old_leaves_served(playbook, inventory, store, vault)
        rotation.advance(store, record, target, now, served)
    except ProvisionError as exc:
        fail(exc.message)
    _echo_phase(name, target)
    typer.echo(f"next: `provision plan {playbook} -i INVENTORY`, then apply it")


def _echo_phase(name: str, phase: int) -> None:
    from provision.trust import rotation

    typer.echo(
        f"authority {name!r}: rotation in phase {phase} ({rotation.PHASES[phase]}): "
        f"{rotation.PHASE_WORDS[phase]}"
    )


def _old_leaves_served(
    playbook: str,
    inventory: list[str],
    store: AuthorityStore,
    vault: Sequence[tuple[str, str]],
) -> list[str]:
    import asyncio

    from provision.cli.common import load_inputs
    from provision.fleet import close_all
    from provision.trust.served import old_leaves

    assert store.material is not None
    loaded = load_inputs(playbook, inventory, None, vault=vault)
    try:
        return old_leaves(loaded.targets, store.material.leaf)
    finally:
        asyncio.run(close_all(loaded))
