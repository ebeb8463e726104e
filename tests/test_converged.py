"""The converged record (issue 9): a run that would change nothing is answered from digests.

Every test here proves one of two things. A *hit* never evaluates the playbook (``api.load`` is
counted, and a hit does not call it) and prints exactly what the full run prints. A *miss* (any
input, any host file, the clock) is evaluated in full, which the change it prints shows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Cli

from provision.converged import document as records_document
from provision.converged import lookup, stamps

PLAYBOOK = "playbooks/callmanager-https.yml"
INVENTORY = "inventory/example.yml"
HOSTS = ("cm-pub-01", "cm-sub-01", "cm-sub-02")


def settle() -> None:
    """Let the files a test just wrote age past the edit margin: a record is only made from
    inputs that were not being changed while the run read them."""
    time.sleep(stamps.EDIT_MARGIN_NS / 1e9 + 0.02)


def host_dir(project: Path, host: str) -> Path:
    return project / ".provision" / "fleet" / host


def records(folder: Path) -> list[Path]:
    return sorted((folder / "converged").glob("*.json"))


def _record_of(folder: Path, project: Path, kind: str) -> Path:
    """The record of ``kind`` for the example run from ``project`` (as the CLI runs it)."""
    here = os.getcwd()
    os.chdir(project)
    try:
        key = records_document.Command(kind, PLAYBOOK, (INVENTORY,), None).key()
    finally:
        os.chdir(here)
    return folder / "converged" / f"{key}.json"


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The playbooks evaluated in full; a run answered from the record adds nothing."""
    import provision.api as api

    calls: list[str] = []
    real = api.load

    def counting(playbook: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(str(playbook))
        return real(playbook, *args, **kwargs)

    monkeypatch.setattr(api, "load", counting)
    return calls


def converge(
    cli: Cli,
    project: Path,
    *extra: str,
    playbook: str = PLAYBOOK,
    env: dict[str, str] | None = None,
) -> None:
    """Apply, then apply again: the second run finds every host converged (and records it)."""
    first = cli("apply", playbook, "-i", INVENTORY, *extra, env=env)
    assert first.exit_code == 0, first.stdout + first.stderr
    settle()
    second = cli("apply", playbook, "-i", INVENTORY, *extra, env=env)
    assert second.exit_code == 0, second.stdout + second.stderr
    assert "changed 0" in second.stdout


@pytest.fixture
def recorded(project: Path, cli: Cli, evaluations: list[str], converged_records: Path) -> Path:
    """Converged and recorded for both kinds of run: apply, and plan (or apply --check)."""
    converge(cli, project)
    assert "no changes" in cli("plan", PLAYBOOK, "-i", INVENTORY).stdout
    assert len(records(converged_records)) == 2
    evaluations.clear()
    return project


# --- hits -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["plan"],
        ["plan", "--format", "json"],
        ["plan", "--format", "markdown"],
        ["plan", "--detailed-exitcode"],
        ["apply"],
        ["apply", "--check"],
        ["apply", "--format", "json"],
    ],
)
def test_a_converged_fleet_is_answered_as_the_full_run_answers(
    recorded: Path, cli: Cli, evaluations: list[str], command: list[str]
) -> None:
    full = cli(*command, PLAYBOOK, "-i", INVENTORY, "--full")
    fast = cli(*command, PLAYBOOK, "-i", INVENTORY)
    assert evaluations == [PLAYBOOK]  # --full only
    assert (fast.exit_code, fast.stderr) == (full.exit_code, full.stderr) == (0, "")

    def without_timings(text: str) -> str:
        return re.sub(r'"seconds": [0-9.e-]+', '"seconds": 0', text)

    assert without_timings(fast.stdout) == without_timings(full.stdout)
    assert (
        "no changes" in fast.stdout or "changed 0" in fast.stdout or '"changed": 0' in fast.stdout
    )


