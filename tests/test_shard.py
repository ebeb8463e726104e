"""Sharded runs (issue 21): ``--shard I/N`` splits the selected hosts by name, each shard runs
as its own process, and ``provision merge`` makes their results the unsharded run's.

The fleets are real: 200 local hosts (tests/fleet.py) planned by 1, 3 and 7 concurrent
``provision`` processes, 20 hosts behind real sshd instances (tests/sshd.py), and an internal
CA whose serials are read back with ``openssl x509 -serial``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, Cli, require_tool, run_openssl, snapshot
from fleet import KEY, PEM, SITE, Fleet
from sshd import SshdFleet, sshd_fleet
from test_ssh import host_root, known_hosts_for, write_project

from provision.report.merge import MergeError, merge
from provision.shard import Shard, ShardError, from_options, parse, select, shard_of

__all__ = ["sshd_fleet"]  # a fixture, imported to be found


# --- running provision as separate processes --------------------------------------------------


def env_for(folder: Path) -> dict[str, str]:
    """The environment of every run: converged records and HOME inside the test's folder."""
    home = folder / "home"
    home.mkdir(exist_ok=True)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("JOB_COMPLETION")}
    environ.pop("SSH_AUTH_SOCK", None)
    return {
        **environ,
        "HOME": str(home),
        "PROVISION_CACHE_DIR": str(folder / "records"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def run_all(
    cwd: Path, commands: Sequence[Sequence[str]], env: Mapping[str, str]
) -> list[tuple[int, str, str]]:
    """Run every ``provision`` command line at once, each its own process; (status, stdout,
    stderr) of each, in order. Output goes to files: nobody reads a pipe while we wait."""
    logs = cwd / "logs"
    logs.mkdir(exist_ok=True)
    started = []
    for number, args in enumerate(commands):
        out, err = logs / f"{number}.out", logs / f"{number}.err"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "provision", *args],
                cwd=cwd,
                env=dict(env),
                stdout=stdout,
                stderr=stderr,
            )
        started.append((process, out, err))
    results = []
    for process, out, err in started:
        status = process.wait(timeout=600)
        results.append((status, out.read_text(), err.read_text()))
    return results


def documents(results: list[tuple[int, str, str]], ok: Sequence[int] = (0,)) -> list[Any]:
    found = []
    for status, stdout, stderr in results:
        assert status in ok, stdout[-2000:] + stderr[-2000:]
        assert "Traceback" not in stderr, stderr
        found.append(json.loads(stdout))
    return found


def by_host(document: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """What the issue compares host by host: status and changes."""
    return {name: (host["status"], host["changes"]) for name, host in document["hosts"].items()}


def shard_args(count: int) -> list[list[str]]:
    return [["--shard", f"{index}/{count}"] for index in range(count)]


def check_partition(shards: list[Any], everyone: Sequence[str], count: int) -> None:
    """Every host in exactly one shard, the one its name picks."""
    seen: list[str] = []
    for index, document in enumerate(shards):
        assert document["shard"] == f"{index}/{count}"
        hosts = list(document["hosts"])
        assert sorted(hosts) == sorted(select(everyone, Shard(index, count)))
        seen += hosts
    assert sorted(seen) == sorted(everyone)
    assert len(seen) == len(set(seen))


# --- the split itself (pure) --------------------------------------------------------------------


NAMES = [f"web-{i:05d}.dc{i % 7}.example.net" for i in range(6000)]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 16])
def test_every_host_is_in_exactly_one_shard(count: int) -> None:
    names = NAMES[:2000]
    shards = [set(select(names, Shard(index, count))) for index in range(count)]
    assert sum(len(s) for s in shards) == len(names)
    assert set().union(*shards) == set(names)
    # Balanced: no shard far from its share (about 3 standard deviations of the binomial).
    for hosts in shards:
        assert abs(len(hosts) - len(names) / count) < 0.2 * len(names) / count + 10


@pytest.mark.parametrize("count", range(1, 13))
def test_adding_a_shard_moves_at_most_two_over_n_plus_one(count: int) -> None:
    before = {name: shard_of(name, count) for name in NAMES}
    after = {name: shard_of(name, count + 1) for name in NAMES}
    moved = [name for name in NAMES if before[name] != after[name]]
    assert len(moved) <= 2 * len(NAMES) / (count + 1)
    # Rendezvous hashing: a host only ever moves to the new shard, never between old ones.
    assert all(after[name] == count for name in moved)
    # And the new shard takes its share (about 1/(N+1)), not nothing.
    assert len(moved) >= 0.5 * len(NAMES) / (count + 1)


