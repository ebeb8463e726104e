"""The same work as provision's example playbook, done by Ansible and pyinfra, for
bench/ssh_fleet.py's side-by-side rows.

Each peer copies the files provision made for a host (its three certificate outputs and its
site config, collected on the controller beforehand: the peers do not generate keys, so their
rows leave out the key generation provision's rows include) into the host's certificates
folder with the same modes, and runs the same reload command when one of them changed. Both
log in as the benchmark's own user, with the same key, known_hosts file and parallelism.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

# (name, mode) of every file a host gets, as provision's example playbook writes them.
FILES = (
    ("httpscert.cer", "0644"),
    ("httpscert.pem", "0644"),
    ("httpscert.key", "0600"),
)
CONFIG = ("default-web-site.conf", "0644")


def reload_command(certificates_dir: str) -> str:
    return f"test -s {certificates_dir}/httpscert.pem && touch {certificates_dir}/../reloaded"


def installed(tool: str) -> str | None:
    """The peer's command beside this Python (the `bench` extra), if installed."""
    found = Path(sys.executable).parent / tool
    return str(found) if found.exists() else shutil.which(tool)


def ansible_project(
    folder: Path, hosts: Mapping[str, dict[str, object]], key: Path, known: Path, forks: int
) -> list[str]:
    """Files for ``ansible-playbook``, pipelining on; the command that runs it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ansible.cfg").write_text(
        "[defaults]\n"
        f"forks = {forks}\n"
        "host_key_checking = True\n"
        "interpreter_python = /usr/bin/python3\n"
        "gathering = explicit\n"
        "retry_files_enabled = False\n"
        "stdout_callback = default\n"
        "[ssh_connection]\n"
        "pipelining = True\n"
        f"ssh_args = -o ControlMaster=auto -o ControlPersist=60s "
        f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes\n"
        f"control_path_dir = {folder / 'cp'}\n"
    )
    inventory = {
        "all": {
            "hosts": {
                name: {
                    "ansible_host": "127.0.0.1",
                    "ansible_port": data["port"],
                    "ansible_user": data["user"],
                    "ansible_ssh_private_key_file": str(key),
                    "certificates_dir": data["certificates_dir"],
                    "files": data["files"],
                }
                for name, data in hosts.items()
            }
        }
    }
    (folder / "inventory.json").write_text(json.dumps(inventory))
    tasks: list[dict[str, object]] = [
        {"file": {"path": "{{ certificates_dir }}", "state": "directory", "mode": "0750"}},
        {"file": {"path": "{{ certificates_dir }}/../nginx", "state": "directory", "mode": "0750"}},
    ]
    for name, mode in FILES:
        tasks.append(
            {
                "copy": {
                    "src": f"{{{{ files }}}}/{name}",
                    "dest": f"{{{{ certificates_dir }}}}/{name}",
                    "mode": mode,
                },
                "notify": "reload",
            }
        )
    tasks.append(
        {
            "copy": {
                "src": f"{{{{ files }}}}/{CONFIG[0]}",
                "dest": f"{{{{ certificates_dir }}}}/../nginx/{CONFIG[0]}",
                "mode": CONFIG[1],
            },
            "notify": "reload",
        }
    )
    play = {
        "hosts": "all",
        "gather_facts": False,
        "tasks": tasks,
        "handlers": [{"name": "reload", "shell": reload_command("{{ certificates_dir }}")}],
    }
    (folder / "site.json").write_text(json.dumps([play]))
    tool = installed("ansible-playbook") or "ansible-playbook"
    return [tool, "-i", "inventory.json", "site.json"]


def pyinfra_project(
    folder: Path, hosts: Mapping[str, dict[str, object]], key: Path, known: Path, forks: int
) -> list[str]:
    """Files for pyinfra 3; the command that runs it."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = [
        (
            name,
            {
                "ssh_hostname": "127.0.0.1",
                "ssh_port": data["port"],
                "ssh_user": data["user"],
                "ssh_key": str(key),
                "ssh_known_hosts_file": str(known),
                "ssh_strict_host_key_checking": "yes",
                "certificates_dir": data["certificates_dir"],
                "files": data["files"],
            },
        )
        for name, data in hosts.items()
    ]
    (folder / "inventory.py").write_text(f"hosts = {entries!r}\n")
    puts = "\n".join(
        f"ops.append(files.put(src=host.data.files + '/{name}', "
        f"dest=d + '/{name}', mode='{mode[1:]}'))"
        for name, mode in FILES
    )
    (folder / "deploy.py").write_text(
        "from pyinfra import host\n"
        "from pyinfra.operations import files, server\n"
        "from pyinfra.operations.util import any_changed\n"
        "d = host.data.certificates_dir\n"
        "files.directory(path=d, mode='750')\n"
        "files.directory(path=d + '/../nginx', mode='750')\n"
        "ops = []\n"
        f"{puts}\n"
        f"ops.append(files.put(src=host.data.files + '/{CONFIG[0]}', "
        f"dest=d + '/../nginx/{CONFIG[0]}', mode='{CONFIG[1][1:]}'))\n"
        f"server.shell(commands=[{reload_command('{d}')!r}.format(d=d)], "
        "_if=any_changed(*ops))\n"
    )
    tool = installed("pyinfra") or "pyinfra"
    return [tool, "-y", "--parallel", str(forks), "inventory.py", "deploy.py"]