def test_the_record_holds_digests_and_words_never_content(
    recorded: Path, converged_records: Path
) -> None:
    document = json.loads(_record_of(converged_records, recorded, "apply").read_text())
    assert document["format"] == records_document.FORMAT
    assert [h["name"] for h in document["hosts"]] == list(HOSTS)
    text = json.dumps(document)
    key = (host_dir(recorded, "cm-pub-01") / "certificates" / "httpscert.key").read_text()
    assert "PRIVATE KEY" in key and "PRIVATE" not in text
    assert re.fullmatch(r"[0-9a-f]{64}", document["inputs"]["digest"])
    assert f"file:{recorded / PLAYBOOK}" in document["inputs"]["entries"]


def test_a_hit_writes_nothing_anywhere(
    recorded: Path, cli: Cli, converged_records: Path, evaluations: list[str]
) -> None:
    from conftest import snapshot

    before = snapshot(recorded), snapshot(converged_records)
    assert cli("apply", PLAYBOOK, "-i", INVENTORY).exit_code == 0
    assert evaluations == []
    assert (snapshot(recorded), snapshot(converged_records)) == before


# --- misses: every input, every host file ----------------------------------------------------


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


CHANGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "playbook edited": (
        lambda p: _edit(p / PLAYBOOK, "localhost, 127.0.0.1]", "localhost]"),
        "names changed: -127.0.0.1",
    ),
    "inventory edited": (
        lambda p: _edit(p / INVENTORY, "10.10.0.12", "10.10.0.22"),
        "names changed: +10.10.0.22 -10.10.0.12",
    ),
    "group_vars added": (
        lambda p: _write(p / "inventory" / "group_vars" / "all.yml", "www_root: /srv/www\n"),
        "update   site Default Web Site",
    ),
    "host_vars added": (
        lambda p: _write(p / "inventory" / "host_vars" / "cm-sub-01.yml", "www_root: /srv\n"),
        "update   site Default Web Site",
    ),
    "template edited": (
        lambda p: _write(
            p / "templates" / "nginx" / "site.conf.j2",
            (p / "templates" / "nginx" / "site.conf.j2").read_text() + "# x\n",
        ),
        "update   site Default Web Site",
    ),
    "template shadowed by one beside the playbook": (
        lambda p: _write(p / "playbooks" / "templates" / "nginx" / "site.conf.j2", "# mine\n"),
        "update   site Default Web Site",
    ),
    "template shadowed from the current folder": (
        lambda p: _write(p / "nginx" / "site.conf.j2", "# mine\n"),
        "update   site Default Web Site",
    ),
    "certificate deleted on a host": (
        lambda p: (host_dir(p, "cm-sub-02") / "certificates" / "httpscert.pem").unlink(),
        "create   file httpscert.pem",
    ),
    "site config edited on a host": (
        lambda p: _write(host_dir(p, "cm-pub-01") / "nginx" / "default-web-site.conf", "x\n"),
        "update   site Default Web Site",
    ),
    "key made readable on a host": (
        lambda p: (host_dir(p, "cm-pub-01") / "certificates" / "httpscert.key").chmod(0o644),
        "file httpscert.key",
    ),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_any_changed_input_or_host_file_is_evaluated_in_full(
    recorded: Path, cli: Cli, evaluations: list[str], change: str
) -> None:
    mutate, expected = CHANGES[change]
    mutate(recorded)
    settle()
    result = cli("plan", PLAYBOOK, "-i", INVENTORY)
    assert evaluations == [PLAYBOOK]
    assert expected in result.stdout, result.stdout


@pytest.mark.parametrize("name", [".provision.lock", ".provision-journal.json"])
def test_another_runs_lock_or_journal_sends_the_run_in_full(
    recorded: Path, cli: Cli, evaluations: list[str], name: str
) -> None:
    # Another run holds the host (the full run waits for it) or was killed on it (the full run
    # finishes its journal): neither may be answered from the record.
    (host_dir(recorded, "cm-sub-01") / "certificates" / name).write_text("{}")
    cli("plan", PLAYBOOK, "-i", INVENTORY)
    assert evaluations == [PLAYBOOK]