def test_the_split_is_the_same_everywhere() -> None:
    # SHA-256 of (index, name): any controller, any Python, any process computes these. A
    # change here re-splits every fleet between controllers of two versions.
    names = ("cm-pub-01", "cm-sub-01", "cm-sub-02", "a", "")
    assert [shard_of(name, 5) for name in names] == [1, 1, 0, 4, 1]
    assert [shard_of(f"cm-{i:03d}", 7) for i in range(12)] == [6, 4, 4, 2, 5, 6, 0, 2, 1, 5, 2, 6]
    # Not Python's salted hash(): another process with another seed splits alike.
    code = "from provision.shard import shard_of; print([shard_of(f'h{i}', 3) for i in range(40)])"
    for seed in ("1", "2"):
        other = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert other.stdout.strip() == str([shard_of(f"h{i}", 3) for i in range(40)])
    # The order of the inventory does not matter.
    assert select(list(reversed(NAMES[:50])), Shard(1, 3)) == list(
        reversed(select(NAMES[:50], Shard(1, 3)))
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("3/3", "must be 0 to 2"),
        ("-1/3", "is not I/N"),
        ("1/0", "must be 1 to"),
        ("a/b", "is not I/N"),
        ("2", "is not I/N"),
        ("", "is not I/N"),
    ],
)
def test_a_bad_shard_is_one_line(text: str, problem: str) -> None:
    with pytest.raises(ShardError, match=re.escape(problem)):
        parse(text)


def test_shard_from_the_environment() -> None:
    env = {"JOB_COMPLETION_INDEX": "2", "SHARD": "1/4", "BAD": "x"}
    assert from_options(None, "JOB_COMPLETION_INDEX", 3, env) == Shard(2, 3)
    assert from_options(None, "SHARD", None, env) == Shard(1, 4)
    assert from_options(None, "SHARD", 4, env) == Shard(1, 4)
    assert from_options("0/2", None, None, env) == Shard(0, 2)
    assert from_options(None, None, None, env) is None
    for args, problem in [
        ((None, "JOB_COMPLETION_INDEX", None, env), "--shard-count N"),
        ((None, "JOB_COMPLETION_INDEX", 2, env), "must be 0 to 1"),
        ((None, "SHARD", 5, env), "names 4 shards, --shard-count 5"),
        ((None, "BAD", 2, env), "not a shard index"),
        ((None, "MISSING", 2, env), "not set"),
        ((None, "no-such=var", 2, env), "not the name of an environment variable"),
        (("0/2", "SHARD", None, env), "not both"),
        (("0/2", None, 2, env), "drop --shard-count"),
        ((None, None, 2, env), "goes with --shard-env"),
    ]:
        with pytest.raises(ShardError, match=re.escape(problem)):
            from_options(*args)  # type: ignore[arg-type]


def test_bad_shard_options_exit_1_with_one_line(project: Path, cli: Cli) -> None:
    for extra, env, problem in [
        (["--shard", "4/4"], None, "--shard '4/4': the index counts from 0"),
        (["--shard-env", "JOB_COMPLETION_INDEX"], None, "the variable is not set"),
        (["--shard-env", "IDX"], {"IDX": "1"}, "give the number of shards with --shard-count"),
    ]:
        for verb in ("plan", "apply", "status", "verify"):
            result = cli(
                verb, "playbooks/callmanager-https.yml", "-i", "inventory/example.yml", *extra,
                env=env,
            )  # fmt: skip
            assert result.exit_code == 1, (verb, result.stdout, result.stderr)
            assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
            assert problem in result.stderr, result.stderr
            assert "Traceback" not in result.stderr
    assert not (project / "pki").exists()


# --- merge (pure) -------------------------------------------------------------------------------


def result(kind: str, shard: str | None, hosts: dict[str, str], **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "kind": kind,
        "shard": shard,
        "limit": None,
        "playbook": {"path": "site.yml", "sha256": "aa" * 32},
        "inventory": [{"path": "inventory.yml", "sha256": "bb" * 32}],
        "summary": {},
        "hosts": {
            name: {"status": status, "changes": [], "changed": status == "changed"}
            for name, status in hosts.items()
        },
    }
    document.update(changes)
    return document


