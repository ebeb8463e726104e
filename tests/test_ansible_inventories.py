"""Ansible inventories as they are: INI files, host ranges, scripts, ``--list`` JSON,
directories of mixed sources and repeated -i, each resolved by provision and by the real
``ansible-inventory --list`` (ansible-core is a test dependency only) to the same hosts, groups
and variables."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from ansiblecheck import ansible_lists, ansible_selections, ansible_view, provision_view
from conftest import Cli, require_tool

from provision.errors import InputError
from provision.inputs.connection_vars import unused
from provision.inputs.host_ranges import RangeError, expand
from provision.inputs.inventory import load_inventory

CORPUS = Path(__file__).parent / "data" / "inventories" / "corpus"
MULTI = CORPUS / "multi"
CASES: dict[str, list[Path]] = {
    "ini": [CORPUS / "ini_basic" / "hosts"],
    "yaml ranges": [CORPUS / "yaml_ranges" / "hosts.yml"],
    "precedence with group_vars and host_vars": [CORPUS / "precedence" / "hosts.ini"],
    "directory of INI, YAML and a script": [CORPUS / "mixed_dir" / "inv"],
    "script without _meta": [CORPUS / "scripts" / "no_meta.py"],
    "repeated -i": [CORPUS / "ini_basic" / "hosts", CORPUS / "yaml_ranges" / "hosts.yml"],
    # Several -i, each with its own group_vars/ and host_vars/: later sources win for the same
    # group or host, groups are unioned, and every source's group_vars/all comes before any
    # source's other group_vars files (Ansible's order, not source by source).
    "-i INI -i YAML": [MULTI / "site" / "hosts.ini", MULTI / "cloud" / "hosts.yml"],
    "-i YAML -i INI": [MULTI / "cloud" / "hosts.yml", MULTI / "site" / "hosts.ini"],
    "-i INI -i script -i directory": [
        MULTI / "site" / "hosts.ini",
        MULTI / "script" / "cmdb.py",
        CORPUS / "mixed_dir" / "inv",
    ],
    "-i directory -i YAML -i script": [
        CORPUS / "mixed_dir" / "inv",
        MULTI / "cloud" / "hosts.yml",
        MULTI / "script" / "cmdb.py",
    ],
    "-i YAML -i INI -i INI": [
        MULTI / "cloud" / "hosts.yml",
        CORPUS / "precedence" / "hosts.ini",
        MULTI / "site" / "hosts.ini",
    ],
    "-i script without _meta -i INI": [
        CORPUS / "scripts" / "no_meta.py",
        MULTI / "site" / "hosts.ini",
    ],
}


@pytest.fixture(scope="module")
def ansible_answers() -> dict[str, dict[str, object]]:
    require_tool("ansible-inventory")
    return dict(zip(CASES, ansible_lists(list(CASES.values())), strict=True))


@pytest.mark.parametrize("case", list(CASES))
def test_resolves_as_ansible_inventory_does(
    case: str, ansible_answers: dict[str, dict[str, object]]
) -> None:
    ours = provision_view(load_inventory(CASES[case]))
    theirs = ansible_view(ansible_answers[case])  # type: ignore[arg-type]
    assert sorted(ours) == sorted(theirs)
    for host in theirs:
        assert ours[host] == theirs[host], host


def test_the_json_ansible_inventory_prints_is_an_inventory(
    tmp_path: Path, ansible_answers: dict[str, dict[str, object]]
) -> None:
    """Any inventory plugin feeds provision through `ansible-inventory --list > file`."""
    listing = tmp_path / "cloud.json"
    listing.write_text(json.dumps(ansible_answers["repeated -i"]))
    ours = provision_view(load_inventory(listing))
    assert ours == ansible_view(ansible_answers["repeated -i"])  # type: ignore[arg-type]


def test_ini_values_follow_ansibles_literal_rules() -> None:
    inventory = load_inventory(CORPUS / "ini_basic" / "hosts")
    web = inventory.hosts["web01.example.com"].vars
    assert (web["enabled"], web["ratio"]) == (True, 0.5)
    web_a = inventory.hosts["web-a"].vars
    assert (web_a["quoted"], web_a["spaced"], web_a["items"]) == (42, "a b", [1, "two"])
    db = inventory.hosts["db-01-a"].vars
    assert (db["replicas"], db["tags"], db["flag"]) == (3, {"tier": "data"}, "no")


def test_ranges_and_ports_become_hosts_and_addresses() -> None:
    inventory = load_inventory(CORPUS / "ini_basic" / "hosts")
    assert [h for h in inventory.hosts if h.startswith("web0")] == [
        "web01.example.com",
        "web03.example.com",
    ]
    assert sorted(inventory.groups["db"]) == ["db-01-a", "db-01-b", "db-02-a", "db-02-b"]
    assert inventory.hosts["10.0.0.9"].port == 2200
    assert inventory.hosts["web-b"].address == "192.0.2.1"
    yaml_hosts = load_inventory(CORPUS / "yaml_ranges" / "hosts.yml").hosts
    assert "app[1:3]" not in yaml_hosts  # never a host named with brackets
    assert yaml_hosts["app2"].address == "app2"
    assert [yaml_hosts[h].port for h in ("api-x", "api-z")] == [8443, 8443]


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("web[01:05:2]", ["web01", "web03", "web05"]),
        ("db-[a:c]", ["db-a", "db-b", "db-c"]),
        ("r[1:2][a:b]", ["r1a", "r1b", "r2a", "r2b"]),
        ("[:2]x", ["0x", "1x", "2x"]),
    ],
)
def test_host_ranges(pattern: str, names: list[str]) -> None:
    assert expand(pattern) == names


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("h[1:]", "range [1:] has no end"),
        ("h[01:100]", "range [01:100]: begin and end must have the same width"),
        ("h[0:99999999]", "expands to more than 100000 hosts"),
        ("h[1:3", "has '[' without a closing ']'"),
        ("h[1:9:0]", "range [1:9:0]: step must be 1 or more"),
    ],
)
def test_bad_host_ranges(pattern: str, message: str) -> None:
    with pytest.raises(RangeError, match=message.replace("[", r"\[")):
        expand(pattern)


# --- the README's example as INI ------------------------------------------------------------


def test_the_example_inventory_as_ini_gives_the_same_plan(cli: Cli) -> None:
    plans = []
    for inventory in ("inventory/example.yml", "inventory/example.ini"):
        result = cli("plan", "playbooks/callmanager-https.yml", "-i", inventory, "--format", "json")
        assert result.exit_code == 0, result.stderr
        plan = json.loads(result.stdout)
        plan.pop("inventory", None)
        for host in plan["hosts"].values():
            host.pop("seconds")  # how long planning took, not what it planned
        plans.append(plan)
    assert plans[0] == plans[1]


# --- bad inputs: one paragraph naming the source, exit 1 ------------------------------------


def _script(folder: Path, body: str) -> Path:
    path = folder / "inventory.py"
    path.write_text("#!/usr/bin/env python3\nimport sys, time\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("sys.exit('cloud API said no')", "failed with exit status 1: cloud API said no"),
        ("print('{not json')", "printed no valid JSON"),
        ("print('[1, 2]')", "printed JSON that is not an object"),
        ("time.sleep(30)", "did not finish within 1 seconds"),
        ('print(\'{"web": {"hosts": "w1"}, "_meta": {}}\')', "hosts and children must be"),
    ],
)
def test_a_bad_inventory_script_is_an_error_naming_it(
    project: Path, cli: Cli, body: str, message: str
) -> None:
    script = _script(project / "inventory", body)
    result = cli(
        "validate",
        "playbooks/callmanager-https.yml",
        "-i",
        str(script.relative_to(project)),
        # Only the hanging script is timed out so soon: on a loaded machine the others may
        # take more than a second just to start Python.
        env={"PROVISION_INVENTORY_TIMEOUT": "1"} if "sleep" in body else None,
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: inventory/inventory.py: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("[web]\nw1\n[web:host]\n", 3, "'host' is not hosts, children or vars"),
        ("[web]\nw1 port\n", 2, "expected key=value after the host name, got 'port'"),
        ("[web:vars]\nx=1\n", 1, "[web:vars] is for a group no section declares"),
        ("[web]\nw1\n[all:children]\nweb\ndb\n", 5, "names 'db', a group no section declares"),
        ("[web]\nw[1:]\n", 2, "host 'w[1:]': range [1:] has no end"),
        ("[web]\nw1 x='unclosed\n", 2, "cannot read the host line"),
        ("[ web ]\n", 1, "is not a section header"),
    ],
)
def test_a_bad_ini_inventory_names_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        load_inventory(path, "hosts.ini")
    assert f"hosts.ini:{line}" in str(caught.value)
    assert message in str(caught.value)


def test_an_inventory_script_run_is_never_answered_from_a_record(project: Path, cli: Cli) -> None:
    script = _script(
        project / "inventory",
        "import json\nprint(json.dumps({'callmanager': ['cm-pub-01'], '_meta': {'hostvars': "
        "{'cm-pub-01': {'certificates_dir': '.provision/c', 'www_root': '.provision/w', "
        "'fqdn': 'cm.example.com'}}}}))\n",
    )
    args = ("apply", "playbooks/callmanager-https.yml", "-i", str(script.relative_to(project)))
    assert cli(*args).exit_code == 0
    from provision.converged.document import cache_dir

    again = cli(*args)
    assert again.exit_code == 0, again.stderr
    records = list((cache_dir() / "converged").glob("*.json"))
    assert records == []
    assert os.path.isfile(project / ".provision" / "c" / "httpscert.cer")


# --- subscripts in patterns, as Ansible selects them ----------------------------------------

PATTERNS = ["web[0]", "web[-1]", "web[1:3]", "prod[2:]", "db[1-2]", "web[0]:db[0]", "web:&prod[0]"]


def test_subscripts_select_as_ansible_does() -> None:
    require_tool("ansible")
    source = CORPUS / "ini_basic" / "hosts"
    inventory = load_inventory(source)
    theirs = ansible_selections(source, PATTERNS)
    for pattern, selected in zip(PATTERNS, theirs, strict=True):
        assert selected, pattern  # each pattern selects something in Ansible
        ours = [host.name for host in inventory.select(pattern)]
        assert sorted(ours) == sorted(selected), pattern


# --- connection variables --------------------------------------------------------------------


def _ini(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hosts"
    path.write_text(text)
    return path


def test_ansible_connection_variables_become_host_settings(tmp_path: Path) -> None:
    inventory = load_inventory(
        _ini(
            tmp_path,
            "[web]\n"
            "w1 ansible_host=192.0.2.5 ansible_port=2222 ansible_user=deploy"
            " ansible_ssh_private_key_file=~/.ssh/deploy ansible_become=true"
            " ansible_become_user=root ansible_connection=smart\n"
            "w2 ansible_ssh_host=192.0.2.6 ansible_connection=paramiko\n"
            "w3 ansible_connection=local\n"
            "w4 ansible_host=new ansible_ssh_host=old\n",
        )
    )
    w1, w2, w3, w4 = (inventory.hosts[n] for n in ("w1", "w2", "w3", "w4"))
    assert (w1.address, w1.port, w1.user, w1.ssh_key) == (
        "192.0.2.5",
        2222,
        "deploy",
        "~/.ssh/deploy",
    )
    assert (w1.become, w1.become_user, w1.connection) == (True, "root", "ssh")
    assert (w2.address, w2.connection, w3.connection) == ("192.0.2.6", "ssh", "local")
    assert w4.address == "new"  # ansible_host wins over the older name, as in Ansible


def test_ssh_common_args_reach_the_ssh_options(tmp_path: Path) -> None:
    from provision.transport.factory import _with_host_ssh_args

    inventory = load_inventory(
        _ini(
            tmp_path,
            "w1 ansible_connection=ssh ansible_ssh_common_args='-o StrictHostKeyChecking=accept-new"
            " -o UserKnownHostsFile=/tmp/kh -o ConnectTimeout=3 -o ControlMaster=auto'"
            " ansible_python_interpreter=/usr/bin/python3\n",
        )
    )
    options = _with_host_ssh_args(inventory.hosts["w1"], None)
    assert options is not None
    assert (options.accept_new_host_keys, options.known_hosts, options.connect_timeout) == (
        True,
        "/tmp/kh",
        3.0,
    )
    extra = load_inventory(
        _ini(tmp_path, "w2 ansible_ssh_extra_args='-o ConnectTimeout=7 -o Compression=yes'\n")
    )
    options = _with_host_ssh_args(extra.hosts["w2"], None)
    assert options is not None and options.connect_timeout == 7.0
    assert unused(extra.hosts["w2"].vars) == ["ssh_args -o Compression=yes"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("w1 ansible_ssh_common_args='-o ProxyJump=bastion'", "-o ProxyJump=bastion is not an"),
        ("w1 ansible_ssh_common_args='-J bastion'", "'-J': only -o options are read"),
        # Ansible adds the extra args to the common ones: a proxy there is no less a proxy
        ("w1 ansible_ssh_extra_args='-o ProxyCommand=\"nc %h %p\"'", "-o ProxyCommand=nc"),
        ("w1 ansible_become=yes ansible_become_user=postgres", "provision becomes root only"),
        ("w1 ansible_connection=docker", "connection"),
    ],
)
def test_connection_settings_provision_cannot_honour_are_errors(
    tmp_path: Path, line: str, message: str
) -> None:
    with pytest.raises(InputError) as caught:
        load_inventory(_ini(tmp_path, line + "\n"), "hosts")
    assert str(caught.value).startswith("hosts:1")
    assert message in str(caught.value)


def test_validate_verbose_lists_what_is_accepted_and_not_used(project: Path, cli: Cli) -> None:
    inventory = project / "inventory" / "example.ini"
    inventory.write_text(
        inventory.read_text().replace(
            "cm-pub-01 address=10.10.0.11",
            "cm-pub-01 ansible_python_interpreter=/usr/bin/python3 ansible_ssh_pass=s3cret"
            " ssh_args='-o ServerAliveInterval=5' address=10.10.0.11",
        )
    )
    args = ("validate", "playbooks/callmanager-https.yml", "-i", "inventory/example.ini")
    quiet = cli(*args)
    assert quiet.exit_code == 0 and "accepted" not in quiet.stdout
    loud = cli(*args, "-v")
    assert loud.exit_code == 0, loud.stderr
    assert (
        "cm-pub-01: accepted, not used: ansible_python_interpreter, ansible_ssh_pass,"
        " ssh_args -o ServerAliveInterval=5\n"
    ) in loud.stdout
    assert "s3cret" not in loud.stdout + loud.stderr


def test_a_plan_saved_from_an_inventory_directory_applies(project: Path, cli: Cli) -> None:
    folder = project / "inventory" / "fleet"
    folder.mkdir()
    (project / "inventory" / "example.ini").rename(folder / "hosts.ini")
    (project / "inventory" / "example.yml").unlink()
    saved = cli(
        "plan", "playbooks/callmanager-https.yml", "-i", "inventory/fleet", "--out", "p.json"
    )
    assert saved.exit_code == 0, saved.stderr
    applied = cli("apply", "p.json")
    assert applied.exit_code == 0, applied.stderr
    assert (project / ".provision/fleet/cm-sub-02/certificates/httpscert.cer").is_file()


def test_a_file_yaml_cannot_read_as_a_mapping_is_read_as_ini(tmp_path: Path) -> None:
    """``host:2222`` on the first line has a ':' (so it could be YAML), but YAML reads it as
    a string; Ansible's INI plugin takes it, and so does provision."""
    inventory = load_inventory(_ini(tmp_path, "db.example.com:2222\n[web]\nw1\n"))
    assert inventory.hosts["db.example.com"].port == 2222
    assert sorted(inventory.groups["web"]) == ["w1"]


