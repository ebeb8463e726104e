"""Windows hosts: their path flavour, and a transport that does not reach them yet.

A host is Windows by its inventory (``os: windows``, or Ansible's ``ansible_shell_type:
powershell`` or ``ansible_connection: winrm|psrp``). Its paths are built the Windows way
(``C:\\Program Files\\Cisco\\Certificates`` stays that), so everything that only needs the
playbook and the inventory works: validation, and ``provision render``, which writes what
would go to the host into a folder on the controller. Anything that must read or write the
host fails that host, and only that host, with one message saying what to use instead.
"""

from __future__ import annotations

from typing import NoReturn

from provision.errors import TransportError
from provision.transport.base import WINDOWS, CommandResult, FileState, Transport


class WindowsHost(Transport):
    paths = WINDOWS

    def __init__(self, host: str) -> None:
        self.host = host

    def resolve(self, path: str) -> str:
        # Validation refuses relative paths for a Windows host (no transport can say what
        # they are relative to); this is the guard behind it.
        if not self.paths.isabs(path):
            raise TransportError(
                f"{self.host}: '{path}' is not an absolute Windows path "
                "(C:\\... or \\\\server\\share\\...)"
            )
        return self.paths.normpath(path)

    def _unreachable(self) -> NoReturn:
        raise TransportError(
            f"{self.host} is a Windows host, and no transport reaches Windows hosts yet; "
            "`provision render PLAYBOOK -i INVENTORY --out DIR` writes the files it would get "
            "(site XML, PowerShell script) on this machine, for review and for running there"
        )

    async def start(self) -> None:
        self._unreachable()

    async def read(self, path: str) -> FileState:
        self._unreachable()

    async def stage(self, path: str, data: bytes, mode: int) -> str:
        self._unreachable()

    async def commit(self, staged: str, path: str, *, durable: bool = True) -> None:
        self._unreachable()

    async def flush(self) -> None:
        self._unreachable()

    async def create_exclusive(self, path: str, data: bytes, mode: int) -> bool:
        self._unreachable()

    async def remove(self, path: str, *, durable: bool = True) -> None:
        self._unreachable()

    async def remove_dir(self, path: str) -> None:
        self._unreachable()

    async def set_folder_mode(self, path: str, mode: int) -> None:
        self._unreachable()

    async def list_dir(self, path: str) -> list[str]:
        self._unreachable()

    async def run(self, command: str, timeout: float = 60.0) -> CommandResult:
        self._unreachable()