def test_merge_counts_again_and_orders_by_host() -> None:
    merged = merge(
        [
            ("b.json", result("apply", "1/2", {"web-2": "changed", "web-0": "failed"})),
            ("a.json", result("apply", "0/2", {"web-1": "ok"})),
        ]
    )
    assert list(merged["hosts"]) == ["web-0", "web-1", "web-2"]
    assert merged["summary"] == {"ok": 1, "changed": 1, "failed": 1, "skipped": 0}
    assert merged["shard"] is None and merged["merged_shards"] == 2
    alone = result("plan", None, {"web-1": "ok"})
    assert merge([("all.json", alone)])["hosts"] == alone["hosts"]


@pytest.mark.parametrize(
    ("results", "problem"),
    [
        (
            [
                ("a.json", result("apply", "0/2", {"x": "ok"})),
                ("b.json", result("apply", "0/2", {})),
            ],
            "overlapping shards: a.json and b.json are each shard 0/2",
        ),
        (
            [("a.json", result("apply", "0/3", {})), ("b.json", result("apply", "2/3", {}))],
            "shard 1/3 missing: the results given (a.json: 0/3, b.json: 2/3)",
        ),
        (
            [("a.json", result("apply", "0/2", {})), ("b.json", result("plan", "1/2", {}))],
            "different commands (kind: a.json: apply; b.json: plan)",
        ),
        (
            [
                ("a.json", result("apply", "0/2", {})),
                (
                    "b.json",
                    result("apply", "1/2", {}, playbook={"path": "site.yml", "sha256": "cc" * 32}),
                ),
            ],
            "ran different playbooks (playbook: a.json: site.yml (sha256 aaaaaaaaaaaa); b.json",
        ),
        (
            [
                ("a.json", result("apply", "0/2", {})),
                ("b.json", result("apply", "1/2", {}, inventory=[{"path": "i", "sha256": "dd"}])),
            ],
            "ran different inventories",
        ),
        (
            [
                ("a.json", result("apply", "0/2", {})),
                ("b.json", result("apply", "1/2", {}, limit="x")),
            ],
            "different --limit",
        ),
        (
            [("a.json", result("apply", "0/2", {})), ("b.json", result("apply", "1/3", {}))],
            "different numbers of shards (a.json: 0/2, b.json: 1/3)",
        ),
        (
            [
                ("a.json", result("apply", "0/2", {"x": "ok"})),
                ("b.json", result("apply", "1/2", {"x": "ok"})),
            ],
            "host x is in a.json and in b.json",
        ),
        (
            [("a.json", result("apply", None, {})), ("b.json", result("apply", "1/2", {}))],
            "a.json: a result of every host (made without --shard)",
        ),
        ([("a.json", {"summary": {}, "hosts": {}})], "a.json: cannot merge it"),
        ([("a.json", result("plan", 3, {}))], "a.json: cannot merge it: its shard is not I/N"),
        ([("a.json", result("plan", "3", {}))], "a.json: shard '3' is not I/N"),
        ([], "nothing to merge"),
    ],
)  # fmt: skip
def test_merge_refuses_what_is_not_one_run(results: list[Any], problem: str) -> None:
    with pytest.raises(MergeError) as caught:
        merge(results)
    assert problem in caught.value.message
    assert "\n" not in caught.value.message


# --- 200 local hosts, 1, 3 and 7 shards as processes ----------------------------------------


@pytest.fixture(scope="module")
def local_fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    """200 local hosts, applied once (in this process, for speed), then changed so that a plan
    has work of every kind: keys deleted, site configs edited, a certificate damaged."""
    from provision import api

    fleet = Fleet(tmp_path_factory.mktemp("shards") / "fleet", 200, pkcs12=False)
    with fleet.password():
        api.run(fleet.load(), apply=True)
    for index, host in enumerate(fleet.hosts[:30]):
        base = fleet.root(host) / "fleet" / host
        if index < 12:
            (base / "certificates" / KEY).unlink()
        elif index < 24:
            site = base / "nginx" / SITE
            site.write_text(site.read_text() + "# edited by hand\n")
        else:
            (base / "certificates" / PEM).write_text("not a certificate\n")
    return fleet