# --- -i repeated on the command line ---------------------------------------------------------

PLAYBOOK = "playbooks/callmanager-https.yml"


def _two_sources(project: Path) -> tuple[str, ...]:
    """The example fleet split in two -i sources: YAML with the shared variables and
    cm-pub-01, then INI adding cm-sub-01 and overriding a group variable."""
    (project / "inventory" / "a.yml").write_text(
        "all:\n  vars:\n    connection: local\n"
        "    certificates_dir: .provision/a/{{ host.name }}/certs\n    www_root: .provision/w\n"
        "  children:\n    callmanager:\n      hosts:\n"
        "        cm-pub-01: {fqdn: cm-pub-01.example.com}\n"
    )
    (project / "inventory" / "b").write_text(
        "[callmanager]\ncm-sub-01 fqdn=cm-sub-01.example.com\n\n"
        "[callmanager:vars]\ncertificates_dir=.provision/b/{{ host.name }}/certs\n"
    )
    return ("-i", "inventory/a.yml", "-i", "inventory/b")


def test_every_command_taking_i_repeats_it_and_takes_the_vault_options() -> None:
    """Each command (sub-apps too) whose -i would keep only the last of several fails here."""
    import typer

    from provision.cli import _mount_subcommands, app

    _mount_subcommands()
    found = []

    def visit(command: Any, path: str) -> None:
        if hasattr(command, "commands"):  # a group (typer's own click, not importable)
            for name, sub in command.commands.items():
                visit(sub, f"{path} {name}".strip())
            return
        options = {opt: param for param in command.params for opt in getattr(param, "opts", [])}
        if "-i" in options:
            found.append(path)
            assert options["-i"].multiple, path
            assert "--vault-password-file" in options and "--vault-id" in options, path

    visit(typer.main.get_command(app), "")
    assert {"validate", "plan", "apply", "status", "render", "lint", "revoke"} <= set(found)


