"""The run commands: validate, plan, apply, verify, rollback, csr, status, report.

Parse arguments, call the api, print the report, exit with a status. Heavy modules
(cryptography, pydantic, jinja2) are imported inside the commands, so ``provision --help``
starts quickly; errors leave through ``common.fail``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from provision.cli.common import (
    CONNECT_CONCURRENCY,
    FORKS,
    AcceptNewOpt,
    CommandTimeoutOpt,
    ConnectConcurrencyOpt,
    ConnectTimeoutOpt,
    ForksOpt,
    FormatOpt,
    FullOpt,
    InventoryOpt,
    KnownHostsOpt,
    LimitOpt,
    LockTimeoutOpt,
    OptionalInventoryOpt,
    OutputFormat,
    PlanFormat,
    Playbook,
    Playbooks,
    ShardCountOpt,
    ShardEnvOpt,
    ShardOpt,
    VaultIdOpt,
    VaultPasswordFileOpt,
    connect_options,
    fail,
    load_each,
    load_inputs,
    report_error,
    reported_errors,
    shard_from,
    vault_options,
)

if TYPE_CHECKING:  # the real imports are inside the commands, for a fast `--help`
    from typing import Any

    from provision.api import Report
    from provision.report.document import AuthorityEntry, CertificateEntry, FleetDocument
    from provision.shard import Shard


def _envelope(
    kind: str,
    playbook: str,
    inventory: str | Sequence[str],
    limit: str | None,
    shard: Shard | str | None,
) -> dict[str, Any]:
    """The keys that lead a JSON result (provision/report/envelope.py)."""
    from provision.report.envelope import envelope

    return envelope(kind, playbook, inventory, limit, None if shard is None else str(shard))


def _write_retry(playbook: str, result: Report, shard: str | None = None) -> None:
    """After failures, `--limit @PLAYBOOK.retry` reruns only the hosts that failed (a
    shard's run: PLAYBOOK.shard-I-of-N.retry, so that shards sharing a folder keep theirs)."""
    failed = [h.host for h in result.hosts if h.status in ("failed", "skipped")]
    if not failed:
        return  # (before any import: an idle apply answered from its record comes here too)
    from pathlib import Path

    from provision import fsutil
    from provision.errors import ProvisionError

    suffix = ".retry" if shard is None else f".shard-{shard.replace('/', '-of-')}.retry"
    path = Path(playbook).with_suffix(suffix)
    try:
        fsutil.write_atomic(str(path), "".join(f"{name}\n" for name in failed).encode(), 0o644)
    except ProvisionError as exc:
        # The recap is already out; the hosts to retry are named instead of the file.
        typer.echo(f"no retry file ({exc}); to retry: --limit {','.join(failed)}", err=True)
        return
    typer.echo(f"to retry the failed hosts: --limit @{path}", err=True)


def validate(
    playbooks: Playbooks,
    inventory: InventoryOpt,
    limit: LimitOpt = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "-v",
            "--verbose",
            help="Also list, per host, the ansible_* variables and SSH options accepted "
            "and not used.",
        ),
    ] = False,
    vault_password_file: VaultPasswordFileOpt = None,
    vault_id: VaultIdOpt = None,
) -> None:
    """Check each playbook with the inventory for every selected host; change nothing. Exit 1
    if any is invalid. Names a client may use that a certificate does not cover are warnings
    (exit 0)."""
    from provision.inputs.connection_vars import unused
    from provision.lint import format_text, lint

    invalid = False
    vault = vault_options(vault_password_file, vault_id)
    for playbook, loaded in load_each(playbooks, inventory, limit, vault):
        if loaded is None:
            invalid = True
            continue
        count = len(loaded.targets)
        typer.echo(f"{playbook}: valid for {count} host{'s' if count != 1 else ''}")
        # The one rule for names (provision/coverage.py), as lint, plan and apply have it.
        warnings = lint(loaded, rules={"name-not-covered"})
        typer.echo(format_text(warnings, count, "warning: "), nl=False)
        if verbose:
            for target in loaded.targets:
                names = unused(target.host.vars)
                if names:  # names only: a value may be a password
                    typer.echo(f"{target.host.name}: accepted, not used: {', '.join(names)}")
    if invalid:
        raise typer.Exit(1)


