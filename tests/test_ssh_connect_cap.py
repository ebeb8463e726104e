"""``connect_concurrency`` (``--connect-concurrency``): how many SSH connections a run starts
at once, apart from ``--forks``, against a real sshd.

sshd's own ``MaxStartups`` shows it: sshd drops a new connection while that many others are
still unauthenticated (bastions and busy servers are set so). Many hosts behind one sshd are
started all at once without a cap, and some are dropped; with a cap below ``MaxStartups``
every host gets through. No timing is asserted: only which hosts could be reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sshd import SshdFleet, SshServer, sshd_fleet
from test_ssh import PLAYBOOK, isolated_home, known_hosts_for

from provision.api import load, run
from provision.cli.common import CONNECT_CONCURRENCY
from provision.transport.factory import ConnectOptions

__all__ = ["isolated_home", "sshd_fleet"]  # fixtures, imported to be found

pytestmark = pytest.mark.integration

HOSTS = 12
MAX_STARTUPS = 3  # one above the cap: sshd learns of an authentication a moment after the client


def behind_one_sshd(folder: Path, fleet: SshdFleet, server: SshServer) -> tuple[Path, Path]:
    """``HOSTS`` inventory hosts that are all the one sshd (as hosts behind a bastion)."""
    hosts: dict[str, Any] = {
        f"web-{index:02d}": {
            "address": "127.0.0.1",
            "port": server.port,
            "certificates_dir": str(folder / f"web-{index:02d}" / "certificates"),
        }
        for index in range(HOSTS)
    }
    inventory = {
        "all": {
            "vars": {
                "connection": "ssh",
                "user": "root",
                "ssh_key": str(fleet.client_key),
            },
            "children": {"fleet": {"hosts": hosts}},
        }
    }
    folder.mkdir(parents=True, exist_ok=True)
    playbook = folder / "ssh.yml"
    playbook.write_text(PLAYBOOK)
    inventory_file = folder / "inventory.yml"
    inventory_file.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return playbook, inventory_file


def failed(playbook: Path, inventory: Path, **options: Any) -> dict[str, str]:
    """A plan (nothing written): the hosts that failed, with their errors."""
    loaded = load(playbook, inventory, forks=HOSTS, connect=ConnectOptions(**options))
    _plan, report = run(loaded, apply=False)
    assert len(report.hosts) == HOSTS
    return {h.host: h.error or "" for h in report.hosts if h.status == "failed"}


def test_the_cap_keeps_connection_starts_within_what_sshd_accepts(
    sshd_fleet: SshdFleet, tmp_path: Path
) -> None:
    sshd_fleet.extra_config = [f"MaxStartups {MAX_STARTUPS}"]
    (server,) = sshd_fleet.start(1)
    playbook, inventory = behind_one_sshd(tmp_path / "project", sshd_fleet, server)
    known = str(known_hosts_for(tmp_path / "known_hosts", [server]))

    # Without a cap, every host starts at once: sshd drops those beyond MaxStartups.
    dropped = failed(playbook, inventory, known_hosts=known, connect_concurrency=0)
    assert dropped, "sshd dropped no connection: the check below would prove nothing"
    assert all("127.0.0.1" in error for error in dropped.values()), dropped

    # With a cap below MaxStartups (forks still let every host run at once), none is.
    assert failed(playbook, inventory, known_hosts=known, connect_concurrency=2) == {}


def test_the_cli_default_is_the_api_default() -> None:
    assert ConnectOptions().connect_concurrency == CONNECT_CONCURRENCY