@pytest.mark.parametrize(
    ("command", "extra", "expected"),
    [
        ("validate", (), "valid for 2 hosts"),
        ("plan", (), "Plan: 2 hosts, 2 to change, 0 failed."),
        ("render", ("--out", "out"), "cm-sub-01: "),
        ("lint", (), "2 hosts"),
    ],
)
def test_repeated_i_reaches_every_source_on_each_command(
    project: Path, cli: Cli, command: str, extra: tuple[str, ...], expected: str
) -> None:
    result = cli(command, PLAYBOOK, *_two_sources(project), *extra)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert expected in result.stdout
    assert "cm-pub-01" in result.stdout or command in ("validate", "lint")


def test_apply_and_status_with_repeated_i_use_each_sources_variables(
    project: Path, cli: Cli
) -> None:
    sources = _two_sources(project)
    applied = cli("apply", PLAYBOOK, *sources)
    assert applied.exit_code == 0, applied.stderr
    # the later source's group variable wins for the group's hosts, as in Ansible
    assert (project / ".provision/b/cm-pub-01/certs/httpscert.cer").is_file()
    assert (project / ".provision/b/cm-sub-01/certs/httpscert.cer").is_file()
    assert not (project / ".provision/a").exists()
    status = cli("status", PLAYBOOK, *sources)
    assert status.exit_code == 0, status.stderr
    assert "cm-pub-01" in status.stdout and "cm-sub-01" in status.stdout
    listed = cli("rollback", PLAYBOOK, *sources, "--list")
    assert listed.exit_code == 0, listed.stderr
    assert "cm-sub-01" in listed.stdout


