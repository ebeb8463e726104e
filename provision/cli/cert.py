"""``provision cert show|export|check``: the certificate dialog's Details tab and Copy to File.

Only typer is imported at module level: ``provision --help`` imports this module, and
cryptography plus ssl cost more than the rest of start-up. Everything else is imported inside
the command that needs it.

Errors are one line on stderr (``error: <file or URL>: <problem>``) and exit status 1, never
a traceback. Bad option values (unknown ``--view``) are usage errors: click's exit status 2.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Annotated, TypedDict

import typer

from provision.cli.common import fail, reported_errors

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from cryptography import x509

    from provision.crypto.decode import Bundle
    from provision.crypto.details import DnOrder

app = typer.Typer(
    help="Show, export and check certificates (files or https:// servers).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help starts faster (see provision/cli/__init__.py)
)


class Verification(TypedDict):
    """``show --ca``'s ``verification`` member."""

    verified: bool
    chain: list[str]  # subjects, leaf to root, when verified
    problem: str | None


class ViewChoice(enum.StrEnum):
    all = "all"
    v1 = "v1"
    extensions = "extensions"
    critical = "critical"
    properties = "properties"


class FormatChoice(enum.StrEnum):
    text = "text"
    json = "json"


class DnOrderChoice(enum.StrEnum):
    openssl = "openssl"
    windows = "windows"


class ExportChoice(enum.StrEnum):
    der = "der"
    pem = "pem"
    pkcs7 = "pkcs7"


SourceArg = Annotated[str, typer.Argument(help="A certificate file, or https://HOST[:PORT].")]
PasswordEnvOpt = Annotated[
    str | None,
    typer.Option("--password-env", metavar="VAR", help="Read the PKCS#12/key password from VAR."),
]
ServernameOpt = Annotated[
    str | None, typer.Option("--servername", help="SNI name to send (default: the URL host).")
]
ConnectOpt = Annotated[
    str | None,
    typer.Option("--connect", metavar="ADDR", help="Connect here instead of resolving HOST."),
]
CaOpt = Annotated[
    str | None, typer.Option("--ca", metavar="FILE", help="Verify the chain up to these roots.")
]


# --- commands ----------------------------------------------------------------------------


@app.command()
def show(
    source: SourceArg,
    view: Annotated[ViewChoice, typer.Option("--view", help="Which fields.")] = ViewChoice.all,
    output_format: Annotated[
        FormatChoice, typer.Option("--format", help="text for people, json for programs.")
    ] = FormatChoice.text,
    password_env: PasswordEnvOpt = None,
    servername: ServernameOpt = None,
    connect: ConnectOpt = None,
    ca: CaOpt = None,
    dn_order: Annotated[
        DnOrderChoice,
        typer.Option(
            "--dn-order",
            help="Names as openssl writes them (C=US, O=Example, CN=host) or as Windows "
            "shows them (CN=host, O=Example, C=US).",
        ),
    ] = DnOrderChoice.openssl,
    local_time: Annotated[
        bool,
        typer.Option(
            "--local-time", help="Dates in the local time zone (TZ), with its offset, not UTC."
        ),
    ] = False,
) -> None:
    """Show every certificate in a file or served by an https:// server."""
    import json
    from datetime import UTC, datetime

    from provision.crypto import details as inspect

    with reported_errors(os_errors=True):
        label, bundle = _load_certificates(source, password_env, servername, connect)
        certificates = bundle.certificates
        _readable(label, certificates)
        records = [
            inspect.details(
                c, view.value, friendly_name=bundle.friendly_name(i), local_time=local_time
            )
            for i, c in enumerate(certificates)
        ]
        verification = None
        if ca is not None:
            verification = _verification(certificates, ca, datetime.now(UTC), dn_order.value)
        if output_format is FormatChoice.json:
            document: dict[str, object] = {"certificates": records}
            if verification is not None:
                document["verification"] = verification
            typer.echo(json.dumps(document, indent=2))
            return
        titles = [inspect.dn_string(c.subject, dn_order.value) for c in certificates]
        text = inspect.render_text(records, titles=titles, dn_order=dn_order.value)
        if verification is not None:
            if verification["verified"]:
                text += "\nChain: verified: " + " -> ".join(verification["chain"]) + "\n"
            else:
                text += f"\nChain: NOT verified: {verification['problem']}\n"
        typer.echo(text, nl=False)