def plan(
    playbook: Playbook,
    inventory: InventoryOpt,
    limit: LimitOpt = None,
    output_format: Annotated[
        PlanFormat, typer.Option("--format", help="text, json, or markdown (for a PR).")
    ] = PlanFormat.text,
    out: Annotated[
        str | None, typer.Option("--out", help="Save the plan as JSON, for `apply PLAN.json`.")
    ] = None,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode",
            help="Exit 0 no changes, 2 changes (or a certificate waiting to be signed), 1 error.",
        ),
    ] = False,
    forks: ForksOpt = FORKS,
    known_hosts: KnownHostsOpt = None,
    accept_new_host_keys: AcceptNewOpt = False,
    connect_timeout: ConnectTimeoutOpt = 10.0,
    connect_concurrency: ConnectConcurrencyOpt = CONNECT_CONCURRENCY,
    command_timeout: CommandTimeoutOpt = 60.0,
    full: FullOpt = False,
    vault_password_file: VaultPasswordFileOpt = None,
    vault_id: VaultIdOpt = None,
    shard: ShardOpt = None,
    shard_env: ShardEnvOpt = None,
    shard_count: ShardCountOpt = None,
) -> None:
    """Show what apply would change on each host, and why. Writes nothing to any host."""
    from provision import runs

    chosen = shard_from(shard, shard_env, shard_count)
    with reported_errors():
        outcome = runs.plan_playbook(
            playbook,
            inventory,
            limit,
            forks=forks,
            connect=partial(
                connect_options,
                known_hosts,
                accept_new_host_keys,
                connect_timeout,
                command_timeout,
                connect_concurrency,
            ),
            # A plan to save is made in full: the record holds no plan to save.
            full=full or out is not None,
            vault=vault_options(vault_password_file, vault_id),
            shard=chosen,
        )
        if out is not None and outcome.loaded is not None and outcome.plan is not None:
            from provision import fsutil
            from provision.api import save_plan

            saved = save_plan(outcome.loaded, outcome.plan, limit, chosen)
            fsutil.write_atomic(out, saved.encode(), 0o644)
        meta = (
            _envelope("plan", playbook, inventory, limit, chosen)
            if output_format is PlanFormat.json
            else None
        )
    _print_plan(outcome.report, output_format, meta)
    waiting = [(h.host, name) for h in outcome.report.hosts for name in h.plan.waiting]
    if waiting:
        # Beside JSON or Markdown, on stderr: their stdout stays one document.
        hint = _csr_hint(playbook, inventory, limit, waiting)
        typer.echo(hint, err=output_format is not PlanFormat.text)
    if outcome.report.failed:
        raise typer.Exit(1)
    # A certificate waiting for its CA is work still to do, as a change is.
    if detailed_exitcode and (outcome.has_changes or waiting):
        raise typer.Exit(2)


def _csr_hint(
    playbook: str, inventory: list[str], limit: str | None, waiting: list[tuple[str, str]]
) -> str:
    """What to do for certificates waiting for their CA: the `provision csr` to run."""
    import shlex

    count = len(waiting)
    shown = ", ".join(f"{host}: {name}" for host, name in waiting[:5])
    more = f" and {count - 5} more" if count > 5 else ""
    command = ["provision", "csr", playbook]
    for source in inventory:
        command += ["-i", source]
    if limit is not None:
        command += ["--limit", limit]
    command += ["--out", "csr"]
    return (
        f"{count} certificate{'s wait' if count != 1 else ' waits'} for a CA to sign a "
        f"request ({shown}{more}). Unless it was done already, make the keys on the hosts "
        f"and the requests with\n  {shlex.join(command)}\nthen have the CA sign each "
        "request (csr/HOST-CERTIFICATE.csr) and save each signed certificate where the "
        "certificate's source.certificate says; the next apply installs it."
    )


