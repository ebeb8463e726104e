"""Site mistakes a web server would only reject at reload time are refused at validation,
with the line to change."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from provision.servers.registry import names
from tests.conftest import Cli, snapshot

PLAYBOOK = "playbooks/sites.yml"


def _write(project: Path, sites: list[dict[str, object]]) -> None:
    book = yaml.safe_load((project / "playbooks/callmanager-https.yml").read_text())
    book["certificates"][0]["key"] = {"type": "ecdsa"}
    book["sites"] = sites
    (project / PLAYBOOK).write_text(yaml.safe_dump(book, sort_keys=False))


def _site(
    name: str = "web",
    bindings: list[dict[str, object]] | None = None,
    directories: list[dict[str, object]] | None = None,
    server: str = "nginx",
) -> dict[str, object]:
    return {
        "name": name,
        "server": server,
        "config": f"{{{{ certificates_dir }}}}/../{name}.conf",
        "reload": False,
        "bindings": bindings or [{"port": 443, "certificate": "httpscert"}],
        "virtual_directories": directories or [],
    }


CASE_TWINS: list[dict[str, object]] = [
    {"path": "/CCMAdmin", "physical_path": "/srv/a"},
    {"path": "/ccmadmin/", "physical_path": "/srv/b"},
]

CASES = {
    "duplicate site": (
        [_site("web"), _site("web")],
        "sites[1].name: two sites are named 'web'",
    ),
    "http and https on one port": (
        [
            _site(
                bindings=[
                    {"port": 8443, "certificate": "httpscert"},
                    {"protocol": "http", "port": 8443},
                ]
            )
        ],
        "sites[0].bindings: http and https cannot share *:8443",
    ),
    "two default bindings": (
        [
            _site(
                bindings=[
                    {"port": 443, "certificate": "httpscert"},
                    {"port": 443, "certificate": "httpscert"},
                ]
            )
        ],
        "sites[0].bindings: two bindings on *:443 have no host",
    ),
    "unknown server": (
        [_site(server="caddy")],
        "sites[0].server: 'caddy' is not a web server provision knows "
        f"(known: {', '.join(names())})",
    ),
    "IIS site name": (
        [_site(name="a:b", server="iis")],
        'sites[0]: an IIS site name cannot hold " \\ / : * ? < > |',
    ),
    "HAProxy serves no files": (
        [_site(server="haproxy", directories=[{"path": "/a", "physical_path": "/srv/a"}])],
        "sites[0]: HAProxy serves no files, so virtual directory /a cannot have a "
        "physical_path: give it a proxy_to",
    ),
    "same directory twice": (
        [
            _site(
                directories=[
                    {"path": "/a", "physical_path": "/srv/a"},
                    {"path": "/a/", "physical_path": "/srv/b"},
                ]
            )
        ],
        "sites[0].virtual_directories: two virtual directories have the path /a",
    ),
    "case_insensitive_paths on HAProxy": (
        [
            {
                **_site(server="haproxy", directories=[{"path": "/A", "proxy_to": "http://b"}]),
                "case_insensitive_paths": True,
            }
        ],
        "sites[0]: case_insensitive_paths is for nginx and Apache sites: haproxy matches "
        "paths as written",
    ),
    "paths differing in case, matched in any case": (
        [{**_site(directories=CASE_TWINS), "case_insensitive_paths": True}],
        "sites[0]: virtual directories /CCMAdmin and /ccmadmin differ only in case",
    ),
    "paths differing in case on IIS": (
        [_site(server="iis", directories=CASE_TWINS)],
        "sites[0]: virtual directories /CCMAdmin and /ccmadmin differ only in case",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_site_mistake_is_refused_before_anything_is_written(
    case: str, project: Path, cli: Cli
) -> None:
    sites, message = CASES[case]
    _write(project, sites)
    before = snapshot(project)
    result = cli("apply", PLAYBOOK, "-i", "inventory/example.yml")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {PLAYBOOK}:")
    assert message in result.stderr
    assert snapshot(project) == before


def test_sni_bindings_may_share_a_port(project: Path, cli: Cli) -> None:
    _write(
        project,
        [
            _site(
                bindings=[
                    {"port": 443, "certificate": "httpscert"},
                    {
                        "port": 443,
                        "host": "cm-pub-01.voice.example.com",
                        "certificate": "httpscert",
                    },
                ]
            )
        ],
    )
    assert cli("validate", PLAYBOOK, "-i", "inventory/example.yml").exit_code == 0


def test_a_bare_exclusion_is_an_error_not_every_host(project: Path, cli: Cli) -> None:
    result = cli(
        "plan", "playbooks/callmanager-https.yml", "-i", "inventory/example.yml", "--limit", "!"
    )
    assert result.exit_code == 1
    assert "'!' needs a name after it" in result.stderr


def test_paths_differing_in_case_are_two_directories_where_case_counts(
    project: Path, cli: Cli
) -> None:
    _write(project, [_site(directories=CASE_TWINS)])
    assert cli("validate", PLAYBOOK, "-i", "inventory/example.yml").exit_code == 0


@pytest.mark.parametrize("server", ["nginx", "apache", "iis"])
def test_case_insensitive_paths_is_taken_where_it_can_hold(
    project: Path, cli: Cli, server: str
) -> None:
    # IIS matches every case anyway: the option changes nothing there, and is not refused.
    _write(project, [{**_site(server=server), "case_insensitive_paths": True}])
    result = cli("validate", PLAYBOOK, "-i", "inventory/example.yml")
    assert result.exit_code == 0, result.stderr