@app.command()
def export(
    source: SourceArg,
    to: Annotated[ExportChoice, typer.Option("--to", help="Output encoding.")],
    out: Annotated[str, typer.Option("--out", metavar="PATH", help="File to write.")],
    chain: Annotated[
        list[str] | None,
        typer.Option("--chain", metavar="FILE", help="Certificates to append (repeat, in order)."),
    ] = None,
    password_env: PasswordEnvOpt = None,
    servername: ServernameOpt = None,
    connect: ConnectOpt = None,
) -> None:
    """Copy a certificate to a file as DER, PEM or PKCS#7 (never the private key).

    der: the first certificate only. pem and pkcs7: the first certificate, then the other
    certificates of SOURCE (a file's, or the chain an https:// server sends), then those of
    each --chain in the order given, duplicates dropped.
    """

    import os

    from provision import fsutil
    from provision.crypto import encode

    chain_files = chain or []
    with reported_errors(os_errors=True):
        if chain_files and to is ExportChoice.der:
            problem = "DER holds one certificate; use --to pem or --to pkcs7 with --chain"
            fail(f"{chain_files[0]}: {problem}")
        _, bundle = _load_certificates(source, password_env, servername, connect)
        certificates = list(bundle.certificates)
        for path in chain_files:
            certificates.extend(_load_file(path, None).certificates)
        certificates = _unique(certificates)
        if to is ExportChoice.der:
            data = encode.certificates_der(certificates[:1])
            written = 1
        elif to is ExportChoice.pem:
            data = encode.certificates_pem(certificates)
            written = len(certificates)
        else:
            data = encode.certificates_pkcs7(certificates)
            written = len(certificates)
        try:
            if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
                # Like cp: a missing folder is a typo more often than a wish to create it.
                raise FileNotFoundError(2, "No such file or directory")
            fsutil.write_atomic(out, data, 0o644)
        except OSError as exc:
            fail(f"{out}: cannot write: {exc.strerror or exc}")
        typer.echo(f"wrote {out} ({to.value}, {written} certificate{'s' * (written != 1)})")


@app.command()
def check(
    source: SourceArg,
    names: Annotated[
        list[str], typer.Option("--name", help="A DNS name or IP address that must be covered.")
    ],
    at: Annotated[
        str | None,
        typer.Option("--at", metavar="DATE", help="ISO 8601 date/time (naive = UTC); default now."),
    ] = None,
    servername: ServernameOpt = None,
    connect: ConnectOpt = None,
    ca: CaOpt = None,
    password_env: PasswordEnvOpt = None,
) -> None:
    """Exit 0 if the first certificate is valid at DATE and covers every --name, else 1.

    Each problem is printed on its own line on stdout. With --ca the chain (the file's or the
    server's other certificates as intermediates) must verify up to a root in that file.
    """
    from provision.crypto import chains
    from provision.crypto import details as inspect

    with reported_errors(os_errors=True):
        moment = _parse_at(at)
        label, bundle = _load_certificates(source, password_env, servername, connect)
        certificates = bundle.certificates
        _readable(label, certificates)
        leaf = certificates[0]
        problems = inspect.check_validity(leaf, moment) + inspect.check_names(leaf, names)
        if ca is not None:
            roots = _roots(ca)
            try:
                chains.verify(leaf, certificates[1:], roots, moment)
            except chains.ChainError as exc:
                # The leaf's own dates are already the first line; say them once.
                if not (exc.problem.rule == "validity" and exc.problem.certificate == leaf):
                    problems.append(exc.message)
    if problems:
        for problem in problems:
            typer.echo(f"{label}: {problem}")
        raise typer.Exit(1)
    typer.echo(f"{label}: OK, valid at {_iso(moment)} for {', '.join(names)}")