def _print_plan(
    result: Report, output_format: PlanFormat, meta: dict[str, Any] | None = None
) -> None:
    from provision.report import text as render

    if output_format is PlanFormat.json:
        typer.echo(render.report_json(result, meta), nl=False)
    elif output_format is PlanFormat.markdown:
        typer.echo(render.plan_markdown(result), nl=False)
    else:
        typer.echo(render.plan_text(result), nl=False)


def _print_recap(
    result: Report, output_format: OutputFormat, check: bool, meta: dict[str, Any] | None = None
) -> None:
    from provision.report import text as render

    if output_format is OutputFormat.json:
        typer.echo(render.report_json(result, meta), nl=False)
    elif check:
        typer.echo(render.plan_text(result), nl=False)
    else:
        typer.echo(render.recap_text(result), nl=False)


def apply(
    playbook: Annotated[
        str, typer.Argument(help="The playbook, or a plan saved by `plan --out PLAN.json`.")
    ],
    inventory: OptionalInventoryOpt = None,
    limit: LimitOpt = None,
    output_format: FormatOpt = OutputFormat.text,
    check: Annotated[bool, typer.Option("--check", help="Only plan (same as `plan`).")] = False,
    forks: ForksOpt = FORKS,
    known_hosts: KnownHostsOpt = None,
    accept_new_host_keys: AcceptNewOpt = False,
    connect_timeout: ConnectTimeoutOpt = 10.0,
    connect_concurrency: ConnectConcurrencyOpt = CONNECT_CONCURRENCY,
    command_timeout: CommandTimeoutOpt = 60.0,
    lock_timeout: LockTimeoutOpt = 30.0,
    full: FullOpt = False,
    vault_password_file: VaultPasswordFileOpt = None,
    vault_id: VaultIdOpt = None,
    shard: ShardOpt = None,
    shard_env: ShardEnvOpt = None,
    shard_count: ShardCountOpt = None,
) -> None:
    """Make each host match the playbook (or apply exactly a saved plan); a host that fails
    does not stop the others."""
    from provision import runs
    from provision.plan.saved import is_plan_file
    from provision.report.progress import for_terminal

    chosen = shard_from(shard, shard_env, shard_count)
    connect = partial(
        connect_options,
        known_hosts,
        accept_new_host_keys,
        connect_timeout,
        command_timeout,
        connect_concurrency,
    )
    progress = None if check else for_terminal
    vault = vault_options(vault_password_file, vault_id)
    with reported_errors():
        if is_plan_file(playbook):
            if inventory is not None or limit is not None:
                fail("a saved plan names its own inventory and hosts; drop -i and --limit")
            outcome = runs.apply_saved_plan(
                playbook,
                check=check,
                forks=forks,
                connect=connect,
                lock_timeout=lock_timeout,
                progress=progress,
                vault=vault,
                shard=chosen,
            )
        else:
            if not inventory:
                fail("missing option -i INVENTORY")
            outcome = runs.apply_playbook(
                playbook,
                inventory,
                limit,
                check=check,
                forks=forks,
                connect=connect,
                lock_timeout=lock_timeout,
                full=full,
                progress=progress,
                vault=vault,
                shard=chosen,
            )
        meta = None
        if output_format is OutputFormat.json:
            kind = "plan" if check else "apply"
            if outcome.saved is not None and outcome.plan is not None:
                meta = _envelope(
                    kind,
                    outcome.plan.playbook,
                    outcome.plan.inventory,
                    outcome.saved.limit,
                    outcome.saved.shard,
                )
            else:
                assert inventory is not None
                meta = _envelope(kind, playbook, inventory, limit, chosen)
    _print_recap(outcome.report, output_format, check, meta)
    if not check:  # (after the recap: failing to write the file must not lose it)
        ran = outcome.saved.shard if outcome.saved is not None else chosen
        _write_retry(
            outcome.plan.playbook if outcome.plan else playbook,
            outcome.report,
            None if ran is None else str(ran),
        )
    if outcome.report.failed:
        raise typer.Exit(1)


