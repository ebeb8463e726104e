"""`provision rollback` brings back what an apply replaced (issue 8, item 3).

Backups are ``CERTIFICATES_DIR/.backup/STAMP/`` folders with a manifest of the files an apply
replaced (copied) and created. A rollback restores the bytes and modes of the former, removes
the latter, is itself an apply (backed up, so it can be rolled back), and tests and reloads
every site. Runs the CLI in-process (the ``cli`` fixture) on a copy of the example project:
three hosts on the local transport.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import snapshot

PFX_PASSWORD = "rollback pfx pass"
ENV = {"PFX_PASSWORD": PFX_PASSWORD}
INVENTORY = "inventory/example.yml"
SELF_SIGNED = "playbooks/callmanager-https.yml"
CA = "playbooks/callmanager-https-ca.yml"
HOSTS = ("cm-pub-01", "cm-sub-01", "cm-sub-02")
CA_ONLY = ("httpscert.p7b", "httpscert.pfx")


@pytest.fixture
def example(project: Path) -> Path:
    # A CA folder an earlier apply may have left in the source tree (git-ignored) would
    # make the CA pre-exist; start without one, as a new user does.
    shutil.rmtree(project / "playbooks" / "pki", ignore_errors=True)
    return project


def certs(project: Path, host: str) -> Path:
    return project / ".provision" / "fleet" / host / "certificates"


def site_config(project: Path, host: str) -> Path:
    return certs(project, host).parent / "nginx" / "default-web-site.conf"


def files(project: Path) -> dict[str, tuple[bytes, int]]:
    """Every host's files (outputs, state, site config) with their modes; not the backups,
    locks or staged files."""
    result = {}
    for host in HOSTS:
        for path in [*sorted(certs(project, host).glob("*")), site_config(project, host)]:
            if path.is_file() and not path.name.startswith((".provision.lock", ".backup")):
                result[str(path.relative_to(project))] = (
                    path.read_bytes(),
                    path.stat().st_mode & 0o777,
                )
    return result


def backup_stamps(project: Path, host: str = "cm-pub-01") -> list[str]:
    root = certs(project, host) / ".backup"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def ok(cli: Any, *args: str) -> Any:
    result = cli(*args, env=ENV)
    assert result.exit_code == 0, result.stdout + result.stderr
    return result


def apply(cli: Any, playbook: str) -> Any:
    return ok(cli, "apply", playbook, "-i", INVENTORY)


def rollback(cli: Any, playbook: str, *extra: str) -> Any:
    return ok(cli, "rollback", playbook, "-i", INVENTORY, *extra)


def assert_no_changes(cli: Any, playbook: str) -> None:
    result = cli("plan", playbook, "-i", INVENTORY, "--detailed-exitcode", env=ENV)
    assert result.exit_code == 0, result.stdout + result.stderr


def test_rollback_undoes_the_switch_to_the_internal_ca(example: Path, cli: Any) -> None:
    apply(cli, SELF_SIGNED)
    self_signed = files(example)
    apply(cli, CA)
    with_ca = files(example)
    for host in HOSTS:
        for name in ("httpscert.cer", "httpscert.pem", "httpscert.key"):
            key = str((certs(example, host) / name).relative_to(example))
            assert with_ca[key] != self_signed[key], key
        key = str(site_config(example, host).relative_to(example))
        assert with_ca[key] != self_signed[key]  # the config names its playbook

    result = rollback(cli, CA)
    for host in HOSTS:
        assert f"{host}: changed" in result.stdout
    # Exactly the previous bytes and modes (the key 0600) of every file; the CA's extra
    # outputs are gone.
    assert files(example) == self_signed
    for host in HOSTS:
        for name in CA_ONLY:
            assert not (certs(example, host) / name).exists()
        assert (certs(example, host) / "httpscert.key").stat().st_mode & 0o777 == 0o600
        assert not (certs(example, host) / ".provision.lock").exists()
        assert not (certs(example, host) / ".provision-journal.json").exists()
    assert_no_changes(cli, SELF_SIGNED)


def test_rollback_twice_goes_one_further_back_then_says_nothing_more(
    example: Path, cli: Any
) -> None:
    """Issue 15, item 6: a second rollback undoes the apply before (as an editor's undo, or
    Capistrano's rollback), not the rollback it just made; then there is nothing more."""
    apply(cli, SELF_SIGNED)
    self_signed = files(example)
    apply(cli, CA)
    rollback(cli, CA)
    assert files(example) == self_signed
    # The first apply created every file: undoing it too leaves nothing but the backups.
    second = rollback(cli, CA)
    assert "restore from backup" not in second.stdout
    assert files(example) == {}
    before = snapshot(example / ".provision")
    third = cli("rollback", CA, "-i", INVENTORY, env=ENV)
    assert third.exit_code == 1, third.stdout
    for host in HOSTS:
        assert f"{host}: failed: nothing more to roll back: every apply kept" in third.stdout
    assert "Traceback" not in third.stdout + third.stderr
    assert snapshot(example / ".provision") == before  # not even a backup was added


def test_a_rollback_is_undone_by_naming_its_backup(example: Path, cli: Any) -> None:
    apply(cli, SELF_SIGNED)
    self_signed = files(example)
    apply(cli, CA)
    with_ca = files(example)
    rollback(cli, CA)
    assert files(example) == self_signed
    # The rollback backed up what it replaced, and recorded nothing as created: undoing it
    # (--to its backup) restores the CA's files, .p7b and .pfx included.
    undo = backup_stamps(example)[-1]
    result = rollback(cli, CA, "--to", undo)
    assert f"restore from backup {undo}" in result.stdout
    assert files(example) == with_ca
    assert_no_changes(cli, CA)
    # The CA's apply is in effect again, so a rollback undoes it once more.
    rollback(cli, CA)
    assert files(example) == self_signed


def test_rollback_to_a_timestamp_undoes_every_later_apply(example: Path, cli: Any) -> None:
    apply(cli, SELF_SIGNED)
    self_signed = files(example)
    [created] = backup_stamps(example)
    apply(cli, CA)
    with_ca = files(example)
    # A second change under the CA: other names (a reissue).
    data = yaml.safe_load((example / CA).read_text())
    data["certificates"][0]["names"].append("ccm.voice.example.com")
    (example / "playbooks" / "callmanager-https-ca-2.yml").write_text(
        yaml.safe_dump(data, sort_keys=False)
    )
    second = "playbooks/callmanager-https-ca-2.yml"
    apply(cli, second)
    assert files(example) != with_ca
    stamps = backup_stamps(example)
    assert len(stamps) == 3 and stamps[0] == created
    to_switch = stamps[1]
    # Every host's backups of one apply share its timestamp, so one --to fits the fleet.
    for host in HOSTS:
        assert backup_stamps(example, host) == stamps

    result = rollback(cli, second, "--to", to_switch)
    assert f"restore from backup {to_switch}" in result.stdout
    assert files(example) == self_signed
    assert_no_changes(cli, SELF_SIGNED)

    # --to the very first apply, which created everything: nothing is left but the backups.
    rollback(cli, SELF_SIGNED, "--to", created)
    assert files(example) == {}
    for host in HOSTS:
        assert (certs(example, host) / ".backup").is_dir()


def test_rollback_to_an_unknown_timestamp_fails_naming_the_backups(example: Path, cli: Any) -> None:
    apply(cli, SELF_SIGNED)
    before = files(example)
    result = cli("rollback", SELF_SIGNED, "-i", INVENTORY, "--to", "19990101", env=ENV)
    assert result.exit_code == 1
    [stamp] = backup_stamps(example)
    for host in HOSTS:
        assert f"{host}: failed: no backup matches '19990101' (have: {stamp})" in result.stdout
    assert files(example) == before


def test_a_host_without_backups_fails_clearly(example: Path, cli: Any) -> None:
    ok(cli, "apply", SELF_SIGNED, "-i", INVENTORY, "--limit", "cm-pub-01")
    result = cli("rollback", SELF_SIGNED, "-i", INVENTORY, env=ENV)
    assert result.exit_code == 1, result.stdout
    assert "cm-pub-01: changed" in result.stdout
    for host in ("cm-sub-01", "cm-sub-02"):
        assert f"{host}: failed: no backups to roll back to" in result.stdout
        assert not certs(example, host).exists() or not any(certs(example, host).iterdir())
    assert "Recap: ok 0, changed 1, failed 2" in result.stdout


# -- sites are tested and reloaded ------------------------------------------------------------


def reloading(example: Path, playbook: str, log: Path) -> str:
    """A copy of ``playbook`` whose site reloads: test and reload commands log the host."""
    data = yaml.safe_load((example / playbook).read_text())
    site = data["sites"][0]
    site["reload"] = True
    site["test_command"] = f"echo 'test {{{{ host.name }}}}' >> {log}"
    site["reload_command"] = f"echo 'reload {{{{ host.name }}}}' >> {log}"
    name = Path(playbook).stem + "-reload.yml"
    (example / "playbooks" / name).write_text(yaml.safe_dump(data, sort_keys=False))
    return f"playbooks/{name}"


def test_rollback_tests_and_reloads_every_site(example: Path, cli: Any, tmp_path: Path) -> None:
    log = tmp_path / "commands.log"
    self_signed = reloading(example, SELF_SIGNED, log)
    ca = reloading(example, CA, log)
    apply(cli, self_signed)
    before = files(example)
    apply(cli, ca)
    assert sorted(log.read_text().splitlines()) == sorted(
        [f"test {h}" for h in HOSTS] * 2 + [f"reload {h}" for h in HOSTS] * 2
    )
    log.unlink()

    result = rollback(cli, ca)
    lines = log.read_text().splitlines()
    assert sorted(lines) == sorted([f"test {h}" for h in HOSTS] + [f"reload {h}" for h in HOSTS])
    for host in HOSTS:
        assert lines.index(f"test {host}") < lines.index(f"reload {host}")
        assert not (certs(example, host) / ".provision-reload-pending").exists()
    assert "reload after rollback" in result.stdout
    assert files(example) == before
    assert_no_changes(cli, self_signed)


def test_a_rollback_the_server_rejects_is_undone(example: Path, cli: Any, tmp_path: Path) -> None:
    """The restored files fail the config test: the files of before the rollback come back
    and the host is reported failed with the command's words."""
    log = tmp_path / "commands.log"
    apply(cli, reloading(example, SELF_SIGNED, log))
    ca = reloading(example, CA, log)
    apply(cli, ca)
    with_ca = files(example)
    data = yaml.safe_load((example / ca).read_text())
    data["sites"][0]["test_command"] = "echo 'config rejected' >&2; exit 1"
    (example / ca).write_text(yaml.safe_dump(data, sort_keys=False))
    result = cli("rollback", ca, "-i", INVENTORY, env=ENV)
    assert result.exit_code == 1
    for host in HOSTS:
        assert f"{host}: failed: config test" in result.stdout
    assert "config rejected" in result.stdout
    assert files(example) == with_ca


def test_rollback_backups_are_listed_in_a_manifest(example: Path, cli: Any) -> None:
    """What rollback relies on: each apply's manifest lists the replaced files (with a copy)
    and the created ones."""
    apply(cli, SELF_SIGNED)
    before = files(example)
    apply(cli, CA)
    host = "cm-pub-01"
    folder = certs(example, host) / ".backup" / backup_stamps(example)[-1]
    manifest = json.loads((folder / "manifest.json").read_text())
    replaced = {Path(e["path"]).name: e for e in manifest["files"]}
    assert sorted(replaced) == sorted(
        [
            ".provision-state.json",
            "default-web-site.conf",
            "httpscert.cer",
            "httpscert.key",
            "httpscert.pem",
        ]
    )
    for entry in replaced.values():
        path = Path(entry["path"])
        assert Path(entry["backup"]).read_bytes() == before[str(path.relative_to(example))][0]
    assert sorted(Path(p).name for p in manifest["created"]) == sorted(CA_ONLY)


def test_a_rollback_whose_reload_fails_reports_what_it_restored(
    example: Path, cli: Any, tmp_path: Path
) -> None:
    """Issue 15, item 5: the files a rollback restored stay restored when the reload fails;
    the host is reported changed and failed, with the reload it still owes."""
    log = tmp_path / "commands.log"
    apply(cli, reloading(example, SELF_SIGNED, log))
    self_signed = files(example)
    ca = reloading(example, CA, log)
    apply(cli, ca)
    data = yaml.safe_load((example / ca).read_text())
    data["sites"][0]["reload_command"] = "echo 'reload refused' >&2; exit 1"
    (example / ca).write_text(yaml.safe_dump(data, sort_keys=False))
    result = cli("rollback", ca, "-i", INVENTORY, env=ENV)
    assert result.exit_code == 1, result.stdout
    restored = files(example)
    markers = [path for path in restored if path.endswith(".provision-reload-pending")]
    assert len(markers) == len(HOSTS)  # each host owes its reload (below)
    assert {p: v for p, v in restored.items() if p not in markers} == self_signed  # left so
    for host in HOSTS:
        assert f"{host}: changed, failed: reload `echo 'reload refused'" in result.stdout
    assert result.stdout.count("  owed     site Default Web Site") == len(HOSTS)
    assert "reload `echo 'reload refused' >&2; exit 1`: the next apply runs it" in result.stdout
    assert "Recap: ok 0, changed 3, failed 3" in result.stdout
    for host in HOSTS:
        marker = certs(example, host) / ".provision-reload-pending"
        assert marker.read_text() == "Default Web Site\n"


# -- rollback --list, full paths, and what pruning keeps ---------------------------------------


def two_sites(example: Path, name: str, *, port: int = 8443) -> str:
    """The self-signed playbook with two sites whose configs are both called site.conf."""
    data = yaml.safe_load((example / SELF_SIGNED).read_text())
    first = data["sites"][0]
    first["config"] = "{{ certificates_dir }}/../a/site.conf"
    second = {
        "name": "Second Site",
        "server": "nginx",
        "config": "{{ certificates_dir }}/../b/site.conf",
        "reload": False,
        "bindings": [{"protocol": "https", "port": port, "certificate": "httpscert"}],
    }
    data["sites"] = [first, second]
    (example / "playbooks" / name).write_text(yaml.safe_dump(data, sort_keys=False))
    return f"playbooks/{name}"


def test_rollback_list_names_full_paths_and_what_each_backup_undoes(
    example: Path, cli: Any
) -> None:
    host = "cm-pub-01"
    folder = certs(example, host)
    site_a = str(folder.parent / "a" / "site.conf")
    site_b = str(folder.parent / "b" / "site.conf")
    first = two_sites(example, "two-sites.yml")
    ok(cli, "apply", first, "-i", INVENTORY, "-l", host)
    # The same playbook, edited: only b/site.conf changes (a config names its playbook).
    second = two_sites(example, "two-sites.yml", port=9443)
    ok(cli, "apply", second, "-i", INVENTORY, "-l", host)
    oldest, latest = backup_stamps(example)

    listed = ok(cli, "rollback", second, "-i", INVENTORY, "-l", host, "--list").stdout
    lines = listed.splitlines()
    assert lines[0] == f"{host}: 2 backups"
    at = lines.index(f"  {oldest}  {when(oldest)}  taken by apply; the oldest, always kept")
    to = lines.index(f"  {latest}  {when(latest)}  taken by apply")
    # The first apply created everything: undoing it removes every file, by its full path.
    assert sorted(lines[at + 1 : to]) == sorted(
        f"      removes  {path}"
        for path in [
            site_a,
            site_b,
            *(str(folder / n) for n in ("httpscert.cer", "httpscert.pem", "httpscert.key")),
            str(folder / ".provision-state.json"),
        ]
    )
    # The second replaced b/site.conf only (the state file is the same: the same outputs).
    assert lines[to + 1 :] == [
        f"      restores {site_b}",
        f"  next rollback undoes {latest} (the apply of {when(latest)})",
    ]

    # The rollback's own report names both configs by their full paths too.
    undone = ok(cli, "rollback", second, "-i", INVENTORY, "-l", host).stdout
    assert f"  update   file {site_b} restore from backup {latest}" in undone

    result = ok(cli, "rollback", second, "-i", INVENTORY, "-l", host, "--list", "--format", "json")
    report = json.loads(result.stdout)["hosts"][host]
    [first_backup, second_backup, rollback_backup] = report["backups"]
    assert [b["name"] for b in report["backups"]][:2] == [oldest, latest]
    assert first_backup["operation"] == "apply" and first_backup["always_kept"] is True
    assert first_backup["undone_by"] is None and first_backup["restores"] == []
    assert site_a in first_backup["removes"] and site_b in first_backup["removes"]
    assert second_backup["undone_by"] == rollback_backup["name"]
    assert second_backup["restores"] == [site_b]
    assert rollback_backup["operation"] == "rollback"
    assert rollback_backup["undoes"] == [latest]
    assert rollback_backup["time"].endswith("Z")
    assert report["next"] == oldest

    # Nothing listed is changed by listing.
    before = snapshot(example / ".provision")
    ok(cli, "rollback", second, "-i", INVENTORY, "--list")
    assert snapshot(example / ".provision") == before

    # The next rollback undoes the first apply: two site.conf, two lines, two full paths.
    undone = ok(cli, "rollback", second, "-i", INVENTORY, "-l", host).stdout
    assert f"  delete   file {site_a} did not exist before backup {oldest}" in undone
    assert f"  delete   file {site_b} did not exist before backup {oldest}" in undone


def when(stamp: str) -> str:
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]} UTC"


