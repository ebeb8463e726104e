"""HTTP-01 answers on a host: files in its challenge folder, which its sites serve.

An ACME order runs in a thread (certbot's ``acme`` blocks); each write or removal it asks
for is handed to the event loop that owns the host's transport and waited for, so the
answers go through the same transport, symlink rules and staged writes as every other file.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Coroutine
from typing import Any

from provision import layout
from provision.errors import ProvisionError
from provision.transport.base import Transport

# RFC 8555 8.3: a token is base64url. Anything else (a path, "..") is refused before it
# becomes a file name: the token comes from the CA.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_WAIT = 120.0  # seconds for one write on a slow host
# How long a site just reloaded may take to serve the challenge folder: a reload by signal
# (nginx -s reload, apachectl graceful, HAProxy's USR2) returns before the new config is live.
SERVED_WITHIN = 20.0


class HostChallengeFiles:
    """``sources.base.ChallengeFiles`` on one host's challenge folder."""

    def __init__(self, transport: Transport, folder: str, parent_mode: int | None) -> None:
        self._transport = transport
        self._folder = folder
        # The certificates directory's mode when the plan sets one: set before the CA looks,
        # since the server's workers must cross it to reach the challenge folder.
        self._parent_mode = parent_mode
        self._loop = asyncio.get_running_loop()
        self._made = False

    def put(self, token: str, content: bytes) -> None:
        self._wait(self._put(self._path(token), content))

    def remove(self, token: str) -> None:
        self._wait(self._transport.remove(self._path(token)))

    async def _put(self, path: str, content: bytes) -> None:
        await put_token(self._transport, path, content, None if self._made else self._parent_mode)
        self._made = True

    def _path(self, token: str) -> str:
        if not _TOKEN.match(token):
            raise ProvisionError(
                f"the ACME CA sent an http-01 token that is not base64url: {token[:80]!r}"
            )
        return self._transport.paths.join(self._folder, token)

    def _wait(self, job: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(job, self._loop).result(_WAIT)


async def put_token(
    transport: Transport, path: str, content: bytes, parent_mode: int | None
) -> None:
    """One file in the challenge folder, the folder made readable by the server's workers
    (a write makes a missing folder 0750, as every folder provision makes; it holds nothing
    secret), and the certificates directory given ``parent_mode``, the plan's mode for it,
    before the CA looks: the workers cross it to reach the challenge folder."""
    await transport.write(path, content, layout.ACME_TOKEN_MODE)
    folder = transport.paths.dirname(path)
    await transport.set_folder_mode(folder, layout.ACME_CHALLENGE_MODE)
    if parent_mode is not None:
        await transport.set_folder_mode(transport.paths.dirname(folder), parent_mode)


async def wait_served(
    transport: Transport,
    folder: str,
    endpoints: list[tuple[str, int, str]],
    thumbprint: str,
    parent_mode: int | None,
) -> None:
    """Wait, at most ``SERVED_WITHIN`` seconds, until every (address, port, host name) of
    ``endpoints`` answers a probe in the challenge folder as the CA will be answered: with
    ``PROBE.THUMBPRINT`` (a file's content, or HAProxy's own answer). The probe comes from
    the controller, which may not reach the host as the CA does: after the wait the order
    goes ahead anyway, and the CA's answer decides."""
    probe = "provision-self-check-" + secrets.token_hex(8)
    expected = f"{probe}.{thumbprint}".encode()
    path = transport.paths.join(folder, probe)
    await put_token(transport, path, expected, parent_mode)
    try:
        deadline = time.monotonic() + SERVED_WITHIN
        pending = list(endpoints)
        while pending and time.monotonic() < deadline:
            answers = await asyncio.gather(
                *(_get(address, port, name, layout.ACME_CHALLENGE_PATH + probe)
                  for address, port, name in pending)
            )  # fmt: skip
            pending = [e for e, body in zip(pending, answers, strict=True) if body != expected]
            if pending:
                await asyncio.sleep(0.2)
    finally:
        await transport.remove(path)


async def _get(address: str, port: int, name: str, path: str) -> bytes | None:
    """The body of ``GET path`` (HTTP/1.0, so the server closes), or None."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 2.0)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {name}\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(1 << 16), 2.0)
        while answer and len(answer) < 1 << 16:
            more = await asyncio.wait_for(reader.read(1 << 16), 2.0)
            if not more:
                break
            answer += more
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return body if head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")) else None