def verify(
    playbook: Playbook,
    inventory: InventoryOpt,
    limit: LimitOpt = None,
    output_format: FormatOpt = OutputFormat.text,
    vault_password_file: VaultPasswordFileOpt = None,
    vault_id: VaultIdOpt = None,
    shard: ShardOpt = None,
    shard_env: ShardEnvOpt = None,
    shard_count: ShardCountOpt = None,
) -> None:
    """Connect to every https binding of every site, by every name a client may use (the
    certificate's names, the host's address, the binding's address and host; a site's
    `verify:` narrows it), and check the served certificate and chain."""
    import asyncio

    from provision.api import verify_all
    from provision.report import text as render

    chosen = shard_from(shard, shard_env, shard_count)
    loaded = load_inputs(
        playbook, inventory, limit, vault=vault_options(vault_password_file, vault_id), shard=chosen
    )
    result = asyncio.run(verify_all(loaded))
    if output_format is OutputFormat.json:
        meta = _envelope("verify", playbook, inventory, limit, chosen)
        typer.echo(render.report_json(result, meta), nl=False)
    else:
        typer.echo(render.verify_text(result), nl=False)
    if result.failed:
        raise typer.Exit(1)
    if not any(host.verified for host in result.hosts):
        count = len(result.hosts)
        fail(
            f"{playbook}: nothing was verified: no site has an https binding on the "
            f"{count} selected host{'s' if count != 1 else ''}, so no connection was made "
            "(verify checks each https binding of each site)"
        )


def rollback(
    playbook: Playbook,
    inventory: InventoryOpt,
    limit: LimitOpt = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="A backup's TIMESTAMP (or its prefix): undo it and every later one; "
            "default: undo the newest apply not undone yet.",
        ),
    ] = None,
    list_only: Annotated[
        bool,
        typer.Option(
            "--list",
            help="List each host's backups and what undoing each restores; change nothing.",
        ),
    ] = False,
    output_format: FormatOpt = OutputFormat.text,
    forks: ForksOpt = FORKS,
    known_hosts: KnownHostsOpt = None,
    accept_new_host_keys: AcceptNewOpt = False,
    connect_timeout: ConnectTimeoutOpt = 10.0,
    connect_concurrency: ConnectConcurrencyOpt = CONNECT_CONCURRENCY,
    command_timeout: CommandTimeoutOpt = 60.0,
    lock_timeout: LockTimeoutOpt = 30.0,
    vault_password_file: VaultPasswordFileOpt = None,
    vault_id: VaultIdOpt = None,
) -> None:
    """Restore each host's files as they were before its newest apply not undone yet (run
    again: one apply further back), then test and reload its sites."""
    import asyncio

    from provision.api import list_backups_all, rollback_all
    from provision.report import text as render

    if list_only and to is not None:
        fail("--list shows every backup; drop --to")
    connect = connect_options(
        known_hosts, accept_new_host_keys, connect_timeout, command_timeout, connect_concurrency
    )
    loaded = load_inputs(
        playbook,
        inventory,
        limit,
        forks=forks,
        connect=connect,
        lock_timeout=lock_timeout,
        vault=vault_options(vault_password_file, vault_id),
    )
    if list_only:
        hosts = asyncio.run(list_backups_all(loaded))
        if output_format is OutputFormat.json:
            typer.echo(render.backups_json(hosts), nl=False)
        else:
            typer.echo(render.backups_text(hosts), nl=False)
        if any(h.error is not None for h in hosts):
            raise typer.Exit(1)
        return
    result = asyncio.run(rollback_all(loaded, to))
    if output_format is OutputFormat.json:
        typer.echo(render.report_json(result), nl=False)
    else:
        typer.echo(render.recap_text(result), nl=False)
    if result.failed:
        raise typer.Exit(1)


# How `provision csr` reports each host's key.
_KEY_WORDS = {
    "kept": "kept",
    "created": "created",
    "pending": "created beside the live key, which serves until the signed certificate is supplied",
}


