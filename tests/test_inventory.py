"""Ansible-style inventories: groups, variable precedence, aliases, host patterns, --limit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import Cli

from provision.errors import InputError, PatternError
from provision.inputs.inventory import Inventory, limit_hosts, load_inventory, match_pattern

DATA = Path(__file__).parent / "data" / "inventories"
LAYERED = DATA / "layered" / "hosts.yml"
ORDER = ["lonely", "cm-pub-01", "cm-sub-01", "unity-01", "www-01"]


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(LAYERED, "hosts.yml")


# --- structure -----------------------------------------------------------------------------


def test_hosts_in_inventory_order(inventory: Inventory) -> None:
    assert list(inventory.hosts) == ORDER
    assert inventory.file == "hosts.yml"


def test_groups_hold_every_host_of_their_descendants(inventory: Inventory) -> None:
    groups = {name: sorted(members) for name, members in inventory.groups.items()}
    assert groups == {
        "all": sorted(ORDER),
        "voice": ["cm-pub-01", "cm-sub-01", "unity-01"],  # through callmanager and unity
        "callmanager": ["cm-pub-01", "cm-sub-01"],
        "unity": ["cm-pub-01", "unity-01"],
        "dc-east": ["cm-pub-01", "unity-01"],
        "web": ["www-01"],  # a top-level group beside `all` is a child of all
        "ungrouped": ["lonely"],  # as in Ansible: the hosts in no group but all
    }


@pytest.mark.parametrize(
    ("host", "groups"),
    [
        ("cm-pub-01", ("callmanager", "dc-east", "unity", "voice")),  # in three groups directly
        ("cm-sub-01", ("callmanager", "voice")),
        ("unity-01", ("dc-east", "unity", "voice")),
        ("www-01", ("web",)),
        ("lonely", ()),
    ],
)
def test_host_groups(inventory: Inventory, host: str, groups: tuple[str, ...]) -> None:
    assert inventory.hosts[host].groups == groups


# --- variable precedence --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "variable", "value"),
    [
        # all inline, then group_vars/all.yml (a file wins over the inventory, same level)
        ("cm-pub-01", "p_all", "all-file"),
        ("lonely", "p_all", "all-file"),
        ("lonely", "from_all_file", True),
        # all -> parent group
        ("cm-pub-01", "p_group", "voice"),
        ("unity-01", "p_group", "voice"),
        ("lonely", "p_group", "all"),
        ("www-01", "p_group", "web"),
        # parent -> child group
        ("cm-pub-01", "p_child", "callmanager"),
        ("unity-01", "p_child", "voice"),
        # child group (inline and group_vars/callmanager.yml) -> host inline
        ("cm-pub-01", "p_host", "host"),
        ("cm-sub-01", "p_host", "callmanager-file"),
        ("unity-01", "p_host", "voice"),
        # group_vars/NAME.yml beats the group's inline vars
        ("cm-sub-01", "p_file", "callmanager-file"),
        # host_vars/NAME.yml beats the host's inline vars
        ("cm-pub-01", "p_hostfile", "host-file"),
        ("cm-sub-01", "p_hostfile", "all"),
        # depth before name: callmanager (depth 2) beats dc-east (depth 1), though 'd' > 'c'
        ("cm-pub-01", "p_depth", "callmanager"),
        ("unity-01", "p_depth", "dc-east"),
        # same depth: by group name, the later name wins (unity over callmanager)
        ("cm-pub-01", "p_sibling", "unity"),
        ("cm-sub-01", "p_sibling", "callmanager"),
        # group_vars/voice/ directory: every YAML file in name order; other files ignored
        ("cm-pub-01", "p_dir", "voice-dir-second"),
        ("unity-01", "p_dir_first_only", "first"),
        # host_vars/unity-01/ directory
        ("unity-01", "from_host_dir", True),
    ],
)
def test_variable_precedence(inventory: Inventory, host: str, variable: str, value: object) -> None:
    assert inventory.hosts[host].vars[variable] == value


def test_variables_do_not_leak_between_hosts(inventory: Inventory) -> None:
    assert "from_host_dir" not in inventory.hosts["cm-pub-01"].vars
    assert "p_dir" not in inventory.hosts["www-01"].vars
    assert "p_dir" not in inventory.hosts["lonely"].vars


# --- typed fields and aliases ---------------------------------------------------------------


def test_ansible_host_is_the_address(inventory: Inventory) -> None:
    assert inventory.hosts["cm-pub-01"].address == "10.10.0.11"
    assert inventory.hosts["www-01"].address == "192.0.2.10"


def test_address_wins_over_ansible_host_at_the_same_level(inventory: Inventory) -> None:
    assert inventory.hosts["cm-sub-01"].address == "10.10.0.12"


def test_address_defaults_to_the_name(inventory: Inventory) -> None:
    assert inventory.hosts["lonely"].address == "lonely"
    assert inventory.hosts["unity-01"].address == "unity-01"


def test_other_aliases(inventory: Inventory) -> None:
    www = inventory.hosts["www-01"]
    assert (www.port, www.connection) == (2222, "ssh")
    assert inventory.hosts["unity-01"].port == 2201
    assert inventory.hosts["cm-pub-01"].port == 22
    assert inventory.hosts["cm-pub-01"].fqdn == "cm-pub-01.voice.example.com"
    assert inventory.hosts["lonely"].fqdn is None


def test_an_alias_at_a_deeper_level_beats_our_key_at_a_shallower_one(
    inventory: Inventory,
) -> None:
    # all: `user: fleet`; the host (inline) and group web (group_vars) say `ansible_user`.
    assert inventory.hosts["unity-01"].user == "root"
    assert inventory.hosts["www-01"].user == "webadmin"
    assert inventory.hosts["cm-pub-01"].user == "fleet"


# --- inventory errors -----------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "hosts.yml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def refusal(path: Path) -> str:
    with pytest.raises(InputError) as caught:
        load_inventory(path, path.name)
    return str(caught.value)


def test_unknown_key_in_a_nested_group(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  children:\n    web:\n      hostz:\n        h1: {}\n")
    assert refusal(path) == (
        "hosts.yml:4: all.children.web.hostz: unknown key 'hostz'; did you mean 'hosts'?"
    )


def test_unknown_key_in_a_top_level_group(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  hosts:\n    h0:\nweb:\n  hostz:\n    h1: {}\n")
    assert refusal(path) == "hosts.yml:5: web.hostz: unknown key 'hostz'; did you mean 'hosts'?"


def test_a_group_that_is_its_own_ancestor(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "all:\n  children:\n    a:\n      children:\n        b:\n"
        "          children:\n            a:\n",
    )
    assert (
        refusal(path) == "hosts.yml:7: all.children.a.children.b.children.a: "
        "group 'a' is its own ancestor"
    )


def test_a_bad_typed_host_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  hosts:\n    h0:\n    h1:\n      port: abc\n")
    assert refusal(path) == (
        "hosts.yml:4: all.hosts.h1: host 'h1': port: Input should be a valid integer, "
        "unable to parse string as an integer (got 'abc')"
    )


def test_a_bad_connection(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  hosts:\n    h1: {connection: telnet}\n")
    assert refusal(path).startswith("hosts.yml:3: all.hosts.h1: host 'h1': connection: ")
    assert "(got 'telnet')" in refusal(path)


def test_a_variables_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  hosts:\n    h1:\n")
    bad = write(tmp_path, "- a\n- b\n", "group_vars/all.yml")
    assert refusal(path) == f"{bad}:1: a variables file must be a mapping"


def test_a_malformed_variables_file_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  hosts:\n    h1:\n")
    bad = write(tmp_path, "a: 1\nb: 2\nb: 3\n", "host_vars/h1.yml")
    assert refusal(path) == f"{bad}:3: duplicate key 'b' (first at line 2)"


def test_an_inventory_that_is_not_a_mapping(tmp_path: Path) -> None:
    assert refusal(write(tmp_path, "- h1\n")) == (
        "hosts.yml:1: an inventory must be a mapping of groups"
    )


# --- patterns -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "hosts"),
    [
        ("all", ORDER),
        ("*", ORDER),
        ("cm-pub-01", ["cm-pub-01"]),
        ("callmanager", ["cm-pub-01", "cm-sub-01"]),
        ("voice", ["cm-pub-01", "cm-sub-01", "unity-01"]),
        ("web", ["www-01"]),
        ("cm-*", ["cm-pub-01", "cm-sub-01"]),
        ("cm-su?-01", ["cm-sub-01"]),
        ("*-01", ["cm-pub-01", "cm-sub-01", "unity-01", "www-01"]),
        ("uni*", ["cm-pub-01", "unity-01"]),  # a glob matches group names too (unity)
        ("voice:!unity", ["cm-sub-01"]),  # cm-pub-01 is in unity too
        ("voice,!unity", ["cm-sub-01"]),
        ("voice:&dc-east", ["cm-pub-01", "unity-01"]),
        ("callmanager:&unity:!cm-sub-01", ["cm-pub-01"]),
        ("web,lonely", ["lonely", "www-01"]),  # inventory order, not pattern order
        ("lonely, web", ["lonely", "www-01"]),
        ("web:lonely", ["lonely", "www-01"]),
        ("!voice", ["lonely", "www-01"]),  # only exclusions: starting from all, as Ansible
        ("&dc-east", ["cm-pub-01", "unity-01"]),
        ("~cm-(pub|sub)-0[1]", ["cm-pub-01", "cm-sub-01"]),  # a regex with [ ] is no glob
        ("~^w", ["www-01"]),
        ("nosuch", []),
        ("cm-pub-01,nosuch", ["cm-pub-01"]),
        ("voice:&web", []),
    ],
)
def test_patterns(inventory: Inventory, pattern: str, hosts: list[str]) -> None:
    assert [h.name for h in inventory.select(pattern)] == hosts


def test_empty_pattern_is_an_error(inventory: Inventory) -> None:
    with pytest.raises(PatternError) as caught:
        match_pattern(" , ", inventory.hosts.keys(), inventory.groups)
    assert str(caught.value) == "host pattern ' , ' is empty"


def test_a_bad_regex_is_an_error(inventory: Inventory) -> None:
    with pytest.raises(PatternError) as caught:
        inventory.select("~cm-(")
    assert str(caught.value).startswith("host pattern '~cm-(' is not a valid regex")


def test_limit_narrows_the_playbook_hosts(inventory: Inventory) -> None:
    assert [h.name for h in limit_hosts(inventory, "voice", None)] == [
        "cm-pub-01",
        "cm-sub-01",
        "unity-01",
    ]
    assert [h.name for h in limit_hosts(inventory, "voice", "cm-*")] == ["cm-pub-01", "cm-sub-01"]
    # --limit never adds hosts the playbook does not target.
    assert [h.name for h in limit_hosts(inventory, "voice", "cm-pub-01,www-01")] == ["cm-pub-01"]


@pytest.mark.parametrize(
    ("hosts", "limit", "message"),
    [
        ("nosuch", None, "hosts 'nosuch' matched no host in hosts.yml"),
        ("voice", "web", "hosts 'voice' limited to 'web' matched no host in hosts.yml"),
        ("voice", "nosuch", "hosts 'voice' limited to 'nosuch' matched no host in hosts.yml"),
    ],
)
def test_matching_nothing_is_an_error(
    inventory: Inventory, hosts: str, limit: str | None, message: str
) -> None:
    with pytest.raises(PatternError) as caught:
        limit_hosts(inventory, hosts, limit)
    assert str(caught.value) == message


# --- through the CLI ------------------------------------------------------------------------

PLAYBOOK = "playbooks/callmanager-https.yml"
INVENTORY = "inventory/example.yml"


def planned_hosts(cli: Cli, *extra: str) -> list[str]:
    result = cli("plan", PLAYBOOK, "-i", INVENTORY, "--format", "json", *extra)
    assert result.exit_code == 0, result.stderr
    return list(json.loads(result.stdout)["hosts"])


@pytest.mark.parametrize(
    ("limit", "hosts"),
    [
        (None, ["cm-pub-01", "cm-sub-01", "cm-sub-02"]),
        ("cm-sub-*", ["cm-sub-01", "cm-sub-02"]),
        ("!cm-pub-01", ["cm-sub-01", "cm-sub-02"]),
        ("callmanager:!cm-sub-02", ["cm-pub-01", "cm-sub-01"]),
        ("cm-sub-02,cm-pub-01", ["cm-pub-01", "cm-sub-02"]),
    ],
)
def test_limit_via_the_cli(cli: Cli, limit: str | None, hosts: list[str]) -> None:
    assert planned_hosts(cli, *(["--limit", limit] if limit else [])) == hosts


def test_limit_applies_only_to_the_selected_hosts(project: Path, cli: Cli) -> None:
    result = cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", "cm-sub-02")
    assert result.exit_code == 0, result.stderr
    fleet = project / ".provision" / "fleet"
    assert sorted(p.name for p in fleet.iterdir()) == ["cm-sub-02"]


def test_limit_matching_nothing_via_the_cli(project: Path, cli: Cli) -> None:
    result = cli("apply", PLAYBOOK, "-i", INVENTORY, "--limit", "nosuch")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: hosts 'callmanager' limited to 'nosuch' matched no host in inventory/example.yml\n"
    )
    assert not (project / ".provision").exists()


def test_validate_counts_the_limited_hosts(cli: Cli) -> None:
    result = cli("validate", PLAYBOOK, "-i", INVENTORY, "--limit", "cm-sub-*")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{PLAYBOOK}: valid for 2 hosts\n"


def test_host_vars_beside_the_project_inventory_reach_the_playbook(project: Path, cli: Cli) -> None:
    """host_vars/ beside the inventory file reaches the playbook's templates."""
    (project / "inventory" / "host_vars").mkdir()
    (project / "inventory" / "host_vars" / "cm-pub-01.yml").write_text(
        "certificates_dir: .provision/elsewhere/certificates\n"
    )
    result = cli("apply", PLAYBOOK, "-i", INVENTORY, "-l", "cm-pub-01,cm-sub-01")
    assert result.exit_code == 0, result.stderr
    assert (project / ".provision/elsewhere/certificates/httpscert.cer").is_file()
    assert (project / ".provision/fleet/cm-sub-01/certificates/httpscert.cer").is_file()
    assert not (project / ".provision/fleet/cm-pub-01/certificates").exists()


def test_vars_folders_are_found_beside_the_inventory_file(tmp_path: Path) -> None:
    """Wherever the inventory is, its group_vars/ and host_vars/ are read from its folder."""
    copy = tmp_path / "inv"
    shutil.copytree(DATA / "layered", copy)
    (copy / "host_vars" / "cm-pub-01.yml").write_text("p_hostfile: changed\n")
    assert load_inventory(copy / "hosts.yml").hosts["cm-pub-01"].vars["p_hostfile"] == "changed"
