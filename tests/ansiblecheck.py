"""The real ``ansible-inventory --list`` (ansible-core, a test dependency only), run on many
inventories at once, and the view of its answer that provision's resolution is compared with.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from provision.inputs.inventory import Inventory

# What provision adds to a host's variables beside Ansible's names (its own spellings).
_OURS = {
    "address": "ansible_host",
    "port": "ansible_port",
    "user": "ansible_user",
    "connection": "ansible_connection",
    "ssh_key": "ansible_ssh_private_key_file",
    "become": "ansible_become",
    "become_user": "ansible_become_user",
}


def ansible_env(home: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HOME=home,
        ANSIBLE_LOCAL_TEMP=home,
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        # A source no plugin reads is an error, not a warning and an empty inventory.
        ANSIBLE_INVENTORY_UNPARSED_FAILED="1",
        ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="1",
    )
    return env


def available() -> bool:
    return shutil.which("ansible-inventory") is not None


def ansible_lists(sources: Sequence[Sequence[Path]]) -> list[dict[str, Any]]:
    """``ansible-inventory --list`` of each inventory (each given as its -i paths), run side
    by side: the command takes about a second to start."""
    with tempfile.TemporaryDirectory() as home:
        env = ansible_env(home)
        runs = []
        for paths in sources:
            argv = ["ansible-inventory", "--list"]
            for path in paths:
                argv += ["-i", str(path)]
            runs.append(
                subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            )
        results = []
        for run, paths in zip(runs, sources, strict=True):
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0, f"ansible-inventory {paths}: {err.decode()}"
            results.append(json.loads(out))
        return results


def ansible_view(listing: dict[str, Any]) -> dict[str, tuple[frozenset[str], dict[str, Any]]]:
    """host -> (its groups, all but ``all``; its variables) from a ``--list`` answer."""
    children: dict[str, list[str]] = {}
    direct: dict[str, list[str]] = {}
    for group, body in listing.items():
        if group != "_meta":
            children[group] = body.get("children", [])
            direct[group] = body.get("hosts", [])

    def hosts_of(group: str) -> set[str]:
        found = set(direct.get(group, []))
        for child in children.get(group, []):
            found |= hosts_of(child)
        return found

    hostvars = listing["_meta"]["hostvars"]
    every = hosts_of("all")
    view = {}
    for host in every:
        groups = frozenset(g for g in children if g != "all" and host in hosts_of(g))
        view[host] = (groups, dict(hostvars.get(host, {})))
    return view


def provision_view(inventory: Inventory) -> dict[str, tuple[frozenset[str], dict[str, Any]]]:
    view = {}
    for name, host in inventory.hosts.items():
        groups = frozenset(
            g for g, members in inventory.groups.items() if g != "all" and name in members
        )
        # Drop our spelling where it only mirrors the Ansible name the inventory gave.
        variables = {
            k: v
            for k, v in host.vars.items()
            if not (k in _OURS and _OURS[k] in host.vars and host.vars[_OURS[k]] == v)
        }
        view[name] = (groups, variables)
    return view


def ansible_selections(inventory: Path, patterns: Sequence[str]) -> list[list[str]]:
    """The hosts ``ansible PATTERN --list-hosts`` selects for each pattern, side by side."""
    with tempfile.TemporaryDirectory() as home:
        env = ansible_env(home)
        runs = [
            subprocess.Popen(
                ["ansible", pattern, "-i", str(inventory), "--list-hosts"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            for pattern in patterns
        ]
        results = []
        for run in runs:
            out, _ = run.communicate(timeout=120)
            lines = out.decode().splitlines()
            results.append([line.strip() for line in lines[1:]] if run.returncode == 0 else [])
        return results