def csr(
    playbook: Playbook,
    inventory: InventoryOpt,
    out: Annotated[str, typer.Option("--out", help="Folder for the CSR files.")],
    limit: LimitOpt = None,
    vault_password_file: VaultPasswordFileOpt = None,
    vault_id: VaultIdOpt = None,
) -> None:
    """Make (or keep) each host's key and write a CSR per host and third-party certificate."""
    import asyncio
    from pathlib import Path

    from provision.csr import make_csrs
    from provision.sources.provided import wants_csr

    loaded = load_inputs(
        playbook, inventory, limit, vault=vault_options(vault_password_file, vault_id)
    )
    if not any(wants_csr(c) for t in loaded.targets for c in t.playbook.certificates):
        count = len(loaded.targets)
        fail(
            f"{playbook}: nothing to sign on the {count} selected host"
            f"{'s' if count != 1 else ''}, so nothing was written. `provision csr` makes a "
            "signing request for each certificate that a third-party CA issues (source: "
            "provided) and whose key stays on the host (no key: file given); this playbook "
            "has none: its certificates are issued here (self-signed, an internal CA) or "
            "supplied with their keys."
        )
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(make_csrs(loaded, folder))
    for result in results:
        if result.error:
            typer.echo(f"{result.host}: {result.certificate}: failed: {result.error}")
        else:
            typer.echo(
                f"{result.host}: {result.certificate}: key {_KEY_WORDS[result.key]}, "
                f"wrote {result.csr_file}"
            )
    if any(r.error for r in results):
        raise typer.Exit(1)


def render(
    playbook: Playbook,
    inventory: InventoryOpt,
    out: Annotated[str, typer.Option("--out", help="Folder for the files, one folder per host.")],
    limit: LimitOpt = None,
    vault_password_file: VaultPasswordFileOpt = None,
    vault_id: VaultIdOpt = None,
) -> None:
    """Write each host's site configs and scripts under OUT/HOST/ (host paths mirrored:
    C:\\X\\y as OUT/HOST/C/X/y), on this machine alone: no host is reached, no certificate
    or key is made. For review, and for Windows hosts, which no transport reaches yet."""
    from provision import api

    with reported_errors():
        # No output password, authority or supplied file is read: the configs need none
        # (a vault password is, if the inventory's variables are vaulted).
        loaded = api.load(
            playbook,
            inventory,
            limit,
            controller_files=False,
            vault=vault_options(vault_password_file, vault_id),
        )
        results = api.render_all(loaded, out)
    for result in results:
        if result.error is not None:
            typer.echo(f"{result.host}: failed: {result.error}")
            continue
        for host_path, local in result.files:
            typer.echo(f"{result.host}: {host_path} -> {local}")
        if not result.files:
            typer.echo(f"{result.host}: no site to render")
    if any(r.error is not None for r in results):
        raise typer.Exit(1)


class StatusFormat(StrEnum):
    text = "text"
    json = "json"
    prometheus = "prometheus"


class ReportFormat(StrEnum):
    html = "html"
    json = "json"


NowOpt = Annotated[
    str | None,
    typer.Option(
        "--now",
        help="Count days from this moment (2027-01-31 or 2027-01-31T12:00:00Z) instead of "
        "the clock's: for a fixed, reproducible document.",
    ),
]
FromJsonOpt = Annotated[
    str | None,
    typer.Option(
        "--from-json",
        help="Read the fleet document (`status --format json` or `report --format json`, "
        "or shards' documents merged) instead of reaching the hosts; no playbook needed.",
    ),
]
OptionalPlaybook = Annotated[
    str | None, typer.Argument(help="The playbook (YAML); not with --from-json.")
]
FleetInventoryOpt = Annotated[
    list[str] | None,
    typer.Option(
        "-i",
        "--inventory",
        help="The inventory, as for every command (repeatable); not with --from-json.",
    ),
]


