"""Apply the example playbook to N SSH hosts (real sshd instances on loopback), with provision
and, side by side on the same hosts, Ansible (pipelining on) and pyinfra 3 doing the same
work when installed (``pip install -e '.[bench]'``); hosts per second and, for every row,
what each host was asked: channels opened, exec requests, SFTP requests and round trips.

    python bench/ssh_fleet.py --hosts 50 [--forks N] [--connect-concurrency N] [--key ecdsa|rsa]
        [--sftp internal|server] [--bashrc-guard] [--peers ansible,pyinfra | --no-peers]
        [--sweep F:C,... --rounds 3] [--tmpdir DIR] [--out bench/results]

Each host is its own OpenSSH server on a free loopback port with its own host key and folder,
as the integration tests start them (tests/sshd.py); host keys are in a known_hosts file, so
host-key checking is on. Every tool logs in as the benchmark's own user, ``provbench``
(created with useradd if missing; never one of the machine's users), whose ``.bashrc`` costs
about 50 ms, as login scripts on real servers do (``--bashrc-guard``: the same file behind
Debian's guard for non-interactive shells). ``--sftp server`` serves SFTP with the stock
sftp-server, which sshd starts through that login shell. Needs sshd, ssh-keygen, useradd and
root (to start sshd and make the user).

Every row has its wall time and two CPU figures, counted by cpuacct cgroups: the tool's
(its process and every process it started) and the hosts' sshd (every connection's
processes: login shells, sftp-server, whatever the tool ran there). ``--key rsa`` adds a
keygen floor row (the keys made with provision's own call, plus the no-change apply);
a connect floor row is OpenSSH's own client doing the least any tool can (connect, log in,
start SFTP) on every host at once; ``--sweep`` runs provision alone for each
``--forks``:``--connect-concurrency`` pair in turn. An untimed plan runs first, so that no row
pays for compiling bytecode.

Counts come from a separate pass on two more hosts whose sshd logs every channel and exec
request (LogLevel DEBUG1), so logging costs nothing in the timed rows; provision's SFTP
requests and round trips are counted in that pass by tests/ssh_counts.py (the peers' SFTP,
done by their own clients, is not counted). Results: a table on stdout, Markdown and JSON under
--out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import pwd
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import ssh_peers  # noqa: E402
from sshd import SshdFleet, keygen  # noqa: E402 - the same servers the tests start

USER = "provbench"
BASHRC_MS = 50.0
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def bench_user(guard: bool) -> pwd.struct_passwd:
    """The benchmark's own login user, with a .bashrc that costs about 50 ms of CPU."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", USER], check=True)
    subprocess.run(["usermod", "-p", "*", USER], check=True, capture_output=True)
    entry = pwd.getpwnam(USER)
    loops = _calibrate()
    lines = ["# provision bench: a login script that costs ~50 ms, like real ones"]
    if guard:
        lines += ["case $- in", "  *i*) ;;", "  *) return;;", "esac"]
    lines += [f"i=0; while [ $i -lt {loops} ]; do i=$((i+1)); done; unset i"]
    rc = Path(entry.pw_dir) / ".bashrc"
    rc.write_text("\n".join(lines) + "\n")
    os.chown(rc, entry.pw_uid, entry.pw_gid)
    return entry


def _calibrate() -> int:
    """Loop count for BASHRC_MS of bash's CPU on this machine (median of three). CPU, not
    wall time: on a loaded machine the wall time of a loop is several times its CPU, and a
    .bashrc calibrated by it costs a fraction of what it should."""
    loops = 100000
    script = f"i=0; while [ $i -lt {loops} ]; do i=$((i+1)); done"
    empty = []
    times = []
    for _ in range(3):
        started = client_cpu()
        subprocess.run(["bash", "-c", "i=0"], check=True)
        empty.append(client_cpu() - started)
        started = client_cpu()
        subprocess.run(["bash", "-c", script], check=True)
        times.append(client_cpu() - started)
    per_loop = max(1e-4, sorted(times)[1] - sorted(empty)[1]) / loops
    return max(1000, int(BASHRC_MS / 1000 / per_loop))


