"""Hosts without ``ssh_key`` log in with the keys in ``~/.ssh`` (and the agent's), as ``ssh``
does; those key files are loaded once per run, not once per host (an RSA-3072 key file
costs about 0.7 s of CPU to load), unless ``~/.ssh/config`` may choose keys per host."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from sshd import SshdFleet, SshServer, sshd_fleet
from test_ssh import PLAYBOOK, isolated_home, known_hosts_for

from provision.api import load, run
from provision.transport.factory import ConnectOptions
from provision.transport.ssh.connection import default_keys

__all__ = ["isolated_home", "sshd_fleet"]  # fixtures, imported to be found

pytestmark = pytest.mark.integration


def project(folder: Path, servers: list[SshServer]) -> tuple[Path, Path]:
    hosts: dict[str, Any] = {
        server.name: {
            "address": "127.0.0.1",
            "port": server.port,
            "certificates_dir": str(folder / server.name / "certificates"),
        }
        for server in servers
    }
    inventory = {
        "all": {
            "vars": {"connection": "ssh", "user": "root"},  # no ssh_key
            "children": {"fleet": {"hosts": hosts}},
        }
    }
    folder.mkdir(parents=True, exist_ok=True)
    playbook = folder / "ssh.yml"
    playbook.write_text(PLAYBOOK)
    inventory_file = folder / "inventory.yml"
    inventory_file.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return playbook, inventory_file


def planned(playbook: Path, inventory: Path, known: str) -> dict[str, str]:
    loaded = load(playbook, inventory, connect=ConnectOptions(known_hosts=known))
    _plan, report = run(loaded, apply=False)
    return {h.host: h.error or h.status for h in report.hosts}


def test_hosts_without_ssh_key_use_the_keys_in_dot_ssh(
    sshd_fleet: SshdFleet, tmp_path: Path, isolated_home: Path
) -> None:
    servers = sshd_fleet.start(2)
    playbook, inventory = project(tmp_path / "project", servers)
    known = str(known_hosts_for(tmp_path / "known_hosts", servers))
    dot_ssh = isolated_home / ".ssh"
    dot_ssh.mkdir(mode=0o700)

    # No key anywhere: both hosts refuse the login.
    assert all("authentication failed" in r for r in planned(playbook, inventory, known).values())

    shutil.copyfile(sshd_fleet.client_key, dot_ssh / "id_ecdsa")
    (dot_ssh / "id_ecdsa").chmod(0o600)
    assert set(planned(playbook, inventory, known).values()) == {"changed"}

    # A config that may name other keys per host: asyncssh reads it and loads what it names
    # (here the same file under another name), per connection, as before.
    (dot_ssh / "id_ecdsa").rename(dot_ssh / "fleet_key")
    (dot_ssh / "config").write_text(f"Host *\n  IdentityFile {dot_ssh / 'fleet_key'}\n")
    assert set(planned(playbook, inventory, known).values()) == {"changed"}


def test_the_keys_are_loaded_once_per_run(isolated_home: Path, sshd_fleet: SshdFleet) -> None:
    dot_ssh = isolated_home / ".ssh"
    dot_ssh.mkdir(mode=0o700)
    shutil.copyfile(sshd_fleet.client_key, dot_ssh / "id_ecdsa")

    async def twice() -> tuple[object, object]:
        loop = asyncio.get_running_loop()
        return default_keys(loop), default_keys(loop)

    first, second = asyncio.run(twice())
    assert first is second and first is not None and len(first) == 1  # type: ignore[arg-type]
    other_run, _ = asyncio.run(twice())
    assert other_run is not first  # a new run (event loop) loads them anew

    (dot_ssh / "config").write_text("Host web-*\n  IdentitiesOnly yes\n")
    assert asyncio.run(twice()) == (None, None)  # the config decides, per host