def test_the_order_of_repeated_i_is_precedence(project: Path, cli: Cli) -> None:
    a, b = _two_sources(project)[1::2]
    (project / "inventory" / "c.yml").write_text(
        "callmanager:\n  vars:\n    certificates_dir: .provision/c/{{ host.name }}/certs\n"
    )
    applied = cli("apply", PLAYBOOK, "-i", a, "-i", "inventory/c.yml", "-i", b)
    assert applied.exit_code == 0, applied.stderr
    assert sorted(p.name for p in (project / ".provision").iterdir()) == ["b"]
    again = cli("apply", PLAYBOOK, "-i", a, "-i", b, "-i", "inventory/c.yml")
    assert again.exit_code == 0, again.stderr
    assert (project / ".provision/c/cm-sub-01/certs/httpscert.cer").is_file()


def test_a_converged_record_covers_every_source(project: Path, cli: Cli) -> None:
    """The record of `-i a -i b` is not answered once b changed, nor for `-i b -i a`."""
    from provision.converged.document import Command

    sources = _two_sources(project)
    assert cli("apply", PLAYBOOK, *sources).exit_code == 0
    assert cli("plan", PLAYBOOK, *sources, "--detailed-exitcode").exit_code == 0
    b = project / "inventory" / "b"
    b.write_text(b.read_text().replace("cm-sub-01 fqdn=", "cm-sub-01 fqdn=renamed."))
    changed = cli("plan", PLAYBOOK, *sources, "--detailed-exitcode")
    assert changed.exit_code == 2, changed.stdout + changed.stderr
    assert "renamed.cm-sub-01.example.com" in changed.stdout
    forward = Command("plan", PLAYBOOK, ("inventory/a.yml", "inventory/b"), None)
    backward = Command("plan", PLAYBOOK, ("inventory/b", "inventory/a.yml"), None)
    assert forward.key() != backward.key()