def _fleet(count: int, folder: Path, sftp: str, log_level: str = "ERROR") -> SshdFleet:
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    shared = Path(tempfile.mkdtemp(prefix="provision-bench-sshd-"))
    shared.chmod(0o755)
    folder.mkdir(parents=True, exist_ok=True)
    client_key = keygen(folder / "client_key")
    fleet = SshdFleet(folder, shared, sshd, client_key)
    fleet.sftp_subsystem = "internal-sftp" if sftp == "internal" else SFTP_SERVER
    fleet.log_level = log_level
    fleet.authorized_keys.write_text(Path(f"{client_key}.pub").read_text())
    fleet.authorized_keys.chmod(0o644)
    fleet.start(count)
    return fleet


class Hosts:
    """The hosts' own folders (certificates, site config), owned by the bench user."""

    def __init__(self, fleet: SshdFleet, user: pwd.struct_passwd) -> None:
        self.fleet, self.user = fleet, user
        self.root = Path(tempfile.mkdtemp(prefix="provision-bench-hosts-"))
        self.root.chmod(0o755)
        os.chown(self.root, user.pw_uid, user.pw_gid)

    def certificates(self, name: str) -> Path:
        return self.root / name / "certificates"

    def wipe(self) -> None:
        for entry in self.root.iterdir():
            shutil.rmtree(entry)


def _project(fleet: SshdFleet, hosts: Hosts, folder: Path, key: str) -> tuple[Path, Path, Path]:
    playbook = yaml.safe_load((ROOT / "playbooks/callmanager-https.yml").read_text())
    playbook["hosts"] = "all"
    playbook["certificates"][0]["key"] = (
        {"type": "ecdsa", "curve": "p256"} if key == "ecdsa" else {"type": "rsa", "size": 2048}
    )
    site = playbook["sites"][0]
    site["reload"] = True  # the one shell of a changed host: its test and its reload
    site["test_command"] = "test -s {{ certificates_dir }}/httpscert.pem"
    site["reload_command"] = "touch {{ certificates_dir }}/../reloaded"
    inventory = {
        server.name: {
            "connection": "ssh",
            "address": "127.0.0.1",
            "port": server.port,
            "user": USER,
            "ssh_key": str(fleet.client_key),
            "fqdn": f"{server.name}.example.test",
            "certificates_dir": str(hosts.certificates(server.name)),
            "www_root": str(hosts.root / server.name / "www"),
        }
        for server in fleet.servers
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "playbooks").mkdir()
    (folder / "inventory").mkdir()
    shutil.copytree(ROOT / "templates", folder / "templates")
    book = folder / "playbooks/fleet.yml"
    book.write_text(yaml.safe_dump(playbook, sort_keys=False))
    inventory_file = folder / "inventory/fleet.yml"
    inventory_file.write_text(yaml.safe_dump({"all": {"hosts": inventory}}, sort_keys=False))
    known = folder / "known_hosts"
    known.write_text("".join(server.known_hosts_line() for server in fleet.servers))
    return book, inventory_file, known


def _env() -> dict[str, str]:
    """Bytecode cached (the sandbox sets PYTHONDONTWRITEBYTECODE: every run would compile
    every module), and the converged record out of the way (SSH runs never use it)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "provision-bench-pyc")
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


def _timed(
    command: list[str], cwd: Path, group: CpuGroup | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    result = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,  # (and so the connect floor's ssh processes' too)
        env=_env(),
        preexec_fn=group.enter if group else None,
    )
    return time.perf_counter() - started, result


def client_cpu() -> float:
    """CPU seconds of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


CPUACCT = Path("/sys/fs/cgroup/cpuacct")


class CpuGroup:
    """A cgroup (v1 cpuacct) that counts the CPU of every process ever in it, with all their
    descendants. Needed for sshd: its per-connection monitor exits without waiting for the
    session's process (which runs internal-sftp, the login shell and its commands), so the
    listener's cutime misses it; and for the peers, whose ssh ControlPersist masters leave
    their parent. None of it where the machine has no writable cpuacct hierarchy."""

    def __init__(self, name: str) -> None:
        self.path = CPUACCT / f"provision-bench-{os.getpid()}-{name}"
        self.path.mkdir()

    @staticmethod
    def make(name: str) -> CpuGroup | None:
        try:
            return CpuGroup(name)
        except OSError:
            return None

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def enter(self) -> None:
        """In a child before exec: the child joins the group."""
        with open(self.path / "cgroup.procs", "w") as procs:
            procs.write("0\n")

    def seconds(self) -> float:
        return int((self.path / "cpuacct.usage").read_text()) / 1e9

    def remove(self) -> None:
        for _ in range(50):  # the last processes' exits
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def measured(
    command: list[str], cwd: Path, sshd: CpuGroup | None, client: CpuGroup | None
) -> tuple[float, float | None, float | None, subprocess.CompletedProcess[str]]:
    """Wall seconds, the tool's CPU (with every process it started) and sshd's CPU (every
    connection's processes) of one run; None for a CPU the machine cannot count."""
    client_before = client.seconds() if client else 0.0
    sshd_before = sshd.seconds() if sshd else 0.0
    seconds, result = _timed(command, cwd, client)
    if sshd is None or client is None:
        return seconds, None, None, result
    after = sshd.seconds()
    for _ in range(25):  # the connections' ends (sshd's share of a close)
        time.sleep(0.2)
        now = sshd.seconds()
        if now - after < 0.005:
            break
        after = now
    return seconds, client.seconds() - client_before, after - sshd_before, result


