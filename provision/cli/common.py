"""What every command of the CLI shares: the typer options, the one error exit, loading.

Only typer is imported at module level (``provision --help`` imports this module); the api and
everything heavy are imported inside the helpers that need them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from provision.api import Loaded
    from provision.transport.factory import ConnectOptions


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


class PlanFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


Playbook = Annotated[str, typer.Argument(help="The playbook (YAML).")]
# Commands that only read (validate, lint) take several, as pre-commit passes them.
Playbooks = Annotated[
    list[str], typer.Argument(help="One or more playbooks (YAML), each checked on its own.")
]
_INVENTORY_HELP = (
    "The inventory: YAML, INI, ansible-inventory --list JSON, an executable inventory "
    "script, or a directory of them. Repeatable: sources merge in the order given, later "
    "ones winning, as Ansible merges repeated -i."
)
InventoryOpt = Annotated[list[str], typer.Option("-i", "--inventory", help=_INVENTORY_HELP)]
# apply's: a saved plan names its own inventory.
OptionalInventoryOpt = Annotated[
    list[str] | None,
    typer.Option("-i", "--inventory", help=_INVENTORY_HELP + " Not with a saved plan."),
]
VaultPasswordFileOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--vault-password-file",
        help="Ansible Vault password file (run if executable); repeatable. Default: "
        "$ANSIBLE_VAULT_PASSWORD_FILE.",
    ),
]
VaultIdOpt = Annotated[
    list[str] | None,
    typer.Option("--vault-id", help="Ansible Vault password as LABEL@FILE; repeatable."),
]
LimitOpt = Annotated[
    str | None,
    typer.Option(
        "--limit",
        "-l",
        help="Narrow the hosts: names, groups, globs, !exclude, &intersect, comma lists.",
    ),
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="text or json.")]
ForksOpt = Annotated[int, typer.Option("--forks", min=1, help="Hosts worked on at once.")]
KnownHostsOpt = Annotated[
    str | None, typer.Option("--known-hosts", help="An extra known_hosts file for SSH hosts.")
]
AcceptNewOpt = Annotated[
    bool,
    typer.Option(
        "--accept-new-host-keys",
        help="Trust and record unknown SSH host keys (never changed ones), "
        "like OpenSSH's StrictHostKeyChecking=accept-new.",
    ),
]
ConnectTimeoutOpt = Annotated[
    float, typer.Option("--connect-timeout", min=0.1, help="Seconds to reach a host.")
]
LockTimeoutOpt = Annotated[
    float,
    typer.Option("--lock-timeout", min=0, help="Seconds to wait for another run's lock on a host."),
]
CommandTimeoutOpt = Annotated[
    float, typer.Option("--command-timeout", min=0.1, help="Seconds a command on a host may take.")
]
FullOpt = Annotated[
    bool,
    typer.Option(
        "--full",
        help="Evaluate every host, even when the record of the last "
        "converged run shows that no input and no host file changed since.",
    ),
]


def fail(message: str) -> NoReturn:
    """The CLI's one error exit: one paragraph on stderr, ``error: ...``, exit status 1."""
    report_error(message)
    raise typer.Exit(1)


def report_error(message: str) -> None:
    """One paragraph on stderr, ``error: ...``, as ``fail`` prints it, for a command that goes
    on to its next input. Whitespace is folded so that a message quoting a multi-line value
    still reads as one paragraph (and cannot forge a second ``error:`` line)."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)


@contextmanager
def reported_errors(os_errors: bool = False) -> Iterator[None]:
    """Our errors (and, with ``os_errors``, the operating system's) through ``fail``: never a
    traceback for something the user can fix."""
    from provision.errors import ProvisionError

    try:
        yield
    except ProvisionError as exc:
        fail(exc.message)
    except OSError as exc:
        if not os_errors:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}")


def vault_options(
    password_files: Sequence[str] | None, vault_ids: Sequence[str] | None
) -> tuple[tuple[str, str], ...]:
    """``--vault-password-file`` and ``--vault-id`` as the loader's (label, file) sources."""
    from provision.inputs.vault_ids import vault_sources

    return vault_sources(password_files or (), vault_ids or ())


def load_inputs(
    playbook: str,
    inventory: Sequence[str],
    limit: str | None,
    forks: int = 20,
    connect: ConnectOptions | None = None,
    lock_timeout: float = 30.0,
    vault: Sequence[tuple[str, str]] = (),
) -> Loaded:
    """``api.load``, with its errors through the one exit."""
    from provision import api
    from provision.errors import ProvisionError

    try:
        return api.load(
            playbook,
            inventory,
            limit,
            forks=forks,
            connect=connect,
            lock_timeout=lock_timeout,
            vault=vault,
        )
    except ProvisionError as exc:
        fail(exc.message)


def load_each(
    playbooks: Sequence[str],
    inventory: Sequence[str],
    limit: str | None,
    vault: Sequence[tuple[str, str]] = (),
) -> Iterator[tuple[str, Loaded | None]]:
    """Each playbook loaded in turn, or None once its error is printed: a command given
    several playbooks reports on every one of them."""
    from provision import api
    from provision.errors import ProvisionError

    for playbook in playbooks:
        try:
            loaded = api.load(playbook, inventory, limit, vault=vault)
        except ProvisionError as exc:
            report_error(exc.message)
            yield playbook, None
        else:
            yield playbook, loaded


def connect_options(
    known_hosts: str | None, accept_new: bool, connect_timeout: float, command_timeout: float
) -> ConnectOptions:
    from provision.transport.factory import ConnectOptions

    return ConnectOptions(
        known_hosts=known_hosts,
        accept_new_host_keys=accept_new,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
    )