def test_a_plan_saved_with_repeated_i_applies_only_with_the_same_sources(
    project: Path, cli: Cli
) -> None:
    sources = _two_sources(project)
    saved = cli("plan", PLAYBOOK, *sources, "--out", "p.json")
    assert saved.exit_code == 0, saved.stderr
    document = json.loads((project / "p.json").read_text())
    assert [entry["path"] for entry in document["inventory"]] == ["inventory/a.yml", "inventory/b"]
    refused = cli("apply", "p.json", "-i", "inventory/a.yml")
    assert refused.exit_code == 1
    assert "a saved plan names its own inventory" in refused.stderr
    b = project / "inventory" / "b"
    original = b.read_text()
    b.write_text(original + "# edited\n")
    stale = cli("apply", "p.json")
    assert stale.exit_code == 1
    assert stale.stderr.startswith("error: inventory/b changed since the plan was made")
    assert not (project / ".provision").exists()
    b.write_text(original)
    applied = cli("apply", "p.json")
    assert applied.exit_code == 0, applied.stderr
    assert (project / ".provision/b/cm-sub-01/certs/httpscert.cer").is_file()


# --- inventory plugins' configuration files --------------------------------------------------


@pytest.mark.parametrize("where", ["aws_ec2.yml", "fleet/aws_ec2.yml"])
def test_an_inventory_plugin_config_says_how_to_feed_it(
    project: Path, cli: Cli, where: str
) -> None:
    path = project / "inventory" / where
    path.parent.mkdir(exist_ok=True)
    path.write_text("# EC2\nplugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n")
    given = "inventory/" + where.split("/")[0]
    result = cli("validate", PLAYBOOK, "-i", "inventory/example.ini", "-i", given)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: inventory/{where}:2: is the configuration of")
    assert "amazon.aws.aws_ec2" in result.stderr
    assert f"ansible-inventory -i inventory/{where} --list > inv.json" in result.stderr
    assert "-i inv.json" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_group_named_plugin_is_still_a_group(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text("plugin:\n  hosts:\n    p1:\n")
    assert sorted(load_inventory(path).groups["plugin"]) == ["p1"]