class Tool:
    """One tool's runs: first apply, no-change apply, and (provision) plan."""

    def __init__(self, name: str, runs: dict[str, list[str]], cwd: Path) -> None:
        self.name, self.runs, self.cwd = name, runs, cwd


def provision_tool(
    book: Path, inventory: Path, known: Path, forks: int, cap: int | None, cwd: Path
) -> Tool:
    base = [sys.executable, "-m", "provision"]
    common = ["-i", str(inventory), "--known-hosts", str(known), "--forks", str(forks)]
    if cap is not None:
        common += ["--connect-concurrency", str(cap)]
    common += ["--format", "json"]
    return Tool(
        "provision",
        {
            "first apply": [*base, "apply", str(book), *common],
            "no-change apply": [*base, "apply", str(book), *common],
            "no-change plan": [*base, "plan", str(book), *common],
        },
        cwd,
    )


def peer_tools(
    fleet: SshdFleet,
    hosts: Hosts,
    files: Path,
    known: Path,
    forks: int,
    folder: Path,
    which: str = "ansible,pyinfra",
) -> list[Tool]:
    data = {
        server.name: {
            "port": server.port,
            "user": USER,
            "certificates_dir": str(hosts.certificates(server.name)),
            "files": str(files / server.name),
        }
        for server in fleet.servers
    }
    tools = []
    if "ansible" in which and ssh_peers.installed("ansible-playbook"):
        command = ssh_peers.ansible_project(
            folder / "ansible", data, fleet.client_key, known, forks
        )
        tools.append(
            Tool(
                "ansible (pipelining)",
                {"first apply": command, "no-change apply": command},
                folder / "ansible",
            )
        )
    if "pyinfra" in which and ssh_peers.installed("pyinfra"):
        command = ssh_peers.pyinfra_project(
            folder / "pyinfra", data, fleet.client_key, known, forks
        )
        tools.append(
            Tool(
                "pyinfra", {"first apply": command, "no-change apply": command}, folder / "pyinfra"
            )
        )
    return tools


