#!/usr/bin/env python3
"""Benchmark `provision` on a generated local fleet, side by side with what the work costs.

    python bench/fleet.py                       # 200 hosts, RSA-2048 and ECDSA P-256
    python bench/fleet.py --hosts 1000 --key rsa
    python bench/fleet.py --hosts 1000 --scale  # also 10,000 hosts planned with ECDSA keys
    python bench/fleet.py --hosts 5 --quick     # one run of everything (the smoke test)
    python bench/fleet.py --compare OLD.json NEW.json

A temporary folder gets an inventory of N hosts (all on the local transport, each with its own
certificates directory) and the example playbook (playbooks/callmanager-https.yml: eleven
virtual directories, an nginx site with reload: false; DER root, PEM fullchain, PEM key). Every
figure is measured in a child process of this one, so each has its own peak memory (read from
``os.wait4``), and all of them are measured in the same run, so ratios are comparable even on
a noisy machine:

- the floor: what the ``cryptography`` library alone needs for the same keys and certificates
  (sequentially, across threads, across processes) and to read and parse the same files, with
  the same load functions and flags as provision;
- ``provision apply`` (fresh, no change, one change), ``provision plan``, as the user runs them
  (``python -m provision``, so start-up counts) and the no-change apply also in-process
  through ``provision.api`` (start-up and imports excluded);
- ``provision --help`` and ``provision validate`` of the example.

Results go to ``bench/results/fleet-<hosts>.md`` and ``.json`` (with the git commit and the
machine); see bench/README.md for what each row means and how to compare commits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The provision tree measured: this checkout, or another one given with --tree (a copy with an
# experimental change, or an older commit checked out with `git worktree add`).
TREE = REPO
EXAMPLE_PLAYBOOK = Path("playbooks") / "callmanager-https.yml"  # relative to TREE
EXAMPLE_INVENTORY = Path("inventory") / "example.yml"
SCALE_HOSTS = 10_000
SCALE_REFERENCE = 1_000

KEY_SPECS: dict[str, dict[str, Any]] = {
    "rsa": {"type": "rsa", "size": 2048},
    "ecdsa": {"type": "ecdsa", "curve": "p256"},
}
KEY_LABELS = {"rsa": "RSA-2048", "ecdsa": "ECDSA P-256"}

# Row ids are stable: results of two commits are compared by them (--compare).
ROWS: dict[str, str] = {
    "floor.keygen.sequential": "floor: keys + certificates, sequential",
    "floor.keygen.threads": "floor: keys + certificates, threads (all cores)",
    "floor.keygen.processes": "floor: keys + certificates, processes (all cores)",
    "floor.keygen": "floor: keys + certificates across cores (faster of the two)",
    "floor.read_parse": "floor: read + parse cer, pem, key of every host",
    "floor.write": "floor: write 4 files per host durably (fsync), sequential",
    "proofs": "provision's key proof + leaf signature proof of every host (issue 14)",
    "apply.fresh": "provision apply, fresh fleet (CLI)",
    "apply.nochange.full": "provision apply --full, no change (CLI, every host evaluated)",
    "apply.nochange": "provision apply, no change (CLI, answered from the converged record)",
    "apply.nochange.api": "provision apply, no change (in-process api: load + run)",
    "plan.nochange.full": "provision plan --full, no change (CLI, every host evaluated)",
    "plan.nochange": "provision plan, no change (CLI, answered from the converged record)",
    "plan.onechange": "provision plan, one host's certificate deleted (CLI)",
    "apply.onechange": "provision apply, one host's certificate deleted (CLI)",
}
CLI_ROWS = {
    "floor.python": "floor: `python -c pass` (interpreter start)",
    "cli.help": "provision --help",
    "cli.validate": "provision validate (example, 3 hosts)",
}


# --------------------------------------------------------------------------------------
# The fleet


@dataclass(frozen=True)
class Fleet:
    root: Path
    hosts: int
    key: str

    @property
    def playbook(self) -> Path:
        return self.root / "playbook.yml"

    @property
    def inventory(self) -> Path:
        return self.root / "inventory.yml"

    def host_name(self, index: int) -> str:
        return f"cm-{index:05d}"

    def certificates_dir(self, index: int) -> Path:
        return self.root / "fleet" / self.host_name(index) / "certificates"


def host_address(index: int) -> str:
    return f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"


def make_fleet(root: Path, hosts: int, key: str) -> Fleet:
    """Inventory + playbook of ``hosts`` local hosts; the playbook is the example's, with the
    key type switched for the ECDSA variant."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    fleet = Fleet(root, hosts, key)
    root.mkdir(parents=True, exist_ok=True)
    book = yaml.safe_load((TREE / EXAMPLE_PLAYBOOK).read_text())
    book["certificates"][0]["key"] = dict(KEY_SPECS[key])
    (site,) = book["sites"]
    assert site["reload"] is False and len(site["virtual_directories"]) == 11, site
    fleet.playbook.write_text(yaml.dump(book, Dumper=dumper, sort_keys=False))
    members = {
        fleet.host_name(i): {
            "address": host_address(i),
            "fqdn": f"{fleet.host_name(i)}.voice.example.com",
        }
        for i in range(hosts)
    }
    inventory = {
        "all": {
            "vars": {
                "connection": "local",
                "certificates_dir": f"{root}/fleet/{{{{ host.name }}}}/certificates",
                "www_root": f"{root}/fleet/{{{{ host.name }}}}/www",
            },
            "children": {"callmanager": {"hosts": members}},
        }
    }
    fleet.inventory.write_text(yaml.dump(inventory, Dumper=dumper, sort_keys=False))
    return fleet


