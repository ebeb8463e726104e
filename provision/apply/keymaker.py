"""Key generation off the event loop, in parallel across the controller's cores.

`cryptography` releases the GIL while OpenSSL generates a key, so a thread pool uses every
core without the pickling a process pool would need (bench/fleet.py measures both).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from provision.crypto import keys
from provision.crypto.types import PrivateKey
from provision.model.playbook import EcdsaKey, KeySpec, RsaKey


class KeyMaker:
    def __init__(self, workers: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=workers or os.cpu_count() or 1, thread_name_prefix="keygen"
        )

    async def generate(self, spec: KeySpec) -> PrivateKey:
        size = spec.size if isinstance(spec, RsaKey) else None
        curve = spec.curve if isinstance(spec, EcdsaKey) else None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, keys.generate, spec.type, size, curve)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
