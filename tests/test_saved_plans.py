"""Saved plans: `plan --out PLAN.json`, then `apply PLAN.json` applies exactly that plan.

A plan records digests of its playbook, inventory and controller inputs, and of each host's
files. Changed inputs refuse the whole plan; a host whose files changed since the plan is
refused alone (and left untouched) while the others are applied. The plan file holds rendered
configs as text but no key material and no password. Also `plan --detailed-exitcode`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, snapshot
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from provision.plan import saved as planfile

PLAYBOOK = "playbooks/callmanager-https.yml"
CA_PLAYBOOK = "playbooks/callmanager-https-ca.yml"
INVENTORY = "inventory/example.yml"
HOSTS = ("cm-pub-01", "cm-sub-01", "cm-sub-02")
DRIFTED = "cm-sub-01"
PFX_PASSWORD = "Plan-Pfx-Secret-w8Jq2r"
CA_ENV = {"PFX_PASSWORD": PFX_PASSWORD}


def host_dir(project: Path, host: str) -> Path:
    return project / ".provision" / "fleet" / host


def certs(project: Path, host: str) -> Path:
    return host_dir(project, host) / "certificates"


def config(project: Path, host: str) -> Path:
    return host_dir(project, host) / "nginx" / "default-web-site.conf"


def make_plan(
    cli: Cli, playbook: str = PLAYBOOK, env: dict[str, str] | None = None, out: str = "plan.json"
) -> dict[str, Any]:
    result = cli("plan", playbook, "-i", INVENTORY, "--out", out, env=env)
    assert result.exit_code == 0, result.stdout + result.stderr
    document: dict[str, Any] = json.loads((cli.cwd / out).read_text(encoding="utf-8"))
    return document


def apply_playbook(cli: Cli, playbook: str = PLAYBOOK, env: dict[str, str] | None = None) -> None:
    result = cli("apply", playbook, "-i", INVENTORY, env=env)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.endswith("Recap: ok 0, changed 3, failed 0\n"), result.stdout


def site_change(document: dict[str, Any], host: str) -> dict[str, Any]:
    entry = next(h for h in document["hosts"] if h["host"] == host)
    change: dict[str, Any] = next(c for c in entry["changes"] if c["resource"].startswith("site "))
    return change


def one_line_error(stderr: str) -> str:
    lines = stderr.strip("\n").split("\n")
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


# --- plan, then apply the saved plan ------------------------------------------------------


def test_saved_plan_applies_then_nothing_left_to_do(project: Path, cli: Cli) -> None:
    document = make_plan(cli)
    assert not (project / ".provision").exists()  # planning writes nothing to any host
    result = cli("apply", "plan.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.endswith("\nRecap: ok 0, changed 3, failed 0\n"), result.stdout
    for host in HOSTS:
        assert f"{host}: changed\n" in result.stdout
        names = sorted(
            p.name
            for p in certs(project, host).iterdir()
            if p.is_file() and not p.name.startswith(".")
        )
        assert names == ["httpscert.cer", "httpscert.key", "httpscert.pem"]
        # The config written is exactly the text the reviewed plan showed.
        assert (
            config(project, host).read_text(encoding="utf-8")
            == site_change(document, host)["content"]
        )
    again = cli("plan", PLAYBOOK, "-i", INVENTORY, "--detailed-exitcode")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert again.stdout.endswith("Plan: 3 hosts, 0 to change, 0 failed.\n")


def test_plan_file_records_inputs_digests_and_rendered_configs(project: Path, cli: Cli) -> None:
    document = make_plan(cli)
    assert document["format"] == "provision-plan/4"
    assert document["playbook"] == {
        "path": PLAYBOOK,
        "sha256": hashlib.sha256((project / PLAYBOOK).read_bytes()).hexdigest(),
    }
    assert document["inventory"] == [
        {"path": INVENTORY, "sha256": planfile.inventory_digest(project / INVENTORY)}
    ]
    assert len(document["controller"]["sha256"]) == 64
    assert document["limit"] is None
    assert [h["host"] for h in document["hosts"]] == list(HOSTS)
    for entry in document["hosts"]:
        host = entry["host"]
        assert len(entry["facts_digest"]) == 64
        int(entry["facts_digest"], 16)
        assert entry["error"] is None
        change = site_change(document, host)
        assert change["path"] == str(config(project, host))
        assert change["content"].startswith(
            f"# Rendered by provision from callmanager-https.yml for host {host}"
        )
        assert f"ssl_certificate     {certs(project, host)}/httpscert.pem;" in change["content"]
        assert "location /CCMAdmin/ {" in change["content"]
        # Certificate outputs are named by reference, never carried.
        for c in entry["changes"]:
            if c["resource"].startswith("file "):
                assert c["content"] is None and c["derived"] is not None, c


def test_limit_is_recorded_and_kept(project: Path, cli: Cli) -> None:
    result = cli("plan", PLAYBOOK, "-i", INVENTORY, "--limit", "cm-sub-*", "--out", "plan.json")
    assert result.exit_code == 0, result.stderr
    document = json.loads((project / "plan.json").read_text(encoding="utf-8"))
    assert document["limit"] == "cm-sub-*"
    assert [h["host"] for h in document["hosts"]] == ["cm-sub-01", "cm-sub-02"]
    applied = cli("apply", "plan.json")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    assert applied.stdout.endswith("Recap: ok 0, changed 2, failed 0\n")
    assert not host_dir(project, "cm-pub-01").exists()


# --- a host that changed between plan and apply ---------------------------------------------


def _edit_config(project: Path, host: str, line: str) -> None:
    with config(project, host).open("a", encoding="utf-8") as handle:
        handle.write(line)


def _drift_config(project: Path) -> None:
    for host in HOSTS:
        _edit_config(project, host, "# edited on the host before the plan\n")


def _drift_config_again(project: Path) -> None:
    _edit_config(project, DRIFTED, "# edited again after the plan\n")


def _drift_pem(project: Path) -> None:
    for host in HOSTS:
        pem = certs(project, host) / "httpscert.pem"
        (project / f"{host}.pem").write_bytes(pem.read_bytes())  # a copy outside the host
        pem.unlink()


def _drift_pem_again(project: Path) -> None:
    # Someone restores the file from their own copy after the plan was made: the host is
    # refused all the same, since the plan was made against a host without it.
    (certs(project, DRIFTED) / "httpscert.pem").write_bytes(
        (project / f"{DRIFTED}.pem").read_bytes()
    )


# How to drift every host before the plan, how to drift one again after it, and what a new
# plan then has left to change.
DRIFTS = {
    "config-edited": (_drift_config, _drift_config_again, 1),
    "pem-deleted": (_drift_pem, _drift_pem_again, 0),
}


@pytest.mark.parametrize("drift", list(DRIFTS))
def test_host_changed_since_plan_is_refused_others_applied(
    project: Path, cli: Cli, drift: str
) -> None:
    before_plan, after_plan, left = DRIFTS[drift]
    apply_playbook(cli)
    before_plan(project)
    document = make_plan(cli)
    assert all(entry["changes"] for entry in document["hosts"]), "every host has a change"
    after_plan(project)
    untouched = snapshot(host_dir(project, DRIFTED))

    result = cli("apply", "plan.json")
    assert result.exit_code == 1, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith(f"{DRIFTED}: "))
    assert line.startswith(f"{DRIFTED}: failed: ") and "changed since the plan" in line, line
    assert result.stdout.endswith("Recap: ok 0, changed 2, failed 1\n"), result.stdout
    assert snapshot(host_dir(project, DRIFTED)) == untouched
    for host in HOSTS:
        if host == DRIFTED:
            continue
        assert f"{host}: changed\n" in result.stdout
        assert (certs(project, host) / "httpscert.pem").is_file()
        if drift == "config-edited":
            assert (
                config(project, host).read_text(encoding="utf-8")
                == site_change(document, host)["content"]
            )
    # A new plan has at most the refused host left to change.
    again = cli("plan", PLAYBOOK, "-i", INVENTORY, "--detailed-exitcode")
    assert again.exit_code == (2 if left else 0), again.stdout + again.stderr
    assert again.stdout.endswith(f"Plan: 3 hosts, {left} to change, 0 failed.\n"), again.stdout
    if left:
        assert f"{DRIFTED}: 1 change\n" in again.stdout


# --- changed inputs refuse the whole plan ---------------------------------------------------


def _append_comment(path: Path) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write("# reviewed and edited after the plan\n")


def _add_group_vars(project: Path) -> None:
    folder = project / "inventory" / "group_vars"
    folder.mkdir()
    (folder / "all.yml").write_text("www_root: /srv/elsewhere\n", encoding="utf-8")


INPUT_EDITS: dict[str, tuple[Callable[[Path], None], str]] = {
    "playbook": (lambda p: _append_comment(p / PLAYBOOK), PLAYBOOK),
    "inventory": (lambda p: _append_comment(p / INVENTORY), INVENTORY),
    "group_vars": (_add_group_vars, INVENTORY),
}


@pytest.mark.parametrize("applied_first", [False, True], ids=["fresh", "applied"])
@pytest.mark.parametrize("edit", list(INPUT_EDITS))
def test_changed_input_refuses_whole_plan(
    project: Path, cli: Cli, edit: str, applied_first: bool
) -> None:
    change, named = INPUT_EDITS[edit]
    if applied_first:
        apply_playbook(cli)
        _drift_config(project)  # so that every host would have something to do
    make_plan(cli)
    change(project)
    everything = snapshot(project)
    result = cli("apply", "plan.json")
    assert result.exit_code == 1, result.stdout + result.stderr
    message = one_line_error(result.stderr)
    assert named in message and "changed since the plan" in message, message
    assert "nothing was applied" in message
    assert result.stdout == ""
    assert snapshot(project) == everything  # nothing written anywhere, not even a retry file


def test_changed_authority_refuses_whole_plan(project: Path, cli: Cli) -> None:
    make_plan(cli, CA_PLAYBOOK, CA_ENV)  # the authority does not exist yet: it is pending
    created = cli("ca", "init", CA_PLAYBOOK, "voice-root")
    assert created.exit_code == 0, created.stderr
    everything = snapshot(project)
    result = cli("apply", "plan.json", env=CA_ENV)
    assert result.exit_code == 1, result.stdout + result.stderr
    message = one_line_error(result.stderr)
    assert "authorities" in message and "changed since the plan" in message, message
    assert snapshot(project) == everything
    assert not (project / ".provision").exists()


@pytest.mark.parametrize(
    "extra",
    [["-i", INVENTORY], ["-i", "inventory/other.yml"], ["--limit", "cm-pub-01"]],
    ids=["-i", "-i-other", "--limit"],
)
def test_saved_plan_names_its_own_inventory(project: Path, cli: Cli, extra: list[str]) -> None:
    make_plan(cli)
    everything = snapshot(project)
    result = cli("apply", "plan.json", *extra)
    assert result.exit_code == 1, result.stdout + result.stderr
    message = one_line_error(result.stderr)
    assert "names its own inventory" in message, message
    assert snapshot(project) == everything


# --- damaged plan files ---------------------------------------------------------------------


def _truncated(text: str) -> str:
    return text[: len(text) // 2]


def _edited(edit: Callable[[dict[str, Any]], None]) -> Callable[[str], str]:
    def damage(text: str) -> str:
        document = json.loads(text)
        edit(document)
        return json.dumps(document, indent=2)

    return damage


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        target: Any = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _drop(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        target: Any = document
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return edit


SITE = 4  # index of the site change in a fresh host's plan
DAMAGES: dict[str, Callable[[str], str]] = {
    "truncated": _truncated,
    "not-utf8": lambda text: text[:150] + "\udcff",
    "no-hosts": _edited(_drop(("hosts",))),
    "hosts-not-a-list": _edited(_set(("hosts",), 5)),
    "host-without-changes": _edited(_drop(("hosts", 0, "changes"))),
    "change-is-null": _edited(_set(("hosts", 0, "changes"), [None])),
    "bad-mode": _edited(_set(("hosts", 0, "changes", 1, "mode"), "rw-r--r--")),
    "unknown-derived-field": _edited(_set(("hosts", 0, "changes", 1, "derived"), {"x": 1})),
    "no-playbook-digest": _edited(_drop(("playbook", "sha256"))),
    "content-not-a-string": _edited(_set(("hosts", 0, "changes", SITE, "content"), 5)),
    "empty-hosts": _edited(_set(("hosts",), [])),
    "unknown-host": _edited(_set(("hosts", 0, "host"), "cm-gone-99")),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_plan_is_a_one_line_error(project: Path, cli: Cli, damage: str) -> None:
    make_plan(cli)
    plan = project / "plan.json"
    text = DAMAGES[damage](plan.read_text(encoding="utf-8"))
    plan.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    everything = snapshot(project)
    result = cli("apply", "plan.json")
    assert result.exit_code == 1, result.stdout + result.stderr
    message = one_line_error(result.stderr)
    assert "plan.json" in message, message
    assert snapshot(project) == everything


def test_not_a_plan_file_at_all(project: Path, cli: Cli) -> None:
    (project / "plan.json").write_text("{}\n", encoding="utf-8")
    result = cli("apply", "plan.json")
    assert result.exit_code == 1
    one_line_error(result.stderr)
    assert not (project / ".provision").exists()


# --- no key material and no password in a plan ----------------------------------------------


def _key_slices(path: Path, password: bytes | None = None) -> set[str]:
    """40-character slices of the key file's bytes as base64 and hex, and of its key's DER."""
    data = path.read_bytes()
    encodings = [base64.b64encode(data).decode(), data.hex()]
    if b"-----BEGIN" in data:
        body = "".join(line for line in data.decode().splitlines() if not line.startswith("-"))
        encodings.append(body)
        key = serialization.load_pem_private_key(data, None)
    else:
        found = pkcs12.load_key_and_certificates(data, password)[0]
        assert found is not None
        key = found
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    encodings += [base64.b64encode(der).decode(), der.hex()]
    return {text[i : i + 40] for text in encodings for i in range(0, len(text) - 40, 20)}


def assert_no_secrets(
    plan_text: str,
    key_files: list[Path],
    secrets: tuple[str, ...] = (),
    password: bytes | None = None,
) -> None:
    assert key_files
    assert "PRIVATE KEY" not in plan_text
    flat = plan_text.replace("\\n", "").replace("\n", "")
    for path in key_files:
        for piece in _key_slices(path, password):
            assert piece not in flat, f"bytes of {path.name} found in the plan"
    for secret in secrets:
        assert secret not in plan_text


def test_plan_holds_no_key_material(project: Path, cli: Cli) -> None:
    apply_playbook(cli)
    # Add a name (every certificate is replaced) and drift every host's config and PEM.
    playbook = project / PLAYBOOK
    text = playbook.read_text(encoding="utf-8")
    playbook.write_text(
        text.replace("localhost, 127.0.0.1]", "localhost, 127.0.0.1, new.example.com]"),
        encoding="utf-8",
    )
    _drift_config(project)
    for host in HOSTS:
        (certs(project, host) / "httpscert.pem").unlink()
    document = make_plan(cli)
    for entry in document["hosts"]:
        actions = {c["resource"]: c["action"] for c in entry["changes"]}
        assert actions["certificate httpscert"] != "create", actions
        assert "file httpscert.key" in actions and "site Default Web Site" in actions
    plan_text = (project / "plan.json").read_text(encoding="utf-8")
    keys = [certs(project, host) / "httpscert.key" for host in HOSTS]
    assert_no_secrets(plan_text, keys)
    applied = cli("apply", "plan.json")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    assert applied.stdout.endswith("Recap: ok 0, changed 3, failed 0\n")


def test_internal_ca_plan_holds_no_key_material_nor_password(
    project: Path, cli: Cli, tmp_path_factory: pytest.TempPathFactory
) -> None:
    fresh = make_plan(cli, CA_PLAYBOOK, CA_ENV, out="fresh.json")  # authority still pending
    assert len(fresh["hosts"]) == 3
    apply_playbook(cli, CA_PLAYBOOK, CA_ENV)
    kept = tmp_path_factory.mktemp("kept")
    pfx_files = []
    for host in HOSTS:
        pfx = certs(project, host) / "httpscert.pfx"
        pfx_files.append(kept / f"{host}.pfx")
        pfx_files[-1].write_bytes(pfx.read_bytes())
        pfx.unlink()
        (certs(project, host) / "httpscert.pem").unlink()
    _edit_config(project, DRIFTED, "# edited on the host\n")
    document = make_plan(cli, CA_PLAYBOOK, CA_ENV)
    for entry in document["hosts"]:
        assert {c["resource"] for c in entry["changes"]} >= {
            "file httpscert.pem",
            "file httpscert.pfx",
        }
    keys = [certs(project, host) / "httpscert.key" for host in HOSTS]
    keys.append(project / "playbooks" / "pki" / "voice-root" / "ca.key")
    for name in ("plan.json", "fresh.json"):
        plan_text = (project / name).read_text(encoding="utf-8")
        assert_no_secrets(plan_text, keys, (PFX_PASSWORD,))
        assert_no_secrets(plan_text, pfx_files, (PFX_PASSWORD,), PFX_PASSWORD.encode())
    applied = cli("apply", "plan.json", env=CA_ENV)
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    assert applied.stdout.endswith("Recap: ok 0, changed 3, failed 0\n"), applied.stdout
    new_pfx = [certs(project, host) / "httpscert.pfx" for host in HOSTS]
    for pfx in new_pfx:
        key, leaf, _ = pkcs12.load_key_and_certificates(pfx.read_bytes(), PFX_PASSWORD.encode())
        assert key is not None and leaf is not None
    assert_no_secrets(
        (project / "plan.json").read_text(encoding="utf-8"),
        new_pfx,
        (PFX_PASSWORD,),
        PFX_PASSWORD.encode(),
    )


# --- exit codes -----------------------------------------------------------------------------


def test_detailed_exitcode_two_with_changes_zero_without(project: Path, cli: Cli) -> None:
    changes = cli("plan", PLAYBOOK, "-i", INVENTORY, "--detailed-exitcode")
    assert changes.exit_code == 2, changes.stdout + changes.stderr
    plain = cli("plan", PLAYBOOK, "-i", INVENTORY)
    assert plain.exit_code == 0  # without the flag, changes are not an error
    apply_playbook(cli)
    none = cli("plan", PLAYBOOK, "-i", INVENTORY, "--detailed-exitcode")
    assert none.exit_code == 0, none.stdout + none.stderr
    _edit_config(project, DRIFTED, "# edited\n")
    one = cli("plan", PLAYBOOK, "-i", INVENTORY, "--detailed-exitcode", "--out", "plan.json")
    assert one.exit_code == 2, one.stdout + one.stderr
    assert (project / "plan.json").is_file()


def test_detailed_exitcode_one_on_bad_playbook(project: Path, cli: Cli) -> None:
    playbook = project / PLAYBOOK
    playbook.write_text(
        playbook.read_text(encoding="utf-8").replace("validity_days: 825", "validity_days: soon"),
        encoding="utf-8",
    )
    result = cli("plan", PLAYBOOK, "-i", INVENTORY, "--detailed-exitcode", "--out", "plan.json")
    assert result.exit_code == 1, result.stdout + result.stderr
    message = one_line_error(result.stderr)
    assert PLAYBOOK in message, message
    assert not (project / "plan.json").exists()
    assert not (project / ".provision").exists()


def test_apply_exits_one_when_a_host_fails(project: Path, cli: Cli) -> None:
    # cm-sub-01's site config path is a folder: its write fails, the others go ahead.
    config(project, DRIFTED).mkdir(parents=True)
    result = cli("apply", PLAYBOOK, "-i", INVENTORY)
    assert result.exit_code == 1, result.stdout + result.stderr
    assert f"{DRIFTED}: failed: " in result.stdout
    assert result.stdout.endswith("Recap: ok 0, changed 2, failed 1\n"), result.stdout
    for host in HOSTS:
        if host != DRIFTED:
            assert config(project, host).is_file()


def test_a_hand_edited_plan_is_refused_for_the_host_it_changes(project: Path, cli: Cli) -> None:
    """The digests cover the inputs and the files read, not the changes themselves: those
    are re-derived at apply time and must match what the plan says it will write."""
    document = make_plan(cli)
    site = next(c for c in document["hosts"][0]["changes"] if c["resource"].startswith("site"))
    site["content"] += "    # slipped in after review\n"
    (project / "plan.json").write_text(json.dumps(document, indent=2))
    result = cli("apply", "plan.json")
    assert result.exit_code == 1
    assert "the saved plan's changes are not what the playbook now asks" in result.stdout
    first = document["hosts"][0]["host"]
    assert not (project / ".provision/fleet" / first).exists()  # nothing written there
    assert "changed 2" in result.stdout  # the untouched hosts were applied


# --- the codec: every field of the plan's types, by construction ------------------------------


def _example(annotation: Any, variant: int = 0) -> Any:
    """A value of ``annotation`` that is not a field's default (None, empty, zero), built
    from the type alone: a field added to a plan type is covered without editing this test.
    ``variant`` gives another value of the same type."""
    import dataclasses
    import datetime as dt
    import types
    import typing

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _example(args[0], variant)
    if origin in (typing.Union, types.UnionType):
        return _example(next(a for a in args if a is not type(None)), variant)
    if origin is typing.Literal:
        return args[variant % len(args)]
    if origin is tuple:
        return (_example(args[0], variant),)
    if origin is dict:
        return {_example(args[0], variant): _example(args[1], variant)}
    if dataclasses.is_dataclass(annotation):
        hints = typing.get_type_hints(annotation, include_extras=True)
        return annotation(
            **{f.name: _example(hints[f.name], variant) for f in dataclasses.fields(annotation)}
        )
    values: dict[Any, tuple[Any, Any]] = {
        str: ("text ü\n", "other"),
        int: (0o640, 0o600),
        bool: (True, False),
        bytes: (b"server {\n  listen 443 ssl;\n}\n", b"other\n"),
        dt.datetime: (
            dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
            dt.datetime(2031, 1, 1, tzinfo=dt.UTC),
        ),
    }
    return values[annotation][variant]


def test_a_saved_plan_keeps_every_field_of_every_plan_type(tmp_path: Path) -> None:
    import dataclasses

    from provision.plan.model import Plan

    plan = _example(Plan)

    def every_field_set(value: Any) -> None:
        for f in dataclasses.fields(value):
            inner = getattr(value, f.name)
            assert inner not in (None, (), "", 0, {}), f"{type(value).__name__}.{f.name}"
            for item in inner if isinstance(inner, tuple) else (inner,):
                if dataclasses.is_dataclass(item):
                    every_field_set(item)

    every_field_set(plan)
    text = planfile.dumps(
        plan, limit="cm-*", playbook_digest="a" * 64, inventory_digests=("b" * 64,),
        controller_digest="c" * 64,
    )  # fmt: skip
    assert (
        '"mode": "0640"' in text and '"content": "server {\\n' in text
    )  # read as a reviewer would
    (tmp_path / "plan.json").write_text(text)
    saved = planfile.loads(str(tmp_path / "plan.json"))
    assert saved.plan == plan
    assert (saved.limit, saved.digests["controller"]) == ("cm-*", "c" * 64)


def test_every_field_of_a_change_is_compared_unless_declared_descriptive() -> None:
    import dataclasses
    import typing

    from provision.fleet import _substance
    from provision.plan.model import DESCRIPTIVE, Change, HostPlan

    names = {f.name for f in dataclasses.fields(Change)}
    assert names > DESCRIPTIVE
    assert {"reason", "diff", "before"} == DESCRIPTIVE
    change = _example(Change)
    hints = typing.get_type_hints(Change, include_extras=True)
    for name in sorted(names):
        other = dataclasses.replace(change, **{name: _example(hints[name], 1)})
        assert other != change, name
        differs = _substance(HostPlan("h", (other,))) != _substance(HostPlan("h", (change,)))
        assert differs == (name not in DESCRIPTIVE), name