def _check(tool: str, run: str, result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode not in (0,):
        print(result.stdout[-3000:], result.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{tool}: {run} failed with exit {result.returncode}")


def collect_files(fleet: SshdFleet, hosts: Hosts, files: Path) -> None:
    """What provision wrote on each host: the peers copy the same files."""
    for server in fleet.servers:
        target = files / server.name
        target.mkdir(parents=True, exist_ok=True)
        certificates = hosts.certificates(server.name)
        for name, _ in ssh_peers.FILES:
            shutil.copyfile(certificates / name, target / name)
        shutil.copyfile(
            certificates.parent / "nginx" / ssh_peers.CONFIG[0], target / ssh_peers.CONFIG[0]
        )
    for path in files.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)


def counting_pass(args: argparse.Namespace, user: pwd.struct_passwd, work: Path) -> dict[str, Any]:
    """Per host, per tool and run: channels, exec requests (sshd's own log) and, for
    provision, SFTP requests and round trips (tests/ssh_counts.py, in this process)."""
    from ssh_counts import counting

    from provision.api import load, run
    from provision.transport.base import ConnectOptions

    fleet = _fleet(2, work / "sshd", args.sftp, log_level="DEBUG1")
    hosts = Hosts(fleet, user)
    counts: dict[str, Any] = {}
    try:
        book, inventory, known = _project(fleet, hosts, work / "project", args.key)
        previous = os.getcwd()
        os.chdir(work / "project")
        try:
            for label in ("first apply", "no-change apply", "no-change plan"):
                marks = _log_marks(fleet)
                with counting() as seen:
                    loaded = load(book, inventory, connect=ConnectOptions(known_hosts=str(known)))
                    run(loaded, apply=label != "no-change plan")
                server = _log_counts(fleet, marks)
                sftp = [seen.at(s.port) for s in fleet.servers]
                counts[f"provision/{label}"] = {
                    **server,
                    "sftp_requests": max(c.sftp_requests for c in sftp),
                    "sftp_rounds": max(c.sftp_rounds for c in sftp),
                }
        finally:
            os.chdir(previous)
        collect_files(fleet, hosts, work / "files")
        if args.peers:
            peers = peer_tools(fleet, hosts, work / "files", known, 2, work / "peers", args.peers)
            for tool in peers:
                hosts.wipe()
                for label, command in tool.runs.items():
                    marks = _log_marks(fleet)
                    _seconds, result = _timed(command, tool.cwd)
                    _check(tool.name, label, result)
                    counts[f"{tool.name}/{label}"] = _log_counts(fleet, marks)
    finally:
        fleet.stop_all()
        shutil.rmtree(fleet.shared, ignore_errors=True)
        shutil.rmtree(hosts.root, ignore_errors=True)
    return counts


def _log_marks(fleet: SshdFleet) -> list[int]:
    return [server.log.stat().st_size for server in fleet.servers]


def _log_counts(fleet: SshdFleet, marks: list[int]) -> dict[str, int]:
    """Channels and exec requests sshd logged since ``marks``: the most of any host."""
    channels, execs = [], []
    for server, mark in zip(fleet.servers, marks, strict=True):
        with server.log.open("rb") as log:
            log.seek(mark)
            text = log.read().decode(errors="replace")
        channels.append(text.count("server_input_channel_open: ctype session"))
        execs.append(text.count("request exec reply"))
    return {"channels": max(channels), "execs": max(execs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=20, help="sshd instances (up to ~100)")
    parser.add_argument("--forks", type=int, default=None, help="default: provision's")
    parser.add_argument(
        "--connect-concurrency", type=int, default=None, help="provision's; default: its own"
    )
    parser.add_argument("--key", choices=("ecdsa", "rsa"), default="ecdsa")
    parser.add_argument("--sftp", choices=("internal", "server"), default="internal")
    parser.add_argument("--bashrc-guard", action="store_true")
    parser.add_argument("--no-peers", action="store_true", help="provision's rows only")
    parser.add_argument(
        "--peers", default="ansible,pyinfra", help="which peers run (comma list; default both)"
    )
    parser.add_argument(
        "--sweep",
        default=None,
        metavar="F:C,...",
        help="instead of the rows: provision's first and no-change apply for each --forks F "
        "and --connect-concurrency C, taking turns, --rounds times",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tmpdir", type=Path, default=None, help="where fleets are made")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results")
    args = parser.parse_args()
    # Stopped with SIGTERM, the fleet's sshd processes and folders are still cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.no_peers:
        args.peers = ""
    if args.forks is None:
        from provision.cli.common import FORKS

        args.forks = FORKS
    if args.tmpdir is not None:
        args.tmpdir.mkdir(parents=True, exist_ok=True)
        args.tmpdir.chmod(0o755)
        tempfile.tempdir = str(args.tmpdir)

    user = bench_user(args.bashrc_guard)
    workspace = Path(tempfile.mkdtemp(prefix="provision-bench-ssh-"))
    workspace.chmod(0o755)
    load_start = os.getloadavg()
    counts = {} if args.sweep else counting_pass(args, user, workspace / "counting")
    fleet = _fleet(args.hosts, workspace / "sshd", args.sftp)
    hosts = Hosts(fleet, user)
    sshd_group, client_group = CpuGroup.make("sshd"), CpuGroup.make("client")
    if sshd_group is not None:
        for server in fleet.servers:
            assert server.process is not None
            sshd_group.add(server.process.pid)  # every connection's processes follow
    rows: list[dict[str, Any]] = []
    loads: list[float] = []

    def one(tool: Tool, label: str, command: list[str], name: str | None = None) -> float:
        seconds, client, server, result = measured(command, tool.cwd, sshd_group, client_group)
        _check(tool.name, label, result)
        loads.append(os.getloadavg()[0])
        row = _row(tool.name, label, seconds, args.hosts, counts)
        row.update(
            tool=name or tool.name,
            client_cpu=None if client is None else round(client, 2),
            sshd_cpu=None if server is None else round(server, 2),
        )
        row["load"] = round(loads[-1], 2)
        rows.append(row)
        print(_line(row), flush=True)
        return seconds

    try:
        project = workspace / "project"
        book, inventory, known = _project(fleet, hosts, project, args.key)
        # An untimed plan first: with the bytecode cache of a fresh checkout or an edited
        # tree, the first run compiles every module it imports (up to 2.4 s of CPU here,
        # with nothing cached), which would fall on the first apply's row alone.
        warm = provision_tool(book, inventory, known, args.forks, None, project)
        _check("provision", "warm-up plan", _timed(warm.runs["no-change plan"], project)[1])
        if args.sweep:
            sweep(args, fleet, hosts, book, inventory, known, project, one)
        else:
            tool = provision_tool(
                book, inventory, known, args.forks, args.connect_concurrency, project
            )
            hosts.wipe()
            for label, command in tool.runs.items():
                one(tool, label, command)
            if args.key == "rsa":
                rows.append(keygen_floor(args.hosts, rows))
                print(_line(rows[-1]), flush=True)
            floor = connect_floor(fleet, known, workspace)
            one(floor, CONNECT_FLOOR, floor.runs[CONNECT_FLOOR])
            rows[-1]["no_change_over_floor"] = round(
                ours_seconds(rows, "no-change apply") / rows[-1]["seconds"], 2
            )
            if args.peers:
                collect_files(fleet, hosts, workspace / "files")
                peers = peer_tools(
                    fleet, hosts, workspace / "files", known, args.forks, workspace, args.peers
                )
                for peer in peers:
                    hosts.wipe()
                    for label, command in peer.runs.items():
                        one(peer, label, command)
    finally:
        fleet.stop_all()
        for group in (sshd_group, client_group):
            if group is not None:
                group.remove()
        shutil.rmtree(fleet.shared, ignore_errors=True)
        shutil.rmtree(hosts.root, ignore_errors=True)
        shutil.rmtree(workspace, ignore_errors=True)
    load_end = os.getloadavg()
    text = _table(args, rows, load_start, load_end)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / (
        f"ssh-{args.hosts}-{args.key}-{args.sftp}{'-guard' if args.bashrc_guard else ''}"
        f"{'-sweep' if args.sweep else ''}"
    )
    stem.with_suffix(".md").write_text(text)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    stem.with_suffix(".json").write_text(
        json.dumps(
            {
                "hosts": args.hosts,
                "key": args.key,
                "forks": args.forks,
                "connect_concurrency": args.connect_concurrency,
                "sftp": args.sftp,
                "bashrc_guard": args.bashrc_guard,
                "commit": commit,
                "load": {"start": load_start, "end": load_end, "per_row": loads},
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


def sweep(
    args: argparse.Namespace,
    fleet: SshdFleet,
    hosts: Hosts,
    book: Path,
    inventory: Path,
    known: Path,
    project: Path,
    one: Any,
) -> None:
    """provision's first and no-change apply for each (forks, connect concurrency), the
    settings taking turns so that the machine's load falls on all alike."""
    settings = []
    for item in args.sweep.split(","):
        forks, _, cap = item.partition(":")
        settings.append((int(forks), int(cap or 0)))
    for _ in range(args.rounds):
        for forks, cap in settings:
            tool = provision_tool(book, inventory, known, forks, cap, project)
            hosts.wipe()
            name = f"provision forks {forks} cap {cap or '-'}"
            for label in ("first apply", "no-change apply"):
                one(tool, label, tool.runs[label], name)


CONNECT_FLOOR = "connect, log in, start SFTP"


def connect_floor(fleet: SshdFleet, known: Path, folder: Path) -> Tool:
    """The least any tool can do to every host at once: OpenSSH's own client (C, one process
    per host, all started together by ``xargs -P``) connects, logs in with the same key,
    starts the SFTP subsystem and ends it (standard input closed), with the key exchange and
    cipher provision's client negotiates (curve25519-sha256, aes128-gcm; ``ssh``'s own
    default, a post-quantum hybrid, costs it about 100 ms of CPU per host here). A no-change
    apply does that plus its reads: this row is the floor of its wall time on this machine."""
    ports = folder / "floor-ports"
    ports.write_text("".join(f"{server.port}\n" for server in fleet.servers))
    ssh = shutil.which("ssh") or "ssh"
    command = [
        "xargs", "-a", str(ports), "-P", str(len(fleet.servers)), "-I", "{}",
        ssh, "-F", "/dev/null", "-i", str(fleet.client_key), "-p", "{}",
        "-o", f"UserKnownHostsFile={known}", "-o", "BatchMode=yes",
        "-o", "KexAlgorithms=curve25519-sha256", "-o", "Ciphers=aes128-gcm@openssh.com",
        "-s", f"{USER}@127.0.0.1", "sftp",
    ]  # fmt: skip
    return Tool("connect floor (OpenSSH ssh)", {CONNECT_FLOOR: command}, folder)


def ours_seconds(rows: list[dict[str, Any]], run: str) -> float:
    return float(next(r["seconds"] for r in rows if r["tool"] == "provision" and r["run"] == run))


def keygen_floor(count: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The time to make ``count`` RSA-2048 keys with provision's own call (crypto.keys,
    cryptography's generate_private_key) on every core, as provision's KeyMaker does; with
    the no-change apply it is the floor of an RSA first apply (issue 16)."""
    from concurrent.futures import ThreadPoolExecutor

    from provision.crypto import keys

    started = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        made = list(pool.map(lambda _: keys.generate("rsa", 2048, None), range(count)))
    seconds = time.perf_counter() - started
    assert len(made) == count
    idle = ours_seconds(rows, "no-change apply")
    first = ours_seconds(rows, "first apply")
    floor = seconds + idle
    return {
        "tool": "keygen floor",
        "run": f"{count} RSA-2048 keys ({seconds:.2f} s) + no-change apply",
        "seconds": round(floor, 3),
        "hosts_per_second": round(count / floor, 2),
        "ms_per_host": round(floor * 1000 / count, 1),
        "keygen_seconds": round(seconds, 3),
        "first_over_floor": round(first / floor, 2),
        "load": round(os.getloadavg()[0], 2),
    }


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['tool']:<32} {row['run']:<18} {row['seconds']:>8.2f} s "
        f"client {row.get('client_cpu', '-')} sshd {row.get('sshd_cpu', '-')} "
        f"load {row.get('load', '-')}"
    )


def _row(tool: str, run: str, seconds: float, hosts: int, counts: dict[str, Any]) -> dict[str, Any]:
    return {
        "tool": tool,
        "run": run,
        "seconds": round(seconds, 3),
        "hosts_per_second": round(hosts / seconds, 2),
        "ms_per_host": round(seconds * 1000 / hosts, 1),
        **counts.get(f"{tool}/{run}", {}),
    }


def _table(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    start: tuple[float, float, float],
    end: tuple[float, float, float],
) -> str:
    ours = {r["run"]: r["seconds"] for r in rows if r["tool"] == "provision"}
    lines = [
        f"# SSH fleet: {args.hosts} hosts, {args.key} keys, "
        + (
            "forks and connect concurrency as in each row, "
            if args.sweep
            else f"forks {args.forks}, connect concurrency "
            f"{'default' if args.connect_concurrency is None else args.connect_concurrency}, "
        )
        + f"SFTP {args.sftp}, .bashrc ~{BASHRC_MS:g} ms{' (guarded)' if args.bashrc_guard else ''}",
        "",
        f"Load average at start {start[0]:.2f} {start[1]:.2f} {start[2]:.2f}, "
        f"at end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}; {os.cpu_count()} cores.",
        "",
        "| tool | run | seconds | hosts/s | ms/host | x provision | client CPU s | sshd CPU s "
        "| load | channels/host | exec/host | SFTP requests/host | SFTP rounds/host |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r["seconds"] / ours[r["run"]] if r["run"] in ours else None
        lines.append(
            f"| {r['tool']} | {r['run']} | {r['seconds']} | {r['hosts_per_second']} | "
            f"{r['ms_per_host']} | {f'{ratio:.1f}x' if ratio else ''} | "
            f"{r.get('client_cpu', '')} | {r.get('sshd_cpu', '')} | {r.get('load', '')} | "
            f"{r.get('channels', '')} | {r.get('execs', '')} | "
            f"{r.get('sftp_requests', 'n/c')} | {r.get('sftp_rounds', 'n/c')} |"
        )
    lines.append("")
    for r in rows:
        if "first_over_floor" in r:
            lines.append(f"First apply / keygen floor: {r['first_over_floor']}x.")
        if "no_change_over_floor" in r:
            lines.append(f"No-change apply / connect floor: {r['no_change_over_floor']}x.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    raise SystemExit(main())