# --------------------------------------------------------------------------------------
# Child processes: every measurement runs in one, so each has its own peak memory


@dataclass
class Sample:
    seconds: float  # wall time seen by this process (start-up included)
    maxrss_kb: int
    cpu: float  # the child's user + system seconds
    returncode: int
    stdout: str = ""
    stderr: str = ""
    inner: dict[str, Any] = field(default_factory=dict)  # what a child reported of itself


def spawn(argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> Sample:
    """Run ``argv``; wall time and the child's own peak RSS (os.wait4, not RUSAGE_CHILDREN,
    whose maximum never goes down between children)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv), cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    return Sample(
        seconds,
        usage.ru_maxrss,
        usage.ru_utime + usage.ru_stime,
        process.returncode,
        stdout,
        stderr,
    )


BYTECODE_CACHE: Path | None = None  # set by main(): a folder inside the run's temporary one
RECORDS: Path | None = None  # set by main(): converged records, inside the run's temporary folder


def child_env() -> dict[str, str]:
    """Children import the provision beside this script (not another installed copy), so a
    copy of the tree with an experimental change benchmarks that change.

    Bytecode is cached (in the run's temporary folder) even when the environment says
    PYTHONDONTWRITEBYTECODE: an installed provision has its .pyc files, and compiling every
    module on every start would be counted against provision otherwise."""
    env = dict(os.environ)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    if BYTECODE_CACHE is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(BYTECODE_CACHE)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TREE), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    )
    env.setdefault("COLUMNS", "100")
    if RECORDS is not None:
        env["PROVISION_CACHE_DIR"] = str(RECORDS)  # the run's own, never the user's
    return env


def _records() -> dict[str, int]:
    """The converged records and their modification times."""
    if RECORDS is None:
        return {}
    return {str(p): p.stat().st_mtime_ns for p in RECORDS.rglob("*.json")}


def provision_cli(args: Sequence[str], cwd: Path) -> Sample:
    return spawn([sys.executable, "-m", "provision", *args], cwd, child_env())


def run_child(task: str, spec: dict[str, Any], cwd: Path = REPO) -> Sample:
    """This script in a child process, running one ``task`` (see ``child_main``)."""
    sample = spawn(
        [sys.executable, str(Path(__file__).resolve()), "--child", task, json.dumps(spec)],
        cwd,
        child_env(),
    )
    if sample.returncode != 0:
        raise RuntimeError(f"child {task} failed ({sample.returncode}):\n{sample.stderr}")
    sample.inner = json.loads(sample.stdout.strip().splitlines()[-1])
    return sample


def _cpu() -> float:
    """User + system seconds of this process (all its threads) and its reaped children."""
    import resource

    mine = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


# --- floor work: the cryptography library alone ------------------------------------------


def _floor_one(job: tuple[str, int]) -> tuple[bytes, bytes, bytes]:
    """One host's key and self-signed certificate, as provision builds it, and the three
    outputs' bytes (DER root, PEM fullchain, PEM key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    kind, index = job
    name = f"cm-{index:05d}"
    fqdn = f"{name}.voice.example.com"
    address = host_address(index)
    if kind == "rsa":
        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Voice Operations"),
            x509.NameAttribute(NameOID.COMMON_NAME, fqdn),
        ]
    )
    sans: list[x509.GeneralName] = [
        x509.DNSName(fqdn),
        x509.DNSName(name),
        x509.IPAddress(ipaddress.ip_address(address)),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=kind == "rsa",
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.DER),
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def floor_keygen(kind: str, hosts: int, mode: str) -> dict[str, Any]:
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    import cryptography.x509  # noqa: F401  (imports are not part of the floor)

    jobs = [(kind, i) for i in range(hosts)]
    workers = os.cpu_count() or 1
    cpu = _cpu()
    started = time.perf_counter()
    if mode == "sequential":
        results = [_floor_one(job) for job in jobs]
    elif mode == "threads":
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(_floor_one, jobs))
    elif mode == "processes":
        chunk = max(1, hosts // (workers * 8))
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_floor_one, jobs, chunksize=chunk))
    else:
        raise ValueError(mode)
    seconds = time.perf_counter() - started
    assert len(results) == hosts and all(len(r[2]) > 100 for r in results)
    return {"seconds": seconds, "cpu": _cpu() - cpu, "workers": workers}