def _moment(now: str | None) -> dt.datetime | None:
    if now is None:
        return None
    text = now[:-1] + "+00:00" if now.endswith("Z") else now
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"--now {now!r} is not a date or time: write 2027-01-31 or 2027-01-31T12:00:00Z")
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _fleet_document(
    playbook: str | None,
    inventory: list[str] | None,
    limit: str | None,
    from_json: str | None,
    now: str | None,
    vault: Sequence[tuple[str, str]],
    shard: Shard | None = None,
) -> FleetDocument:
    """The fleet document, read from the hosts (and planned) or from a file (one run's, or
    its shards' merged by `provision merge`)."""
    from provision.report import document

    if from_json is not None:
        if playbook is not None or inventory is not None or limit is not None or now is not None:
            fail(
                "--from-json reads a finished document: drop the playbook, -i, --limit, --now "
                "and --shard"
            )
        from pathlib import Path

        try:
            text = Path(from_json).read_bytes()
        except OSError as exc:
            fail(f"{from_json}: {exc.strerror}")
        with reported_errors():
            return document.loads(text, from_json)
    if playbook is None or inventory is None:
        fail("give a playbook and -i INVENTORY, or --from-json FILE")
    from provision.overview import fleet_document

    moment = _moment(now)
    loaded = load_inputs(playbook, inventory, limit, vault=vault, shard=shard)
    with reported_errors():
        found = fleet_document(loaded, moment)
    envelope = _envelope("status", playbook, inventory, limit, shard)
    return type(found).model_validate({**found.model_dump(), **envelope})


def status(
    playbook: OptionalPlaybook = None,
    inventory: FleetInventoryOpt = None,
    limit: LimitOpt = None,
    output_format: Annotated[
        StatusFormat,
        typer.Option(
            "--format",
            help="text; json (the fleet document, docs/status-json.md); prometheus (metrics).",
        ),
    ] = StatusFormat.text,
    textfile: Annotated[
        str | None,
        typer.Option(
            "--textfile",
            help="Write the metrics to DIR/provision.prom, atomically, for node_exporter's "
            "textfile collector (prints nothing else).",
        ),
    ] = None,
    now: NowOpt = None,
    from_json: FromJsonOpt = None,
    vault_password_file: VaultPasswordFileOpt = None,
    vault_id: VaultIdOpt = None,
    shard: ShardOpt = None,
    shard_env: ShardEnvOpt = None,
    shard_count: ShardCountOpt = None,
) -> None:
    """Every host's certificates, soonest expiry first; exit 1 if one is expired or misses a
    name. json and prometheus also plan each host (read-only) for its drift."""
    vault = vault_options(vault_password_file, vault_id)
    chosen = shard_from(shard, shard_env, shard_count)
    if output_format is StatusFormat.text and textfile is None and from_json is None:
        _plain_status(playbook, inventory, limit, now, vault, chosen)
        return
    from provision.report import document as fleet

    found = _fleet_document(playbook, inventory, limit, from_json, now, vault, chosen)
    if textfile is not None:
        from provision.report.metrics import write_textfile

        with reported_errors(os_errors=True):
            write_textfile(found, textfile)
    elif output_format is StatusFormat.json:
        typer.echo(fleet.dumps(found), nl=False)
    elif output_format is StatusFormat.prometheus:
        from provision.report.metrics import exposition

        typer.echo(exposition(found), nl=False)
    else:
        _status_table(found.certificates)
        if found.authorities:
            _authority_table(found.authorities)
    if any(c.problem or c.names_missing for c in found.certificates) or any(
        a.problem for a in found.authorities
    ):
        raise typer.Exit(1)


def _plain_status(
    playbook: str | None,
    inventory: list[str] | None,
    limit: str | None,
    now: str | None,
    vault: Sequence[tuple[str, str]],
    shard: Shard | None,
) -> None:
    """The table alone: the hosts read, nothing planned."""
    import asyncio

    from provision.status import authority_rows, fleet_status

    if playbook is None or inventory is None:
        fail("give a playbook and -i INVENTORY, or --from-json FILE")
    moment = _moment(now)
    loaded = load_inputs(playbook, inventory, limit, vault=vault, shard=shard)
    authorities = authority_rows(loaded, moment)
    rows = asyncio.run(fleet_status(loaded, moment))
    _status_table(rows)
    if authorities:
        _authority_table(authorities)
    if any(r.bad for r in rows) or any(a.bad for a in authorities):
        raise typer.Exit(1)