def test_an_authority_replaced_on_the_controller_is_noticed(
    project: Path, cli: Cli, evaluations: list[str], converged_records: Path
) -> None:
    book = yaml.safe_load((project / "playbooks" / "callmanager-https-ca.yml").read_text())
    for certificate in book["certificates"]:
        certificate["outputs"] = [o for o in certificate["outputs"] if "password" not in o]
    (project / "playbooks" / "ca.yml").write_text(yaml.safe_dump(book, sort_keys=False))
    converge(cli, project, playbook="playbooks/ca.yml")
    assert len(records(converged_records)) == 1

    pki = project / "playbooks" / "pki" / "voice-root"
    for file in pki.iterdir():
        file.unlink()
    assert cli("ca", "init", "playbooks/ca.yml", "voice-root").exit_code == 0
    settle()
    evaluations.clear()
    result = cli("plan", "playbooks/ca.yml", "-i", INVENTORY)
    assert evaluations == ["playbooks/ca.yml"]
    assert "replace  certificate httpscert" in result.stdout, result.stdout


def test_another_limit_has_its_own_record(recorded: Path, cli: Cli, evaluations: list[str]) -> None:
    for _ in range(2):
        result = cli("plan", PLAYBOOK, "-i", INVENTORY, "--limit", "cm-pub-01")
        assert result.stdout.startswith("cm-pub-01: no changes\n")
        assert "cm-sub-01" not in result.stdout
    assert evaluations == [PLAYBOOK]  # the first evaluated (and recorded), the second not


def test_changed_provision_code_is_evaluated_in_full(
    recorded: Path, cli: Cli, evaluations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lookup, "code_digest", lambda *_: "another version")
    cli("plan", PLAYBOOK, "-i", INVENTORY)
    assert evaluations == [PLAYBOOK]