def floor_read_parse(root: str, hosts: int) -> dict[str, Any]:
    """Read the three outputs of every host and parse them as provision does
    (decode.load_bundle's PEM/DER calls; keys with unsafe_skip_rsa_key_validation)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    folders = [Path(root) / "fleet" / f"cm-{i:05d}" / "certificates" for i in range(hosts)]

    def one(folder: Path) -> None:
        der = (folder / "httpscert.cer").read_bytes()
        pem = (folder / "httpscert.pem").read_bytes()
        key = (folder / "httpscert.key").read_bytes()
        x509.load_der_x509_certificate(der)
        x509.load_pem_x509_certificate(pem)
        serialization.load_pem_private_key(key, None, unsafe_skip_rsa_key_validation=True)

    one(folders[0])  # untimed: OpenSSL's one-off set-up is not per-host work
    cpu = _cpu()
    started = time.perf_counter()
    for folder in folders:
        one(folder)
    return {"seconds": time.perf_counter() - started, "cpu": _cpu() - cpu}


def proofs(root: str, hosts: int) -> dict[str, Any]:
    """What planning adds to prove each host's material (issue 14): the key proves itself
    (``keys.proves``) and the leaf's signature verifies with its issuer's key (here its own:
    the example is self-signed; ``chains.signature_problem``). Files read and parsed first,
    untimed: the floor row has that. None in a tree from before the proofs."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        from provision.crypto import chains, keys

        proves, problem = keys.proves, chains.signature_problem
    except (ImportError, AttributeError):
        return {"seconds": None, "cpu": None}
    folders = [Path(root) / "fleet" / f"cm-{i:05d}" / "certificates" for i in range(hosts)]
    material = [
        (
            serialization.load_pem_private_key(
                (folder / "httpscert.key").read_bytes(), None, unsafe_skip_rsa_key_validation=True
            ),
            x509.load_pem_x509_certificate((folder / "httpscert.pem").read_bytes()),
        )
        for folder in folders
    ]

    def one(key: Any, leaf: x509.Certificate) -> None:
        assert proves(key) and problem(leaf, leaf) is None

    one(*material[0])  # untimed: one-off set-up
    cpu = _cpu()
    started = time.perf_counter()
    for key, leaf in material:
        one(key, leaf)
    return {"seconds": time.perf_counter() - started, "cpu": _cpu() - cpu}


def floor_write(root: str, hosts: int) -> dict[str, Any]:
    """Four small files per host (the three outputs and the site config), each written to a
    temporary file, fsynced, renamed into place, directory fsynced: the least a crash-safe
    write costs on this disk. Informational (no target uses it)."""
    base = Path(root)
    payload = os.urandom(1800)
    cpu = _cpu()
    started = time.perf_counter()
    for i in range(hosts):
        folder = base / f"h{i:05d}"
        folder.mkdir(parents=True)
        for name in ("httpscert.cer", "httpscert.pem", "httpscert.key", "site.conf"):
            temporary = folder / f".{name}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, folder / name)
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    seconds = time.perf_counter() - started
    cpu = _cpu() - cpu
    shutil.rmtree(base, ignore_errors=True)
    return {"seconds": seconds, "cpu": cpu}