@pytest.fixture(scope="module")
def unsharded_plan(local_fleet: Fleet) -> dict[str, Any]:
    env = env_for(local_fleet.folder)
    [document] = documents(
        run_all(local_fleet.folder, [local_fleet.args("plan", "--format", "json")], env)
    )
    statuses = {host["status"] for host in document["hosts"].values()}
    assert statuses == {"ok", "changed"}, statuses
    assert document["summary"]["changed"] == 30
    return dict(document)


@pytest.mark.parametrize("count", [1, 3, 7])
def test_sharded_plans_of_200_hosts_merge_to_the_unsharded_plan(
    local_fleet: Fleet, unsharded_plan: dict[str, Any], count: int
) -> None:
    fleet = local_fleet
    commands = [fleet.args("plan", "--format", "json", *extra) for extra in shard_args(count)]
    shards = documents(run_all(fleet.folder, commands, env_for(fleet.folder)))
    check_partition(shards, fleet.hosts, count)
    merged = merge([(f"plan-{i}.json", d) for i, d in enumerate(shards)])
    assert by_host(merged) == by_host(unsharded_plan)
    assert merged["summary"] == unsharded_plan["summary"]
    assert merged["playbook"] == unsharded_plan["playbook"]
    assert merged["inventory"] == unsharded_plan["inventory"]


def test_sharded_status_merges_to_the_unsharded_status(local_fleet: Fleet) -> None:
    fleet = local_fleet
    commands = [fleet.args("status", "--format", "json")]
    commands += [fleet.args("status", "--format", "json", *extra) for extra in shard_args(3)]
    # Exit 1 where the damaged certificates are: a problem status reports.
    ran = run_all(fleet.folder, commands, env_for(fleet.folder))
    whole, *shards = documents(ran, ok=(0, 1))
    assert whole["kind"] == "status" and whole["shard"] is None
    merged = merge([(f"status-{i}.json", d) for i, d in enumerate(shards)])
    assert merged["certificates"] == whole["certificates"]
    assert merged["authorities"] == whole["authorities"]
    assert merged["hosts"] == whole["hosts"]  # drift and last apply, host by host
    assert merged["summary"] == whole["summary"]
    assert len({row["host"] for row in merged["certificates"]}) == 200
    # The merged document feeds the metrics and the report as an unsharded one does.
    (fleet.folder / "merged.json").write_text(json.dumps(merged))
    shown = run_all(
        fleet.folder,
        [
            ["status", "--from-json", "merged.json", "--format", "prometheus"],
            ["report", "--from-json", "merged.json", "--out", "merged.html"],
        ],
        env_for(fleet.folder),
    )
    # (exit status as the unsharded status's: 1 when a certificate has a problem)
    assert [status for status, _, _ in shown] == [ran[0][0]] * 2, shown
    metrics = shown[0][1]
    assert "provision_certificate_days_left{" in metrics
    assert metrics.count("provision_host_drift{") == 200
    assert (fleet.folder / "merged.html").read_text().count("<tr") > 200


# --- 20 SSH hosts ---------------------------------------------------------------------------