def test_an_upgraded_library_changes_the_code_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = tmp_path / "somelib"
    library.mkdir()
    (library / "__init__.py").write_text("VERSION = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(stamps, "LIBRARIES", ("somelib",))
    before = stamps.code_digest()
    assert stamps.code_digest() == before
    (library / "__init__.py").write_text("VERSION = 22\n")  # what an upgrade does
    assert stamps.code_digest() != before


# --- the clock ---------------------------------------------------------------------------------


def test_the_record_holds_until_the_first_renewal_window_opens(
    recorded: Path, converged_records: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography import x509

    document = json.loads(_record_of(converged_records, recorded, "plan").read_text())
    leaves = [
        x509.load_der_x509_certificate(
            (host_dir(recorded, h) / "certificates" / "httpscert.cer").read_bytes()
        )
        for h in HOSTS
    ]
    first_window = min(c.not_valid_after_utc for c in leaves) - dt.timedelta(days=30)
    until = dt.datetime.fromisoformat(document["until"])
    assert until == first_window
    recorded_at = dt.datetime.fromisoformat(document["recorded"])

    monkeypatch.chdir(recorded)
    command = records_document.Command("plan", PLAYBOOK, (INVENTORY,), None)
    second = dt.timedelta(seconds=1)
    assert lookup.lookup(command, now=recorded_at) is not None
    assert lookup.lookup(command, now=until - second) is not None
    assert lookup.lookup(command, now=until) is None  # the window opens: decide again
    assert lookup.lookup(command, now=recorded_at - second) is None  # the clock went back


# --- runs that are never recorded ------------------------------------------------------------


def test_a_run_with_a_password_is_never_recorded(
    project: Path, cli: Cli, converged_records: Path
) -> None:
    book = yaml.safe_load((project / PLAYBOOK).read_text())
    book["certificates"][0]["outputs"].append(
        {"file": "httpscert.pfx", "format": "pkcs12", "password": {"env": "PFX_PASSWORD"}}
    )
    (project / "playbooks" / "pfx.yml").write_text(yaml.safe_dump(book, sort_keys=False))
    converge(cli, project, playbook="playbooks/pfx.yml", env={"PFX_PASSWORD": "s3cret-pfx"})
    assert records(converged_records) == []


def test_a_site_verified_after_apply_is_never_recorded(
    project: Path, cli: Cli, converged_records: Path
) -> None:
    converge(cli, project)
    for path in records(converged_records):
        path.unlink()
    _edit(project / PLAYBOOK, "    reload: false\n", "    reload: false\n    verify: true\n")
    settle()
    for _ in range(2):
        assert "no changes" in cli("plan", PLAYBOOK, "-i", INVENTORY).stdout
    assert records(converged_records) == []


@pytest.mark.parametrize("change", ["edited", "deleted", "playbook deleted"])
def test_an_input_changed_during_the_run_is_not_recorded(
    project: Path, cli: Cli, converged_records: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    import provision.api as api

    host_vars = project / "inventory" / "host_vars" / "cm-sub-01.yml"
    _write(host_vars, "www_root: /srv/www\n")
    assert cli("apply", PLAYBOOK, "-i", INVENTORY).exit_code == 0
    settle()
    real = api.run

    def changing_inputs(*args: Any, **kwargs: Any) -> Any:
        # After the inputs were loaded, before the hosts are planned: the plan is made from
        # what was there before, and must not be recorded against what is there after.
        if change == "edited":
            _edit(project / INVENTORY, "10.10.0.12", "10.10.0.22")
        elif change == "deleted":
            host_vars.unlink()
        else:
            (project / PLAYBOOK).unlink()
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "run", changing_inputs)
    assert "changed 0" in cli("apply", PLAYBOOK, "-i", INVENTORY).stdout
    monkeypatch.setattr(api, "run", real)
    assert records(converged_records) == []
    settle()
    result = cli("plan", PLAYBOOK, "-i", INVENTORY)
    if change == "playbook deleted":
        assert result.exit_code == 1 and "callmanager-https.yml" in result.stderr
    else:
        expected = "names changed" if change == "edited" else "update   site Default Web Site"
        assert expected in result.stdout


@pytest.mark.parametrize("change", ["edited", "deleted"])
def test_a_host_file_changed_after_the_plan_read_it_is_not_recorded(
    project: Path, cli: Cli, converged_records: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    assert cli("apply", PLAYBOOK, "-i", INVENTORY).exit_code == 0
    settle()
    real = records_document.record
    config = host_dir(project, "cm-sub-02") / "nginx" / "default-web-site.conf"

    def after_the_plan(*args: Any, **kwargs: Any) -> bool:
        if change == "edited":
            config.write_text(config.read_text() + "# edited by hand\n")
        else:
            config.unlink()  # (no file's change time shows a deletion)
        return real(*args, **kwargs)

    monkeypatch.setattr(records_document, "record", after_the_plan)
    assert "changed 0" in cli("apply", PLAYBOOK, "-i", INVENTORY).stdout
    monkeypatch.setattr(records_document, "record", real)
    assert records(converged_records) == []
    action = "update" if change == "edited" else "create"
    assert f"{action}   site Default Web Site" in cli("apply", PLAYBOOK, "-i", INVENTORY).stdout


def test_a_whole_second_change_time_is_judged_with_a_wider_margin() -> None:
    second = 1_000_000_000
    started = 1_700_000_000 * second + 400_000_000  # 0.4 s into a second
    edited_before = started - stamps.EDIT_MARGIN_NS
    # Fine-grained times: only what changed after the margin began.
    assert not stamps.changed_during_run(started - 60_000_001, edited_before)
    assert stamps.changed_during_run(started - 10_000_000, edited_before)
    # Whole seconds: a change later in the run's first second reads as its start, 0.4 s
    # before the run; anything within two seconds is suspect.
    assert stamps.changed_during_run(1_700_000_000 * second, edited_before)
    assert not stamps.changed_during_run(1_699_999_997 * second, edited_before)


def test_a_limit_read_from_a_file_is_not_recorded(
    project: Path, cli: Cli, converged_records: Path
) -> None:
    (project / "hosts.retry").write_text("cm-pub-01\n")
    converge(cli, project, "--limit", "@hosts.retry")
    assert records(converged_records) == []


def test_batches_are_shown_as_the_full_run_shows_them(
    project: Path, cli: Cli, evaluations: list[str]
) -> None:
    _edit(project / PLAYBOOK, "hosts: callmanager\n", "hosts: callmanager\nserial: 2\n")
    converge(cli, project)
    evaluations.clear()
    fast = cli("apply", PLAYBOOK, "-i", INVENTORY)
    full = cli("apply", PLAYBOOK, "-i", INVENTORY, "--full")
    assert evaluations == [PLAYBOOK]
    assert fast.stderr == full.stderr == "batch 1/2: 2 hosts\nbatch 2/2: 1 host\n"
    assert fast.stdout == full.stdout


# --- what identifies a run, and records that cannot be trusted -------------------------------


def test_a_plan_record_never_answers_an_apply(
    project: Path, cli: Cli, evaluations: list[str]
) -> None:
    assert cli("apply", PLAYBOOK, "-i", INVENTORY).exit_code == 0
    settle()
    for _ in range(2):
        assert "no changes" in cli("plan", PLAYBOOK, "-i", INVENTORY).stdout
    assert evaluations == [PLAYBOOK, PLAYBOOK]  # the first plan recorded, the second hit
    assert "changed 0" in cli("apply", PLAYBOOK, "-i", INVENTORY).stdout
    assert evaluations == [PLAYBOOK] * 3  # an apply takes a lock: its own record, its own run


def test_an_apply_that_writes_forgets_every_record(
    recorded: Path, cli: Cli, converged_records: Path
) -> None:
    # Another limit, changing one host: a run killed half-way could leave staged files that
    # only a full run removes, so no record may survive the start of a writing apply.
    (host_dir(recorded, "cm-pub-01") / "certificates" / "httpscert.pem").unlink()
    result = cli("apply", PLAYBOOK, "-i", INVENTORY, "--limit", "cm-pub-01")
    assert "changed 1" in result.stdout
    assert records(converged_records) == []


def test_a_symlinked_release_switched_is_another_run(
    project: Path, cli: Cli, evaluations: list[str]
) -> None:
    for release in ("v1", "v2"):
        folder = project / "releases" / release
        folder.mkdir(parents=True)
        (folder / "site.yml").write_text((project / PLAYBOOK).read_text())
    _write(
        project / "releases" / "v2" / "templates" / "nginx" / "site.conf.j2",
        (project / "templates" / "nginx" / "site.conf.j2").read_text() + "# v2\n",
    )
    (project / "current").symlink_to("releases/v1")
    converge(cli, project, playbook="current/site.yml")
    assert "no changes" in cli("plan", "current/site.yml", "-i", INVENTORY).stdout  # recorded
    (project / "current").unlink()
    (project / "current").symlink_to("releases/v2")
    evaluations.clear()
    result = cli("plan", "current/site.yml", "-i", INVENTORY)
    assert evaluations == ["current/site.yml"]
    assert "update   site Default Web Site" in result.stdout


def test_home_is_part_of_what_identifies_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    command = records_document.Command("plan", PLAYBOOK, (INVENTORY,), None)
    monkeypatch.setenv("HOME", "/home/one")
    first = command.key()
    monkeypatch.setenv("HOME", "/home/two")  # ~ in certificates_dir leads elsewhere
    assert command.key() != first


def test_an_authority_key_made_readable_is_refused_again(
    project: Path, cli: Cli, converged_records: Path
) -> None:
    book = yaml.safe_load((project / "playbooks" / "callmanager-https-ca.yml").read_text())
    for certificate in book["certificates"]:
        certificate["outputs"] = [o for o in certificate["outputs"] if "password" not in o]
    (project / "playbooks" / "ca.yml").write_text(yaml.safe_dump(book, sort_keys=False))
    converge(cli, project, playbook="playbooks/ca.yml")
    assert len(records(converged_records)) == 1
    (project / "playbooks" / "pki" / "voice-root" / "ca.key").chmod(0o644)
    settle()
    result = cli("apply", "playbooks/ca.yml", "-i", INVENTORY)
    assert result.exit_code == 1
    assert "readable by others" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "content", ["null", "[]", "{", '{"format": "provision-converged/1"}', "deep"]
)
def test_a_broken_record_means_a_full_run(
    recorded: Path, cli: Cli, converged_records: Path, evaluations: list[str], content: str
) -> None:
    text = "[" * 100_000 if content == "deep" else content
    _record_of(converged_records, recorded, "plan").write_text(text)
    result = cli("plan", PLAYBOOK, "-i", INVENTORY)
    assert result.exit_code == 0 and "no changes" in result.stdout
    assert evaluations == [PLAYBOOK]


def test_a_record_of_no_host_or_of_other_inputs_answers_nothing(
    recorded: Path, cli: Cli, converged_records: Path, evaluations: list[str]
) -> None:
    path = _record_of(converged_records, recorded, "plan")
    document = json.loads(path.read_text())
    for broken in (
        {**document, "hosts": []},
        {**document, "inputs": {"entries": [], "digest": stamps.inputs_digest([])}},
    ):
        path.write_text(json.dumps(broken))
        cli("plan", PLAYBOOK, "-i", INVENTORY)
    assert evaluations == [PLAYBOOK, PLAYBOOK]


def test_an_input_that_cannot_be_read_again_is_not_recorded(
    project: Path, cli: Cli, converged_records: Path
) -> None:
    import socket

    # Loading looks for group_vars/callmanager.yaml (and skips what is not a file); the record
    # must digest what is there, and opening a socket fails (ENXIO).
    (project / "inventory" / "group_vars").mkdir()
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(project / "inventory" / "group_vars" / "callmanager.yaml"))
        converge(cli, project)
    assert records(converged_records) == []


def test_the_record_digests_what_loading_read_and_looked_for(
    project: Path, cli: Cli, converged_records: Path
) -> None:
    import socket

    # Beside the templates a run reads, a file no run reads is no input (the record is made).
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(project / "templates" / "a-socket"))
        converge(cli, project)
    (path,) = records(converged_records)
    entries = json.loads(path.read_text())["inputs"]["entries"]
    packaged = Path(stamps.__file__).parent.parent / "templates" / "nginx" / "site.conf.j2"
    assert entries == sorted(
        [
            f"file:{project / PLAYBOOK}",
            f"file:{project / INVENTORY}",
            # Looked for and not there: proven absent by the first missing folder.
            f"file:{project / 'inventory' / 'group_vars'}",
            f"file:{project / 'inventory' / 'host_vars'}",
            # The template's name as a path from the current folder, then the folders a
            # template is taken from, in order, up to the one it was found in.
            f"file:{project / 'nginx'}",
            f"file:{project / 'playbooks' / 'templates'}",
            f"file:{project / 'templates' / 'nginx' / 'site.conf.j2'}",
        ]
    )
    assert f"file:{packaged}" not in entries  # found before: never looked at


def test_a_hit_imports_nothing_heavy(recorded: Path) -> None:
    """The point of the record is an idle run's cost, most of which would be imports."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "provision", "apply", PLAYBOOK, "-i", INVENTORY],
        cwd=recorded,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0 and "changed 0" in result.stdout, result.stdout + result.stderr
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "provision" in imported and "typer" in imported  # (the lines were read right)
    assert not imported & {"cryptography", "jinja2", "pydantic", "pydantic_core", "yaml"}
