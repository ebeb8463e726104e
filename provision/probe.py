"""Fetch the certificates a TLS server actually serves, without trusting them.

Used by ``cert show|check URL`` and by the checks after apply that prove each name is
served the certificate just written. Verification is off on purpose: we look at what is
served, including broken chains, and verify afterwards with our own rules.
"""

from __future__ import annotations

from cryptography import x509

from provision.errors import ProvisionError
from provision.model.names import is_ip

FETCH_TIMEOUT = 10.0  # seconds, for connecting, the handshake and openssl s_client


class ProbeError(ProvisionError):
    """The server could not be reached or sent nothing usable."""


def fetch_chain(
    host: str,
    port: int,
    *,
    connect: str | None = None,
    servername: str | None = None,
    method: str = "auto",
) -> list[x509.Certificate]:
    """Every certificate the server sends, leaf first, without verifying anything.

    Verification is off on purpose: the point is to look at what is served, including
    broken chains; ``check --ca`` verifies afterwards with our own rules. SNI is
    ``servername`` or the host, and none for an IP address (as browsers do).

    ``ssl`` exposes only the leaf publicly before Python 3.13, but ``_sslobj`` has had
    ``get_unverified_chain()`` since 3.10 (it backs the public 3.13 method); that is used
    when present. Otherwise (``method="openssl"`` forces it) ``openssl s_client -showcerts``
    is run and its PEM blocks parsed.
    """
    address = connect or host
    # Browsers send no SNI for an IP address, and neither do we.
    sni = servername or (None if is_ip(host) else host)
    where = f"https://{bracket(host)}:{port}"
    ders = None
    if method in ("auto", "ssl"):
        ders = _fetch_with_ssl(where, address, port, sni)
    if ders is None:
        return _fetch_with_openssl(where, address, port, sni)
    return _parse_ders(where, ders)


def _fetch_with_ssl(where: str, address: str, port: int, sni: str | None) -> list[bytes] | None:
    import socket
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((address, port), timeout=FETCH_TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=sni) as tls,
        ):
            getter = getattr(tls, "get_unverified_chain", None)  # 3.13+: DER bytes
            if getter is None:
                getter = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
            if getter is None:
                return None
            chain = getter() or []
    except OSError as exc:  # includes ssl.SSLError, timeouts, refused, DNS failures
        raise ProbeError(
            f"{where}: cannot fetch certificates from {bracket(address)}:{port}: {_reason(exc)}"
        ) from None
    return [c if isinstance(c, bytes) else c.public_bytes(2) for c in chain]  # 2 = ENCODING_DER


def _fetch_with_openssl(
    where: str, address: str, port: int, sni: str | None
) -> list[x509.Certificate]:
    import subprocess

    from provision.crypto.decode import load_bundle

    command = ["openssl", "s_client", "-showcerts", "-connect", f"{bracket(address)}:{port}"]
    command += ["-servername", sni] if sni else ["-noservername"]
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=FETCH_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProbeError(f"{where}: cannot run openssl s_client: {exc}") from None
    if b"-----BEGIN CERTIFICATE-----" not in result.stdout:
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = detail[-1] if detail else f"openssl exited with status {result.returncode}"
        raise ProbeError(
            f"{where}: cannot fetch certificates from {bracket(address)}:{port}: {reason}"
        )
    return list(load_bundle(result.stdout, source=f"{where} (openssl s_client)").certificates)


def _parse_ders(where: str, ders: list[bytes]) -> list[x509.Certificate]:
    from cryptography import x509

    if not ders:
        raise ProbeError(f"{where}: the server sent no certificate")
    try:
        return [x509.load_der_x509_certificate(d) for d in ders]
    except ValueError:
        raise ProbeError(f"{where}: the server sent a certificate that cannot be parsed") from None


def _reason(exc: OSError) -> str:
    text = str(exc) if not exc.strerror else exc.strerror
    return " ".join(text.split()) or type(exc).__name__


# --- helpers ------------------------------------------------------------------------------


def bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