@pytest.mark.integration
def test_sharded_runs_over_ssh(sshd_fleet: SshdFleet, tmp_path: Path) -> None:
    """Plans in 1, 3 and 7 shards of 20 sshd hosts merge to the unsharded plan; applies in 3
    shards merge to the unsharded apply host by host."""
    require_tool("ssh-keygen")
    servers = sshd_fleet.start(20)
    project = tmp_path / "project"
    write_project(project, sshd_fleet, servers)
    known = known_hosts_for(tmp_path / "known_hosts", servers)
    env = env_for(tmp_path)
    names = [server.name for server in servers]

    def args(verb: str, *extra: str) -> list[str]:
        return [verb, "ssh.yml", "-i", "ssh-inventory.yml", "--known-hosts", str(known),
                "--connect-timeout", "20", "--format", "json", *extra]  # fmt: skip

    def wipe() -> None:
        for server in servers:
            subprocess.run(["rm", "-rf", str(host_root(server))], check=True)

    # The unsharded apply, on fresh hosts; then the hosts fresh again for the shards.
    [whole_apply] = documents(run_all(project, [args("apply")], env))
    assert {h["status"] for h in whole_apply["hosts"].values()} == {"changed"}
    wipe()
    commands = [args("plan")]
    for count in (1, 3, 7):
        commands += [args("plan", *extra) for extra in shard_args(count)]
    whole_plan, *plans = documents(run_all(project, commands, env))
    for count, shards in ((1, plans[:1]), (3, plans[1:4]), (7, plans[4:])):
        check_partition(shards, names, count)
        merged = merge([(f"plan-{i}.json", d) for i, d in enumerate(shards)])
        assert by_host(merged) == by_host(whole_plan), count

    applied = documents(run_all(project, [args("apply", *extra) for extra in shard_args(3)], env))
    check_partition(applied, names, 3)
    for index, document in enumerate(applied):
        (project / f"apply-{index}.json").write_text(json.dumps(document))
    [(status, stdout, stderr)] = run_all(
        project, [["merge", "apply-2.json", "apply-0.json", "apply-1.json"]], env
    )
    assert status == 0, stderr
    merged = json.loads(stdout)
    assert by_host(merged) == by_host(whole_apply)
    assert merged["summary"] == whole_apply["summary"] == {
        "ok": 0, "changed": 20, "failed": 0, "skipped": 0,
    }  # fmt: skip


# --- rolling within a shard -------------------------------------------------------------------


def test_serial_and_max_fail_percentage_apply_within_each_shard(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path / "fleet", 12, pkcs12=False)
    book = yaml.safe_load(fleet.playbook.read_text())
    fleet.playbook.write_text(
        yaml.safe_dump({"serial": 1, "max_fail_percentage": 0, **book}, sort_keys=False)
    )
    first, second = select(fleet.hosts, Shard(0, 2)), select(fleet.hosts, Shard(1, 2))
    # The first host of shard 0 cannot be written to: its folder is a file.
    (fleet.folder / "fleet").mkdir()
    (fleet.folder / "fleet" / first[0]).write_text("in the way\n")
    cli = Cli(fleet.folder)
    args = [fleet.playbook.name, "-i", fleet.inventory.name, "--format", "json"]

    stopped = cli("apply", *args, "--shard", "0/2")
    assert stopped.exit_code == 1
    statuses = {h: e["status"] for h, e in json.loads(stopped.stdout)["hosts"].items()}
    # Its batch failed beyond 0%: the rest of shard 0 was skipped ...
    assert statuses == {first[0]: "failed", **dict.fromkeys(first[1:], "skipped")}
    # Its own retry file, beside the playbook: shards sharing a folder keep theirs apart.
    retry = fleet.folder / "fleet.shard-0-of-2.retry"
    assert retry.read_text().split() == first
    # ... and shard 1 rolled on its own, one host at a time, untouched by shard 0's failure.
    went = cli("apply", *args, "--shard", "1/2")
    assert went.exit_code == 0, went.stderr
    assert {h: e["status"] for h, e in json.loads(went.stdout)["hosts"].items()} == dict.fromkeys(
        second, "changed"
    )


# --- saved plans ------------------------------------------------------------------------------


def test_a_saved_plan_applies_only_on_its_shard(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path / "fleet", 12, pkcs12=False)
    cli = Cli(fleet.folder)
    book, inventory = fleet.playbook.name, fleet.inventory.name
    made = cli("plan", book, "-i", inventory, "--shard", "1/3", "--out", "plan.json")
    assert made.exit_code == 0, made.stderr
    saved = json.loads((fleet.folder / "plan.json").read_text())
    assert saved["format"] == "provision-plan/4" and saved["shard"] == "1/3"
    mine = select(fleet.hosts, Shard(1, 3))
    assert [h["host"] for h in saved["hosts"]] == mine

    for other in ("0/3", "1/4"):
        refused = cli("apply", "plan.json", "--shard", other)
        assert refused.exit_code == 1
        assert "the plan was made for shard 1/3, and --shard" in refused.stderr
    assert not any((fleet.folder / "fleet" / host).exists() for host in fleet.hosts)

    applied = cli("apply", "plan.json", "--shard", "1/3", "--format", "json")
    assert applied.exit_code == 0, applied.stderr
    document = json.loads(applied.stdout)
    assert document["shard"] == "1/3" and document["kind"] == "apply"
    assert sorted(document["hosts"]) == sorted(mine)
    touched = sorted(h for h in fleet.hosts if (fleet.folder / "fleet" / h).exists())
    assert touched == sorted(mine)

    # A plan made for every host is not applied as a shard either.
    assert cli("plan", book, "-i", inventory, "--out", "all.json").exit_code == 0
    refused = cli("apply", "all.json", "--shard", "0/3")
    assert refused.exit_code == 1 and "made for every host" in refused.stderr