def versions(example: Path, count: int, backups: int) -> list[str]:
    """``count`` variants of the self-signed playbook, each a name more (every apply
    reissues), keeping ``backups`` backups."""
    data = yaml.safe_load((example / SELF_SIGNED).read_text())
    data["backups"] = backups
    names = []
    for index in range(count):
        data["certificates"][0]["names"].append(f"v{index}.voice.example.com")
        name = f"playbooks/v{index}.yml"
        (example / name).write_text(yaml.safe_dump(data, sort_keys=False))
        names.append(name)
    return names


def test_rollbacks_take_no_backup_slot_and_each_goes_one_apply_further_back(
    example: Path, cli: Any
) -> None:
    host = ("-l", "cm-pub-01")
    books = versions(example, 3, backups=2)
    states = []
    for book in books:
        states.append(files(example))
        ok(cli, "apply", book, "-i", INVENTORY, *host)
    # Three applies, two slots: the oldest (before provision first wrote) is kept besides.
    assert len(backup_stamps(example)) == 3
    for state in reversed(states):
        ok(cli, "rollback", books[-1], "-i", INVENTORY, *host)
        assert files(example) == state
    assert states[0] == {}
    result = cli("rollback", books[-1], "-i", INVENTORY, *host, env=ENV)
    assert result.exit_code == 1 and "nothing more to roll back" in result.stdout


def test_the_oldest_backup_is_kept_whatever_the_pruning(example: Path, cli: Any) -> None:
    host = ("-l", "cm-pub-01")
    books = versions(example, 5, backups=1)
    ok(cli, "apply", books[0], "-i", INVENTORY, *host)
    [oldest] = backup_stamps(example)
    for book in books[1:]:
        ok(cli, "apply", book, "-i", INVENTORY, *host)
        for _ in range(2):  # an apply and two rollbacks, each a backup of its own
            ok(cli, "rollback", book, "-i", INVENTORY, *host, "--to", backup_stamps(example)[-1])
        stamps = backup_stamps(example)
        assert stamps[0] == oldest, stamps
    # Still the way back to the host as it was before provision.
    ok(cli, "rollback", books[-1], "-i", INVENTORY, *host, "--to", oldest)
    assert files(example) == {}