# --- loading ------------------------------------------------------------------------------


def _load_certificates(
    source: str, password_env: str | None, servername: str | None, connect: str | None
) -> tuple[str, Bundle]:
    """(label for messages, what the file holds or the server sent: at least one certificate)."""
    if source.lower().startswith(("https://", "http://")):
        host, port = _parse_url(source)
        from provision.crypto.decode import Bundle
        from provision.probe import bracket, fetch_chain

        label = f"https://{bracket(host)}:{port}"
        certificates = fetch_chain(host, port, connect=connect, servername=servername)
        return label, Bundle(tuple(certificates), None)
    if connect is not None or servername is not None:
        fail(f"{source}: --connect and --servername only apply to https:// URLs")
    bundle = _load_file(source, _password(password_env))
    if not bundle.certificates:
        fail(f"{source}: holds no certificate")
    return source, bundle


def _load_file(path: str, password: bytes | None) -> Bundle:
    from provision.crypto.decode import load_bundle

    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        fail(f"{path}: cannot read: {exc.strerror or exc}")
    return load_bundle(data, password=password, source=path)


def _roots(path: str) -> tuple[x509.Certificate, ...]:
    """The trusted roots of ``--ca``: at least one certificate, every one readable."""
    roots = _load_file(path, None).certificates
    if not roots:
        fail(f"{path}: holds no certificate (--ca needs the root certificates)")
    _readable(path, roots)
    return roots


def _readable(label: str, certificates: Sequence[x509.Certificate]) -> None:
    """Refuse, in one line, a certificate whose extensions cryptography cannot parse: every
    detail and check reads them."""
    from provision.crypto import details as inspect

    for number, certificate in enumerate(certificates, 1):
        problem = inspect.extensions_problem(certificate)
        if problem is not None:
            subject = inspect.openssl_name(certificate.subject)
            fail(f"{label}: certificate {number} ({subject}): {problem}")


def _password(variable: str | None) -> bytes | None:
    import os

    if variable is None:
        return None
    value = os.environ.get(variable)
    if value is None:
        fail(f"--password-env: environment variable {variable} is not set")
    return value.encode("utf-8")


def _parse_url(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        fail(f"{url}: only https:// URLs can be fetched")
    try:
        port = parts.port or 443
    except ValueError:
        fail(f"{url}: the port is not a number from 1 to 65535")
    if not parts.hostname:
        fail(f"{url}: no host name in the URL")
    return parts.hostname, port


def _verification(
    certificates: Sequence[x509.Certificate], ca: str, moment: datetime, dn_order: DnOrder
) -> Verification:
    """The ``verification`` member of ``show``'s output, the chain's names in ``dn_order``."""
    from provision.crypto import chains
    from provision.crypto import details as inspect

    roots = _roots(ca)
    try:
        path = chains.verify(certificates[0], certificates[1:], roots, moment)
    except chains.ChainError as exc:
        return {"verified": False, "chain": [], "problem": exc.message}
    chain = [inspect.dn_string(c.subject, dn_order) for c in path]
    return {"verified": True, "chain": chain, "problem": None}


def _parse_at(text: str | None) -> datetime:
    from datetime import UTC, datetime

    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"--at: {text!r} is not an ISO 8601 date or date-time")
    # A bare date parses as midnight; naive means UTC (documented).
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    from datetime import UTC

    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unique(certificates: list[x509.Certificate]) -> list[x509.Certificate]:
    seen: set[bytes] = set()
    kept = []
    for cert in certificates:
        fingerprint = cert.tbs_certificate_bytes + cert.signature
        if fingerprint not in seen:
            seen.add(fingerprint)
            kept.append(cert)
    return kept