# --- internal CA ------------------------------------------------------------------------------


def ca_playbook(fleet: Fleet, *, create: bool, names_variant: int = 0) -> None:
    fleet.reconfigure(names_variant=names_variant)
    book = yaml.safe_load(fleet.playbook.read_text())
    book["authorities"] = [
        {
            "name": "internal",
            "dir": "pki/internal",
            "create": create,
            "subject": {"common_name": "Shard Test CA"},
            "key": {"type": "ecdsa", "curve": "p256"},
            "crl": {"dir": "pki/crl"},
        }
    ]
    book["certificates"][0]["source"] = {"type": "ca", "authority": "internal"}
    fleet.playbook.write_text(yaml.safe_dump(book, sort_keys=False))


def serials(fleet: Fleet) -> dict[str, int]:
    found = {}
    for host in fleet.hosts:
        pem = fleet.root(host) / "fleet" / host / "certificates" / PEM
        text = run_openssl("x509", "-in", str(pem), "-noout", "-serial")
        found[host] = int(text.strip().split("=", 1)[1], 16)
    return found


def test_sharded_apply_with_an_internal_ca(tmp_path: Path) -> None:
    require_tool("openssl")
    fleet = Fleet(tmp_path / "fleet", 24, pkcs12=False)
    env = env_for(tmp_path)

    # An authority still to create is refused by every shard, before any host is touched.
    ca_playbook(fleet, create=True)
    [(status, _out, err)] = run_all(fleet.folder, [fleet.args("apply", "--shard", "0/2")], env)
    assert status == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "authority 'internal' does not exist yet" in err
    assert f"`provision ca init {fleet.playbook.name} internal`" in err
    assert not (fleet.folder / "pki").exists() and not (fleet.folder / "fleet").exists()

    ca_playbook(fleet, create=False)
    made = Cli(fleet.folder)("ca", "init", fleet.playbook.name, "internal")
    assert made.exit_code == 0, made.stderr
    authority = snapshot(fleet.folder / "pki")

    commands = [fleet.args("apply", "--format", "json", *extra) for extra in shard_args(3)]
    first = documents(run_all(fleet.folder, commands, env))
    check_partition(first, fleet.hosts, 3)
    issued = serials(fleet)
    assert len(set(issued.values())) == len(fleet.hosts)
    # Random 159-bit serials, not the shared counter every shard read (1, 2, ... << 64).
    assert all(serial.bit_length() > 128 for serial in issued.values()), issued
    # The authority's folder is as `ca init` left it: no serial, revocation or CRL written.
    assert snapshot(fleet.folder / "pki") == authority

    # New names: every leaf is reissued, and the replaced ones are named, not revoked.
    ca_playbook(fleet, create=False, names_variant=1)
    second = documents(run_all(fleet.folder, commands, env))
    reissued = serials(fleet)
    assert not set(reissued.values()) & set(issued.values())
    assert len(set(reissued.values())) == len(fleet.hosts)
    assert snapshot(fleet.folder / "pki") == authority
    for index, document in enumerate(second):
        (fleet.folder / f"apply-{index}.json").write_text(json.dumps(document))
        for host, entry in document["hosts"].items():
            assert entry["superseded"] == [{"authority": "internal", "serial": f"{issued[host]:x}"}]

    cli = Cli(fleet.folder)
    merged = cli("merge", "apply-0.json", "apply-1.json", "apply-2.json", "--out", "apply.json")
    assert merged.exit_code == 0, merged.stderr
    published = cli("ca", "crl", fleet.playbook.name, "internal", "--superseded", "apply.json")
    assert published.exit_code == 0, published.stderr
    assert "revoked 24 superseded leaves" in published.stdout
    crl = run_openssl("crl", "-inform", "DER", "-in", str(fleet.folder / "pki/crl/crl.der"),
                      "-noout", "-text")  # fmt: skip
    listed = {int(n, 16) for n in re.findall(r"Serial Number: ([0-9A-F]+)", crl)}
    assert listed == set(issued.values())


