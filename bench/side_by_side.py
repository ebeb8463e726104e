"""An idle apply answered from the converged record, two provision trees interleaved in one run.

    python bench/side_by_side.py OLD_TREE NEW_TREE [--hosts 1000] [--rounds 15] [--key rsa]

``bench/fleet.py --tree`` measures one tree per run; on a shared machine the load moves more
between two runs than an idle apply's cost moves between two commits. Here one fleet (ECDSA
P-256 keys, or RSA-2048 with ``--key rsa``; local hosts, the example playbook) is applied
once, each tree records it (its own record folder and bytecode cache), and then the trees
take turns: ROUNDS idle applies each, answered from their record (checked: the record file is
left untouched), then a few ``apply --full`` each (a full evaluation plus recording). Prints
medians of wall and CPU (user + system of the child) seconds, with the load average at start
and end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

KEYS = {"ecdsa": {"type": "ecdsa", "curve": "p256"}, "rsa": {"type": "rsa", "size": 2048}}


def make_fleet(work: Path, tree: Path, hosts: int, key: str = "ecdsa") -> None:
    book = yaml.safe_load((tree / "playbooks" / "callmanager-https.yml").read_text())
    book["certificates"][0]["key"] = KEYS[key]
    (work / "site.yml").write_text(yaml.safe_dump(book, sort_keys=False))
    members = {
        f"cm-{i:04d}": {
            "address": f"10.{i // 65536}.{i // 256 % 256}.{i % 256 + 1}",
            "fqdn": f"cm-{i:04d}.example.com",
        }
        for i in range(hosts)
    }
    inventory = {
        "all": {
            "vars": {
                "connection": "local",
                "certificates_dir": f"{work}/fleet/{{{{ host.name }}}}/certificates",
                "www_root": f"{work}/fleet/{{{{ host.name }}}}/www",
            },
            "children": {"callmanager": {"hosts": members}},
        }
    }
    (work / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))


def timed(work: Path, tree: Path, label: str, *args: str, expect: str) -> tuple[float, float]:
    """(wall, cpu) seconds of ``python -m provision ARGS site.yml -i hosts.yml`` from ``tree``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    env["PROVISION_CACHE_DIR"] = str(work / f"records-{label}")
    env["PYTHONPYCACHEPREFIX"] = str(work / f"pycache-{label}")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    output = work / f"output-{label}.txt"
    started = time.perf_counter()
    with output.open("wb") as sink:
        child = subprocess.Popen(
            [sys.executable, "-m", "provision", *args, "site.yml", "-i", "hosts.yml"],
            cwd=work,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(child.pid, 0)  # the child's own CPU time, reaped here
    wall = time.perf_counter() - started
    text = output.read_text(errors="replace")
    if status != 0 or expect not in text:
        raise SystemExit(f"{tree} {' '.join(args)}: unexpected output:\n{text[-800:]}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tmpdir", default=None)
    parser.add_argument("--key", choices=sorted(KEYS), default="ecdsa")
    args = parser.parse_args()
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    work = Path(tempfile.mkdtemp(prefix="provision-side-by-side-", dir=args.tmpdir))
    make_fleet(work, trees["new"], args.hosts, args.key)
    print(f"{args.hosts} {args.key} hosts in {work}; load average {os.getloadavg()}", flush=True)
    timed(work, trees["new"], "new", "apply", expect="failed 0")
    records: dict[str, dict[Path, int]] = {}
    for label, tree in trees.items():
        for _ in range(2):  # the second run records (the first may see files just written)
            time.sleep(0.2)
            timed(work, tree, label, "apply", "--full", expect="changed 0")
        folder = work / f"records-{label}" / "converged"
        records[label] = {p: p.stat().st_mtime_ns for p in folder.glob("*.json")}
        if not records[label]:
            raise SystemExit(f"{tree}: the fleet was not recorded")
        timed(work, tree, label, "apply", expect="changed 0")  # bytecode compiled
    rows: dict[str, dict[str, list[float]]] = {
        label: {"wall": [], "cpu": [], "full wall": [], "full cpu": []} for label in trees
    }
    started_load = os.getloadavg()
    for index in range(args.rounds):
        for label in ("old", "new") if index % 2 == 0 else ("new", "old"):
            wall, cpu = timed(work, trees[label], label, "apply", expect="changed 0")
            folder = work / f"records-{label}" / "converged"
            if {p: p.stat().st_mtime_ns for p in folder.glob("*.json")} != records[label]:
                raise SystemExit(f"{trees[label]}: an idle apply was not answered from the record")
            rows[label]["wall"].append(wall)
            rows[label]["cpu"].append(cpu)
    for index in range(max(2, args.rounds // 5)):
        for label in ("old", "new") if index % 2 == 0 else ("new", "old"):
            wall, cpu = timed(work, trees[label], label, "apply", "--full", expect="changed 0")
            rows[label]["full wall"].append(wall)
            rows[label]["full cpu"].append(cpu)
    print(f"load average: start {started_load}, end {os.getloadavg()}")
    print(
        "| tree | idle apply (record) wall s | cpu s | min wall s | apply --full wall s | cpu s |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for label, tree in trees.items():
        row = rows[label]
        median = statistics.median
        print(
            f"| {label}: {tree} | {median(row['wall']):.3f} | {median(row['cpu']):.3f} "
            f"| {min(row['wall']):.3f} | {median(row['full wall']):.3f} "
            f"| {median(row['full cpu']):.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
