"""Apply the example playbook to N SSH hosts (real sshd instances on loopback) and report
hosts per second for the first and the no-change run.

    python bench/ssh_fleet.py --hosts 20 [--forks 20] [--key ecdsa|rsa] [--out bench/results]

Each host is its own OpenSSH server on a free loopback port with its own host key and
certificates folder, as the integration tests start them (tests/sshd.py); the client logs in
as root with a key made for the run, and the host keys are written to a known_hosts file, so
host-key checking is on, as in production. Needs sshd and ssh-keygen (apt-get install
openssh-server) and root (to start sshd). Results: a table on stdout, and Markdown and JSON
under --out, to compare between commits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sshd import SshdFleet, keygen  # noqa: E402 - the same servers the tests start


def _fleet(count: int, folder: Path) -> SshdFleet:
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    shared = Path(tempfile.mkdtemp(prefix="provision-bench-sshd-"))
    shared.chmod(0o755)
    client_key = keygen(folder / "client_key")
    fleet = SshdFleet(folder, shared, sshd, client_key)
    fleet.authorized_keys.write_text(Path(f"{client_key}.pub").read_text())
    fleet.authorized_keys.chmod(0o644)
    fleet.start(count)
    return fleet


def _project(fleet: SshdFleet, folder: Path, key: str) -> tuple[Path, Path, Path]:
    playbook = yaml.safe_load((ROOT / "playbooks/callmanager-https.yml").read_text())
    playbook["hosts"] = "all"
    playbook["certificates"][0]["key"] = (
        {"type": "ecdsa", "curve": "p256"} if key == "ecdsa" else {"type": "rsa", "size": 2048}
    )
    hosts = {
        server.name: {
            "connection": "ssh",
            "address": "127.0.0.1",
            "port": server.port,
            "user": "root",
            "ssh_key": str(fleet.client_key),
            "fqdn": f"{server.name}.example.test",
            "certificates_dir": str(server.certificates),
            "www_root": str(server.folder / "www"),
        }
        for server in fleet.servers
    }
    (folder / "playbooks").mkdir()
    (folder / "inventory").mkdir()
    shutil.copytree(ROOT / "templates", folder / "templates")
    book = folder / "playbooks/fleet.yml"
    book.write_text(yaml.safe_dump(playbook, sort_keys=False))
    inventory = folder / "inventory/fleet.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=False))
    known = folder / "known_hosts"
    known.write_text("".join(server.known_hosts_line() for server in fleet.servers))
    return book, inventory, known


def _timed(command: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=20, help="sshd instances (up to ~50)")
    parser.add_argument("--forks", type=int, default=20)
    parser.add_argument("--key", choices=("ecdsa", "rsa"), default="ecdsa")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results")
    args = parser.parse_args()

    workspace = Path(tempfile.mkdtemp(prefix="provision-bench-ssh-"))
    (workspace / "sshd").mkdir()
    fleet = _fleet(args.hosts, workspace / "sshd")
    rows = []
    try:
        project = workspace / "project"
        project.mkdir()
        book, inventory, known = _project(fleet, project, args.key)
        base = [sys.executable, "-m", "provision"]
        common = [
            "-i",
            str(inventory),
            "--known-hosts",
            str(known),
            "--forks",
            str(args.forks),
            "--format",
            "json",
        ]
        for label, verb in (
            ("first apply", "apply"),
            ("no-change apply", "apply"),
            ("no-change plan", "plan"),
        ):
            seconds, result = _timed([*base, verb, str(book), *common], project)
            if result.returncode != 0:
                print(result.stdout[-2000:], result.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"{label} failed with exit {result.returncode}")
            summary = json.loads(result.stdout)["summary"]
            rows.append(
                {
                    "run": label,
                    "seconds": round(seconds, 3),
                    "hosts_per_second": round(args.hosts / seconds, 2),
                    "ms_per_host": round(seconds * 1000 / args.hosts, 1),
                    **summary,
                }
            )
    finally:
        fleet.stop_all()
        shutil.rmtree(fleet.shared, ignore_errors=True)
        shutil.rmtree(workspace, ignore_errors=True)

    header = "| run | seconds | hosts/s | ms/host | changed | ok | failed |"
    lines = [
        f"# SSH fleet: {args.hosts} hosts, {args.key} keys, forks {args.forks}",
        "",
        header,
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['run']} | {r['seconds']} | {r['hosts_per_second']} | {r['ms_per_host']} "
        f"| {r['changed']} | {r['ok']} | {r['failed']} |"
        for r in rows
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"ssh-{args.hosts}-{args.key}"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(
        json.dumps(
            {
                "hosts": args.hosts,
                "key": args.key,
                "forks": args.forks,
                "commit": commit,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