# --- the Kubernetes example in docs/scale.md ---------------------------------------------------


def yaml_blocks(markdown: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", markdown, flags=re.S)


def unknown_fields(value: Any, kind: str, at: str = "") -> list[str]:
    """Keys of ``value`` that the client's model ``kind`` does not have, recursively."""
    from kubernetes import client

    if kind.startswith("list["):
        return [
            p
            for i, item in enumerate(value)
            for p in unknown_fields(item, kind[5:-1], f"{at}[{i}]")
        ]
    if kind.startswith("dict("):
        inner = kind[5:-1].split(", ", 1)[1]
        return [p for k, item in value.items() for p in unknown_fields(item, inner, f"{at}.{k}")]
    model = getattr(client, kind, None)
    if model is None:  # str, int, bool, object
        return []
    assert isinstance(value, dict), (at, value)
    by_key = {key: attr for attr, key in model.attribute_map.items()}
    problems = [f"{at}.{key}" for key in value if key not in by_key]
    for key, item in value.items():
        if key in by_key and item is not None:
            problems += unknown_fields(item, model.openapi_types[by_key[key]], f"{at}.{key}")
    return problems


def test_the_kubernetes_example_is_an_indexed_job_provision_accepts(tmp_path: Path) -> None:
    pytest.importorskip("kubernetes")  # the test extra
    import typer.main
    from kubernetes import client

    from provision.cli import _mount_subcommands, app
    from provision.cli.common import shard_from

    text = (ROOT / "docs" / "scale.md").read_text()
    manifests = [d for block in yaml_blocks(text) for d in yaml.safe_load_all(block)]
    [job] = [d for d in manifests if d.get("kind") == "Job"]
    [config] = [d for d in manifests if d.get("kind") == "ConfigMap"]

    assert unknown_fields(job, "V1Job") == []
    assert unknown_fields(config, "V1ConfigMap") == []
    model = client.ApiClient()._ApiClient__deserialize(job, "V1Job")  # type: ignore[attr-defined]
    assert isinstance(model, client.V1Job)
    spec = model.spec
    assert spec.completion_mode == "Indexed"
    count = spec.completions
    assert count > 1 and spec.parallelism == count

    # The container's command line: a shell running provision, its output to the volume.
    [container] = spec.template.spec.containers
    assert container.command == ["/bin/sh", "-c"]
    words = shlex.split(container.args[0])
    redirect = words.index(">")
    argv, target = words[:redirect], words[redirect + 1]
    assert argv[0] == "provision"
    results = {m.mount_path for m in container.volume_mounts if m.name == "results"}
    assert any(target.startswith(f"{path}/") for path in results)
    assert "$JOB_COMPLETION_INDEX" in target  # one file per shard

    # provision's own CLI parses it (a dry parse: no command runs) ...
    _mount_subcommands()
    group = typer.main.get_command(app)
    context = group.make_context("provision", list(argv[1:]), resilient_parsing=False)
    given = [*getattr(context, "_protected_args", ()), *context.args]
    name, command, rest = group.resolve_command(context, given)  # type: ignore[attr-defined]
    parsed = command.make_context(name, list(rest), parent=context).params
    assert name == "apply"
    # ... and each pod's index names one of the N shards, all of them together.
    indexes = []
    for index in range(count):
        os.environ[parsed["shard_env"]] = str(index)
        try:
            indexes.append(shard_from(parsed["shard"], parsed["shard_env"], parsed["shard_count"]))
        finally:
            del os.environ[parsed["shard_env"]]
    assert indexes == [Shard(i, count) for i in range(count)]

    # The playbook and inventory of the ConfigMap are valid, at the paths the pod mounts.
    inputs = {m.name: m.mount_path for m in container.volume_mounts}["inputs"]
    assert parsed["playbook"] == f"{inputs}/site.yml"
    assert list(parsed["inventory"]) == [f"{inputs}/inventory.yml"]
    for file, content in config["data"].items():
        (tmp_path / file).write_text(content)
    checked = Cli(tmp_path)("validate", "site.yml", "-i", "inventory.yml")
    assert checked.exit_code == 0, checked.stdout + checked.stderr
    assert "valid for 3 hosts" in checked.stdout