def report(
    playbook: OptionalPlaybook = None,
    inventory: FleetInventoryOpt = None,
    limit: LimitOpt = None,
    out: Annotated[
        str | None,
        typer.Option("--out", help="Write the report to this file (default: standard output)."),
    ] = None,
    output_format: Annotated[
        ReportFormat,
        typer.Option("--format", help="html (one self-contained page) or json (its data)."),
    ] = ReportFormat.html,
    now: NowOpt = None,
    from_json: FromJsonOpt = None,
    vault_password_file: VaultPasswordFileOpt = None,
    vault_id: VaultIdOpt = None,
    shard: ShardOpt = None,
    shard_env: ShardEnvOpt = None,
    shard_count: ShardCountOpt = None,
) -> None:
    """The fleet at a glance, as one self-contained HTML page: an expiry timeline, a sortable
    table of every certificate with its host's drift and last apply, the authorities and a
    summary. Reads the hosts and plans them; writes nothing to any host."""
    from provision.report import document as fleet

    vault = vault_options(vault_password_file, vault_id)
    chosen = shard_from(shard, shard_env, shard_count)
    found = _fleet_document(playbook, inventory, limit, from_json, now, vault, chosen)
    if output_format is ReportFormat.json:
        text = fleet.dumps(found)
    else:
        from provision.report.html import render_html

        text = render_html(found)
    if out is None:
        typer.echo(text, nl=False)
        return
    from provision import fsutil

    with reported_errors():
        fsutil.write_atomic(out, text.encode(), 0o644)
    typer.echo(f"wrote {out}", err=True)


def revoke(
    playbook: Playbook,
    inventory: InventoryOpt,
    limit: Annotated[
        str, typer.Option("--limit", "-l", help="The hosts whose certificates to revoke.")
    ],
    reason: Annotated[
        str,
        typer.Option(
            help="RFC 5280 reason: unspecified, keyCompromise, affiliationChanged, "
            "superseded or cessationOfOperation."
        ),
    ] = "unspecified",
    vault_password_file: VaultPasswordFileOpt = None,
    vault_id: VaultIdOpt = None,
) -> None:
    """Revoke the certificates the limited hosts hold (ACME: by the account that ordered
    them); exit 1 if one could not be."""
    import asyncio

    from provision.revoke import REASONS, revoke_all

    if reason not in REASONS:
        fail(f"--reason {reason!r} is not one of {', '.join(REASONS)}")
    loaded = load_inputs(
        playbook, inventory, limit, vault=vault_options(vault_password_file, vault_id)
    )
    rows = asyncio.run(revoke_all(loaded, reason))
    for row in rows:
        if row.error is None:
            typer.echo(f"{row.host}: {row.certificate}: {row.done}")
        else:
            report_error(f"{row.host}: {row.certificate}: {row.error}")
    if any(row.error is not None for row in rows):
        raise typer.Exit(1)


def _status_table(rows: list[CertificateEntry]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("host", "certificate", "issuer", "expires", "names"):
        table.add_column(column)
    for row in rows:
        if row.days_left is None:
            expires = row.problem or "missing"
        elif row.days_left < 0:
            expires = f"expired {-row.days_left} days ago"
        else:
            expires = f"in {row.days_left} days"
        if row.names_missing:
            names = "missing: " + ", ".join(row.names_missing)
        else:
            names = "covered" if row.days_left is not None else "-"
        table.add_row(row.host, row.certificate, row.issuer or "-", expires, names)
    Console(width=200).print(table)


def _authority_table(rows: list[AuthorityEntry]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    rotating = any(row.rotation for row in rows)  # the column only while one rotates
    for column in ("authority", "file", "subject", "expires", *(["rotation"] * rotating)):
        table.add_column(column)
    for row in rows:
        if row.days_left is None or row.problem:
            expires = row.problem or "missing"
        else:
            expires = f"{row.not_after} (in {row.days_left} days)"
        extra = [row.rotation or "-"] if rotating else []
        table.add_row(row.authority, row.file, row.subject or "-", expires, *extra)
    typer.echo("")
    Console(width=200, soft_wrap=True).print(table)


COMMANDS = (validate, plan, apply, verify, rollback, render, csr, status, report, revoke)


def register(app: typer.Typer) -> None:
    """Add the run commands to ``app`` (``provision.cli`` assembles the app)."""
    for command in COMMANDS:
        app.command()(command)


def command_names() -> set[str]:
    return {command.__name__ for command in COMMANDS}
