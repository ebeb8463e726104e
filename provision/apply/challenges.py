"""HTTP-01 answers on a host: files in its challenge folder, which its sites serve.

An ACME order runs in a thread (certbot's ``acme`` blocks); each write or removal it asks
for is handed to the event loop that owns the host's transport and waited for, so the
answers go through the same transport, symlink rules and staged writes as every other file.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from typing import Any

from provision import layout
from provision.errors import ProvisionError
from provision.transport.base import Transport

# RFC 8555 8.3: a token is base64url. Anything else (a path, "..") is refused before it
# becomes a file name: the token comes from the CA.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_WAIT = 120.0  # seconds for one write on a slow host


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
        await self._transport.write(path, content, layout.ACME_TOKEN_MODE)
        if not self._made:
            # Made by the write if it was missing (0750, as every folder provision makes):
            # the server's workers read it, and it holds nothing secret.
            await self._transport.set_folder_mode(self._folder, layout.ACME_CHALLENGE_MODE)
            if self._parent_mode is not None:
                parent = self._transport.paths.dirname(self._folder)
                await self._transport.set_folder_mode(parent, self._parent_mode)
            self._made = True

    def _path(self, token: str) -> str:
        if not _TOKEN.match(token):
            raise ProvisionError(
                f"the ACME CA sent an http-01 token that is not base64url: {token[:80]!r}"
            )
        return self._transport.paths.join(self._folder, token)

    def _wait(self, job: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(job, self._loop).result(_WAIT)