def inprocess(spec: dict[str, Any]) -> dict[str, Any]:
    """provision.api in this process: load + run, timed after the imports."""
    started = time.perf_counter()
    from provision import api

    imported = time.perf_counter()
    os.chdir(spec["root"])
    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu = _cpu()
    t0 = time.perf_counter()
    loaded = api.load(spec["playbook"], spec["inventory"])
    t1 = time.perf_counter()
    _plan, report = api.run(loaded, apply=spec["apply"])
    t2 = time.perf_counter()
    cpu = _cpu() - cpu
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(spec["profile"])
        _write_profile_text(spec["profile"])
    if spec["apply"]:
        counts = {s: report.count(s) for s in ("ok", "changed", "failed")}
    else:
        counts = {
            "changed": sum(1 for h in report.hosts if h.plan.has_changes),
            "failed": report.count("failed"),
        }
    import resource

    return {
        "import_s": imported - started,
        "load_s": t1 - t0,
        "run_s": t2 - t1,
        "seconds": t2 - t0,
        "cpu": cpu,
        "counts": counts,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def _write_profile_text(path: str) -> None:
    import io
    import pstats

    text = io.StringIO()
    stats = pstats.Stats(path, stream=text)
    stats.strip_dirs()
    text.write("=== by own time (tottime) ===\n")
    stats.sort_stats("tottime").print_stats(35)
    text.write("=== by cumulative time ===\n")
    stats.sort_stats("cumulative").print_stats(45)
    Path(path).with_suffix(".txt").write_text(text.getvalue())


def child_main(task: str, spec: dict[str, Any]) -> None:
    if task == "floor-keygen":
        result = floor_keygen(spec["key"], spec["hosts"], spec["mode"])
    elif task == "floor-read-parse":
        result = floor_read_parse(spec["root"], spec["hosts"])
    elif task == "proofs":
        result = proofs(spec["root"], spec["hosts"])
    elif task == "floor-write":
        result = floor_write(spec["root"], spec["hosts"])
    elif task == "inprocess":
        result = inprocess(spec)
    else:
        raise SystemExit(f"unknown child task {task}")
    print(json.dumps(result))


# --------------------------------------------------------------------------------------
# Measurements


@dataclass
class Row:
    id: str
    key: str | None  # rsa | ecdsa | None (not key specific)
    hosts: int
    runs: list[float]  # wall seconds of each repetition
    maxrss_kb: int  # peak of all repetitions
    cpu_runs: list[float] = field(default_factory=list)  # user + system seconds of each
    note: str = ""
    ok: bool = True  # the run did what was expected (counts in its report)
    detail: dict[str, Any] = field(default_factory=dict)
    floor: str | None = None
    floor_seconds: float | None = None

    @property
    def seconds(self) -> float:
        return statistics.median(self.runs)

    @property
    def cpu(self) -> float | None:
        return statistics.median(self.cpu_runs) if self.cpu_runs else None

    @property
    def per_host_ms(self) -> float:
        return self.seconds / self.hosts * 1000 if self.hosts else float("nan")

    @property
    def ratio(self) -> float | None:
        if not self.floor_seconds:
            return None
        return self.seconds / self.floor_seconds

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            seconds=self.seconds,
            cpu=self.cpu,
            per_host_ms=self.per_host_ms,
            ratio=self.ratio,
            peak_mb=self.maxrss_kb / 1024,
            label=ROWS.get(self.id) or CLI_ROWS.get(self.id) or self.id,
        )
        return data


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.repeat = 1 if args.quick else args.repeat
        self.rows: list[Row] = []
        self.warnings: list[str] = []
        self.profiles: list[str] = []

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        extra = f" ({row.note})" if row.note else ""
        flag = "" if row.ok else "  UNEXPECTED OUTCOME"
        key = f"{row.key} " if row.key else ""
        self.log(
            f"  {key}{row.id}: {row.seconds:.3f} s (cpu {_fmt(row.cpu, 3)} s), "
            f"peak {row.maxrss_kb / 1024:.0f} MB{extra}{flag}"
        )
        if not row.ok:
            self.warnings.append(f"{key}{row.id}: {row.note}")
        return row

    # --- floor -------------------------------------------------------------------------

    def floor_keygen(self, key: str, hosts: int) -> dict[str, Row]:
        rows = {}
        for mode in ("sequential", "threads", "processes"):
            sample = run_child("floor-keygen", {"key": key, "hosts": hosts, "mode": mode})
            workers = f"{sample.inner['workers']} workers" if mode != "sequential" else ""
            rows[mode] = self.add(
                Row(
                    f"floor.keygen.{mode}",
                    key,
                    hosts,
                    [sample.inner["seconds"]],
                    sample.maxrss_kb,
                    [sample.inner["cpu"]],
                    note=workers,
                )
            )
        best = min(("threads", "processes"), key=lambda m: rows[m].seconds)
        rows["best"] = self.add(
            Row(
                "floor.keygen",
                key,
                hosts,
                list(rows[best].runs),
                rows[best].maxrss_kb,
                list(rows[best].cpu_runs),
                note=best,
            )
        )
        return rows

    def floor_read_parse(self, fleet: Fleet) -> Row:
        runs, cpu, peak = [], [], 0
        for _ in range(self.repeat):
            sample = run_child("floor-read-parse", {"root": str(fleet.root), "hosts": fleet.hosts})
            runs.append(sample.inner["seconds"])
            cpu.append(sample.inner["cpu"])
            peak = max(peak, sample.maxrss_kb)
        return self.add(Row("floor.read_parse", fleet.key, fleet.hosts, runs, peak, cpu))

    def proofs(self, fleet: Fleet) -> Row | None:
        runs, cpu, peak = [], [], 0
        for _ in range(self.repeat):
            sample = run_child("proofs", {"root": str(fleet.root), "hosts": fleet.hosts})
            if sample.inner["seconds"] is None:
                self.log("proofs: not in this tree")
                return None
            runs.append(sample.inner["seconds"])
            cpu.append(sample.inner["cpu"])
            peak = max(peak, sample.maxrss_kb)
        return self.add(Row("proofs", fleet.key, fleet.hosts, runs, peak, cpu))

    def floor_write(self, hosts: int) -> Row:
        scratch = self.workdir / "write-floor"
        sample = run_child("floor-write", {"root": str(scratch), "hosts": hosts})
        return self.add(
            Row(
                "floor.write",
                None,
                hosts,
                [sample.inner["seconds"]],
                sample.maxrss_kb,
                [sample.inner["cpu"]],
            )
        )

    # --- provision ---------------------------------------------------------------------

    def cli(
        self,
        row_id: str,
        fleet: Fleet,
        command: str,
        *,
        expect_changed: int,
        before: Callable[[], None] | None = None,
        repeat: int | None = None,
        extra: Sequence[str] = (),
        from_record: bool = False,
    ) -> Row:
        """``provision apply|plan`` as a person runs it; checks the report's counts, and with
        ``from_record`` that the run was answered from the converged record (a full run
        rewrites the record; an answered one leaves it untouched)."""
        runs, cpu, peak, ok, notes = [], [], 0, True, []
        for _ in range(repeat or self.repeat):
            if before is not None:
                before()
            records = _records()
            sample = provision_cli(
                [command, str(fleet.playbook), "-i", str(fleet.inventory), *extra], fleet.root
            )
            if from_record and (not records or _records() != records):
                ok = False
                notes.append("not answered from the converged record")
            runs.append(sample.seconds)
            cpu.append(sample.cpu)
            peak = max(peak, sample.maxrss_kb)
            changed, failed = _counts(command, sample.stdout)
            if sample.returncode != 0 or changed != expect_changed or failed:
                ok = False
                notes.append(
                    f"exit {sample.returncode}, changed {changed} (expected "
                    f"{expect_changed}), failed {failed}: "
                    f"{(sample.stderr or sample.stdout)[-300:].strip()}"
                )
        return self.add(
            Row(row_id, fleet.key, fleet.hosts, runs, peak, cpu, ok=ok, note="; ".join(notes[:1]))
        )

    def api(
        self,
        row_id: str,
        fleet: Fleet,
        *,
        apply: bool,
        expect_changed: int,
        profile: str | None = None,
        repeat: int | None = None,
    ) -> Row:
        runs, cpu, peak, ok, notes = [], [], 0, True, []
        inner: dict[str, Any] = {}
        for _ in range(repeat or self.repeat):
            spec = {
                "root": str(fleet.root),
                "playbook": str(fleet.playbook),
                "inventory": str(fleet.inventory),
                "apply": apply,
                "profile": profile,
            }
            sample = run_child("inprocess", spec)
            inner = sample.inner
            runs.append(inner["seconds"])
            cpu.append(inner["cpu"])
            peak = max(peak, sample.maxrss_kb)
            counts = inner["counts"]
            if counts["changed"] != expect_changed or counts["failed"]:
                ok = False
                notes.append(f"counts {counts}, expected changed {expect_changed}")
        detail = {k: inner[k] for k in ("import_s", "load_s", "run_s")}
        note = (
            f"load {inner['load_s']:.2f} s + run {inner['run_s']:.2f} s; "
            f"imports {inner['import_s']:.2f} s not counted"
        )
        return self.add(
            Row(
                row_id,
                fleet.key,
                fleet.hosts,
                runs,
                peak,
                cpu,
                ok=ok,
                detail=detail,
                note="; ".join(notes[:1]) or note,
            )
        )

    def key_type(self, key: str) -> None:
        hosts = self.args.hosts
        self.log(f"{KEY_LABELS[key]}, {hosts} hosts")
        keygen = self.floor_keygen(key, hosts)
        fleet = make_fleet(self.workdir / f"{key}-{hosts}", hosts, key)
        fresh = self.cli("apply.fresh", fleet, "apply", expect_changed=hosts, repeat=1)
        fresh.floor, fresh.floor_seconds = "floor.keygen", keygen["best"].seconds
        read_parse = self.floor_read_parse(fleet)
        self.proofs(fleet)
        one_key = keygen["sequential"].seconds / hosts
        # --full first: it evaluates every host, finds them converged and records that, so
        # the rows after it are answered from the record (as every idle run after the first).
        for row in (
            self.cli("apply.nochange.full", fleet, "apply", expect_changed=0, extra=["--full"]),
            self.cli("apply.nochange", fleet, "apply", expect_changed=0, from_record=True),
            self.api("apply.nochange.api", fleet, apply=True, expect_changed=0),
            self.cli("plan.nochange.full", fleet, "plan", expect_changed=0, extra=["--full"]),
            self.cli("plan.nochange", fleet, "plan", expect_changed=0, from_record=True),
        ):
            row.floor, row.floor_seconds = "floor.read_parse", read_parse.seconds
        victim = fleet.certificates_dir(hosts // 2)

        def delete_one() -> None:
            for name in ("httpscert.cer", "httpscert.pem", "httpscert.key"):
                (victim / name).unlink(missing_ok=True)

        delete_one()
        plan_one = self.cli("plan.onechange", fleet, "plan", expect_changed=1)
        plan_one.floor, plan_one.floor_seconds = "floor.read_parse", read_parse.seconds
        apply_one = self.cli("apply.onechange", fleet, "apply", expect_changed=1, before=delete_one)
        apply_one.floor = "floor.read_parse + one key"
        apply_one.floor_seconds = read_parse.seconds + one_key
        if self.args.profile:
            self.profile(fleet, key)
        if not self.args.keep:
            shutil.rmtree(fleet.root, ignore_errors=True)

    def profile(self, fleet: Fleet, key: str) -> None:
        """cProfile of the in-process no-change apply, and of a fresh apply on a new fleet
        (main thread only: key generation in the pool shows as waiting)."""
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        nochange = out / f"profile-{key}-{fleet.hosts}-nochange.prof"
        self.api(
            "profile.apply.nochange",
            fleet,
            apply=True,
            expect_changed=0,
            profile=str(nochange),
            repeat=1,
        )
        fresh_fleet = make_fleet(self.workdir / f"{key}-{fleet.hosts}-profile", fleet.hosts, key)
        fresh = out / f"profile-{key}-{fleet.hosts}-fresh.prof"
        self.api(
            "profile.apply.fresh",
            fresh_fleet,
            apply=True,
            expect_changed=fleet.hosts,
            profile=str(fresh),
            repeat=1,
        )
        shutil.rmtree(fresh_fleet.root, ignore_errors=True)
        self.profiles += [str(nochange), str(fresh)]
        # Profiled runs are slower; they are not part of the table.
        self.rows = [r for r in self.rows if not r.id.startswith("profile.")]

    def startup(self) -> None:
        repeat = 1 if self.args.quick else max(5, self.repeat)
        self.log("start-up: python, provision --help, provision validate (example)")
        specs = [
            ("floor.python", [sys.executable, "-c", "pass"]),
            ("cli.help", [sys.executable, "-m", "provision", "--help"]),
            (
                "cli.validate",
                [
                    sys.executable,
                    "-m",
                    "provision",
                    "validate",
                    str(EXAMPLE_PLAYBOOK),
                    "-i",
                    str(EXAMPLE_INVENTORY),
                ],
            ),
        ]
        for row_id, argv in specs:
            spawn(argv, TREE, child_env())  # untimed: fills the bytecode cache, warms up
            runs, cpu, peak, ok, note = [], [], 0, True, ""
            for _ in range(repeat):
                sample = spawn(argv, TREE, child_env())
                runs.append(sample.seconds)
                cpu.append(sample.cpu)
                peak = max(peak, sample.maxrss_kb)
                if sample.returncode != 0:
                    ok, note = False, f"exit {sample.returncode}: {sample.stderr[-300:]}"
            self.add(
                Row(
                    row_id,
                    None,
                    3 if row_id == "cli.validate" else 0,
                    runs,
                    peak,
                    cpu,
                    ok=ok,
                    note=note,
                )
            )

    def scale(self) -> None:
        """10,000 hosts planned with ECDSA keys, against the same at 1,000 hosts."""
        reference = next(
            (
                r
                for r in self.rows
                if r.id == "plan.nochange.full" and r.key == "ecdsa" and r.hosts == SCALE_REFERENCE
            ),
            None,
        )
        if reference is None:
            self.log(f"scale: ECDSA reference fleet of {SCALE_REFERENCE} hosts")
            small = make_fleet(self.workdir / "scale-1k", SCALE_REFERENCE, "ecdsa")
            self.cli(
                "scale.apply.fresh.1k", small, "apply", expect_changed=SCALE_REFERENCE, repeat=1
            )
            reference = self.cli(
                "scale.plan.nochange.1k",
                small,
                "plan",
                expect_changed=0,
                repeat=3,
                extra=["--full"],
            )
            shutil.rmtree(small.root, ignore_errors=True)
        self.log(f"scale: ECDSA fleet of {SCALE_HOSTS} hosts (the fresh apply takes a while)")
        big = make_fleet(self.workdir / "scale-10k", SCALE_HOSTS, "ecdsa")
        self.cli("scale.apply.fresh", big, "apply", expect_changed=SCALE_HOSTS, repeat=1)
        # Evaluated in full, as the 1,000-host reference: the growth of the work itself.
        row = self.cli(
            "scale.plan.nochange", big, "plan", expect_changed=0, repeat=1, extra=["--full"]
        )
        row.floor, row.floor_seconds = "plan --full at 1,000 hosts", reference.seconds
        row.detail["reference_seconds"] = reference.seconds
        shutil.rmtree(big.root, ignore_errors=True)


def _counts(command: str, stdout: str) -> tuple[int | None, int | None]:
    """(changed, failed) from the last line of `apply` (Recap) or `plan` (Plan:)."""
    import re

    if command == "apply":
        found = re.search(r"Recap: ok (\d+), changed (\d+), failed (\d+)", stdout)
        return (int(found[2]), int(found[3])) if found else (None, None)
    found = re.search(r"Plan: \d+ hosts?, (\d+) to change, (\d+) failed", stdout)
    return (int(found[1]), int(found[2])) if found else (None, None)


# --------------------------------------------------------------------------------------
# Targets (issue 9) and the report


@dataclass
class Target:
    id: str
    text: str
    measured: str
    passed: bool | None  # None: not measured in this run


def targets(rows: list[Row], hosts: int) -> list[Target]:
    def find(row_id: str, key: str | None = None) -> Row | None:
        return next((r for r in rows if r.id == row_id and r.key == key), None)

    result = []
    for key in ("rsa", "ecdsa"):
        for row_id, label in (
            ("apply.nochange", "CLI, converged record"),
            ("apply.nochange.full", "CLI, --full"),
            ("apply.nochange.api", "api, full"),
        ):
            row = find(row_id, key)
            if row is None or row.ratio is None:
                continue
            if row_id == "apply.nochange":  # the run an operator gets, every idle run
                result.append(
                    Target(
                        f"{row_id}.ratio.{key}",
                        f"no-change apply ({label}, {KEY_LABELS[key]}) <= 3x read+parse floor",
                        f"{row.ratio:.1f}x ({row.seconds:.3f} s vs {row.floor_seconds:.3f} s)",
                        row.ratio <= 3,
                    )
                )
            result.append(
                Target(
                    f"{row_id}.per_host.{key}",
                    f"no-change apply ({label}, {KEY_LABELS[key]}) < 2 ms per host",
                    f"{row.per_host_ms:.2f} ms/host",
                    row.per_host_ms < 2,
                )
            )
    proofs = find("proofs", "rsa")
    if proofs is not None:
        result.append(
            Target(
                "proofs.per_host.rsa",
                "key + signature proofs (RSA-2048) < 2 ms per host (issue 14)",
                f"{proofs.per_host_ms:.3f} ms/host",
                proofs.per_host_ms < 2,
            )
        )
    fresh = find("apply.fresh", "rsa")
    if fresh is not None and fresh.ratio is not None:
        result.append(
            Target(
                "apply.fresh.ratio.rsa",
                "first apply (RSA-2048) <= 1.2x keygen floor across cores",
                f"{fresh.ratio:.2f}x ({fresh.seconds:.1f} s vs {fresh.floor_seconds:.1f} s)",
                fresh.ratio <= 1.2,
            )
        )
    big = find("scale.plan.nochange", "ecdsa")
    if big is not None:
        result.append(
            Target(
                "scale.peak",
                "10,000 hosts plan (ECDSA) peak < 1.5 GB",
                f"{big.maxrss_kb / 1024:.0f} MB",
                big.maxrss_kb / 1024 < 1536,
            )
        )
        assert big.ratio is not None
        result.append(
            Target(
                "scale.ratio",
                "time(10k) <= 12x time(1k), plan (ECDSA)",
                f"{big.ratio:.1f}x ({big.seconds:.1f} s vs {big.floor_seconds:.2f} s)",
                big.ratio <= 12,
            )
        )
    for row_id, limit, text in (
        ("cli.help", 0.3, "provision --help < 0.3 s"),
        ("cli.validate", 0.6, "provision validate (example) < 0.6 s"),
    ):
        row = find(row_id)
        if row is not None:
            result.append(Target(row_id, text, f"{row.seconds:.3f} s", row.seconds < limit))
    return result


def machine_info(workdir: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=TREE, capture_output=True, text=True, check=True
            ).stdout.rstrip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    import cryptography
    from cryptography.hazmat.backends.openssl.backend import backend

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        memory = f"{int(first.split()[1]) // 1024} MB"
    except (OSError, IndexError, ValueError):
        pass
    dirty = git("status", "--porcelain", "--", "provision", "bench")
    return {
        "tree": str(TREE),
        "label": "",
        "commit": git("rev-parse", "HEAD").strip(),
        "commit_subject": git("log", "-1", "--format=%s"),
        "dirty": [line[3:] for line in dirty.splitlines()],
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "cryptography": cryptography.__version__,
        "openssl": backend.openssl_version_text(),
        "fleet_filesystem": _filesystem(workdir),
        "loadavg_start": list(os.getloadavg()),
        "bytecode_cache": BYTECODE_CACHE is not None,
    }


def _filesystem(path: Path) -> str:
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mount, fstype = parts[1], parts[2]
            if str(path).startswith(mount) and len(mount) > len(best):
                best, kind = mount, fstype
    except OSError:
        pass
    return f"{kind} ({best})"


def _fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:.{digits}f}{suffix}"


def markdown(result: dict[str, Any], rows: list[Row], goals: list[Target]) -> str:
    info = result["machine"]
    keys = [k for k in ("rsa", "ecdsa") if any(r.key == k for r in rows)]
    lines = [
        f"# provision fleet benchmark: {result['hosts']} hosts",
        "",
        (
            f"- commit `{info['commit'][:12]}` {info['commit_subject']}"
            if info["commit"]
            else f"- tree {info['tree']} (not a git checkout)"
        )
        + (f" (uncommitted changes: {', '.join(info['dirty'])})" if info["dirty"] else "")
        + (f"; tree {info['tree']}" if info["commit"] and info["tree"] != str(REPO) else ""),
        *([f"- {info['label']}"] if info.get("label") else []),
        f"- {info['date']}, {info['cpu']}, {info['cores']} cores, {info['memory']}, "
        f"Python {info['python']}, cryptography {info['cryptography']} ({info['openssl']})",
        f"- fleet on {info['fleet_filesystem']}; load average {info['loadavg_start'][0]:.2f} "
        f"at start, {info['loadavg_end'][0]:.2f} at end; median of {result['repeat']} for "
        "repeated rows; peak = the child process's max RSS; bytecode "
        + ("cached" if info.get("bytecode_cache") else "as the environment says"),
        "- CLI rows: `python -m provision ...` wall time in a subprocess (start-up and imports "
        "included); the api row: `api.load` + `api.run` in a child, imports excluded",
        "",
    ]
    header = ["measurement"]
    rule = ["---"]
    for key in keys:
        header += [f"{KEY_LABELS[key]} s", "cpu s", "ms/host", "x floor", "peak MB"]
        rule += ["---:"] * 5
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for row_id, label in ROWS.items():
        cells = [label]
        present = False
        for key in keys:
            row = next((r for r in rows if r.id == row_id and r.key in (key, None)), None)
            if row is None:
                cells += ["-"] * 5
                continue
            present = True
            cells += [
                _fmt(row.seconds, 3) + ("" if row.ok else " (!)"),
                _fmt(row.cpu, 2),
                _fmt(row.per_host_ms, 2),
                _fmt(row.ratio, 2, "x"),
                _fmt(row.maxrss_kb / 1024, 0),
            ]
        if present:
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "s: wall seconds (the figure the targets use); cpu s: user + system seconds "
        "of the child (less sensitive to a busy machine). x floor: `apply, fresh` "
        "against `floor: keys + certificates across cores`; the no-change and one-change "
        "rows against `floor: read + parse` (apply with one change: plus one host's key, "
        "sequential).",
        "",
    ]
    other = [r for r in rows if r.id in CLI_ROWS or r.id.startswith("scale.")]
    if other:
        lines += ["| measurement | s | cpu s | peak MB | note |", "|---|---:|---:|---:|---|"]
        for row in other:
            label = CLI_ROWS.get(row.id) or {
                "scale.apply.fresh": f"apply, fresh, {row.hosts} hosts ECDSA (CLI)",
                "scale.plan.nochange": f"plan --full, no change, {row.hosts} hosts ECDSA (CLI)",
                "scale.apply.fresh.1k": f"apply, fresh, {row.hosts} hosts ECDSA (CLI)",
                "scale.plan.nochange.1k": f"plan, no change, {row.hosts} hosts ECDSA (CLI)",
            }.get(row.id, row.id)
            note = row.note
            if row.ratio is not None:
                note = f"{row.ratio:.1f}x {row.floor}" + (f"; {note}" if note else "")
            lines.append(
                f"| {label} | {_fmt(row.seconds, 3)}{'' if row.ok else ' (!)'} | "
                f"{_fmt(row.cpu, 2)} | {_fmt(row.maxrss_kb / 1024, 0)} | {note} |"
            )
        lines.append("")
    if goals:
        lines += [
            "## Targets (issue 9; defined at 1,000 hosts)"
            if result["hosts"] != 1000
            else "## Targets (issue 9)",
            "",
            "| target | measured | result |",
            "|---|---|---|",
        ]
        for goal in goals:
            verdict = {True: "pass", False: "**FAIL**", None: "-"}[goal.passed]
            lines.append(f"| {goal.text} | {goal.measured} | {verdict} |")
        lines.append("")
    if result["warnings"]:
        lines += ["## Unexpected outcomes", ""] + [f"- {w}" for w in result["warnings"]] + [""]
    if result["profiles"]:
        lines += ["## Profiles", ""] + [f"- `{p}` (and `.txt`)" for p in result["profiles"]]
        lines.append("")
    return "\n".join(lines)


def compare(old_path: str, new_path: str) -> None:
    """Print two result files side by side: seconds and ratios to the floor of each run."""
    old = json.loads(Path(old_path).read_text())
    new = json.loads(Path(new_path).read_text())
    for name, result in (("old", old), ("new", new)):
        info = result["machine"]
        what = (
            f"{info['commit'][:12]} {info.get('commit_subject', '')}"
            if info.get("commit")
            else info.get("tree", "?")
        )
        print(f"{name}: {what} {info.get('label', '')}".rstrip())
    index = {(r["id"], r["key"]): r for r in old["rows"]}
    print(
        f"{'row':<28}{'key':<7}{'old s':>10}{'new s':>10}{'change':>9}"
        f"{'old xfl':>9}{'new xfl':>9}{'old MB':>8}{'new MB':>8}"
    )
    for row in new["rows"]:
        before = index.get((row["id"], row["key"]))
        if before is None:
            continue
        change = (row["seconds"] / before["seconds"] - 1) * 100 if before["seconds"] else 0
        print(
            f"{row['id']:<28}{row['key'] or '':<7}{before['seconds']:>10.3f}"
            f"{row['seconds']:>10.3f}{change:>+8.0f}%"
            f"{_fmt(before['ratio'], 2, 'x'):>9}{_fmt(row['ratio'], 2, 'x'):>9}"
            f"{before['peak_mb']:>8.0f}{row['peak_mb']:>8.0f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=200, help="fleet size (default 200)")
    parser.add_argument("--key", choices=("rsa", "ecdsa", "both"), default="both")
    parser.add_argument(
        "--out",
        default=str(REPO / "bench" / "results"),
        help="folder for fleet-<hosts>.md and .json",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="repetitions of the short measurements (median)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="one run of each measurement, no scale test"
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help=f"also plan {SCALE_HOSTS:,} hosts with ECDSA keys (long)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile the in-process no-change and fresh applies",
    )
    parser.add_argument(
        "--tmpdir",
        default=None,
        help="where the fleet is made (default: the system's temporary "
        "folder; /dev/shm takes the disk's fsync out of the figures)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated fleets")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="let children compile as the environment says (by default "
        "bytecode is cached in the temporary folder, as an install has it)",
    )
    parser.add_argument(
        "--label",
        default="",
        help="a note kept with the results (e.g. which experiment the tree has)",
    )
    parser.add_argument(
        "--tree", default=None, help="the provision source tree to measure (default: this checkout)"
    )
    parser.add_argument(
        "--compare", nargs=2, metavar=("OLD", "NEW"), help="compare two result JSON files and exit"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child[0], json.loads(args.child[1]))
        return 0
    if args.compare:
        compare(*args.compare)
        return 0
    if args.hosts < 1:
        parser.error("--hosts must be at least 1")
    keys = ["rsa", "ecdsa"] if args.key == "both" else [args.key]
    workdir = Path(tempfile.mkdtemp(prefix="provision-bench-", dir=args.tmpdir))
    global BYTECODE_CACHE, RECORDS, TREE
    BYTECODE_CACHE = None if args.no_bytecode_cache else workdir / "pycache"
    RECORDS = workdir / "records"
    if args.tree:
        TREE = Path(args.tree).resolve()
        if not (TREE / "provision" / "__init__.py").is_file():
            parser.error(f"--tree {args.tree}: no provision/ package there")
    started = time.perf_counter()
    bench = Bench(args, workdir)
    info = machine_info(workdir)
    info["label"] = args.label
    try:
        bench.startup()
        bench.floor_write(args.hosts)
        for key in keys:
            bench.key_type(key)
        if args.scale and not args.quick:
            bench.scale()
    finally:
        if args.keep:
            bench.log(f"fleets kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    info["loadavg_end"] = list(os.getloadavg())
    goals = targets(bench.rows, args.hosts)
    result = {
        "hosts": args.hosts,
        "keys": keys,
        "repeat": bench.repeat,
        "quick": args.quick,
        "total_seconds": time.perf_counter() - started,
        "machine": info,
        "rows": [r.to_json() for r in bench.rows],
        "targets": [asdict(g) for g in goals],
        "warnings": bench.warnings,
        "profiles": bench.profiles,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(result, bench.rows, goals)
    (out / f"fleet-{args.hosts}.md").write_text(text)
    (out / f"fleet-{args.hosts}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    bench.log(
        f"wrote {out / f'fleet-{args.hosts}.md'} and .json ({result['total_seconds']:.0f} s in all)"
    )
    if bench.warnings:
        bench.log("unexpected outcomes: " + "; ".join(bench.warnings))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
