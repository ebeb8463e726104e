"""The web-server registry: every module of provision.servers that exports SERVER, and
nothing else to edit for a new one."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import provision.servers
from provision.servers import registry
from provision.servers.base import WebServer
from provision.servers.render import PACKAGED_TEMPLATES, Renderer
from tests.conftest import Cli

SHIPPED = {"apache", "haproxy", "iis", "nginx"}


def test_every_shipped_server_is_found_with_its_templates() -> None:
    found = registry.servers()
    assert set(found) >= SHIPPED
    assert list(found) == sorted(found)
    for name, server in found.items():
        assert isinstance(server, WebServer) and server.name == name
        for template in [server.template, *server.companions.values()]:
            assert (PACKAGED_TEMPLATES / template).is_file(), template
        assert len(server.redirect_variables) == 2


def test_the_schema_lists_the_registry(project: Path, cli: Cli) -> None:
    result = cli("schema", "--out", str(project / "schema"))
    assert result.exit_code == 0, result.stderr
    schema = json.loads((project / "schema" / "playbook.schema.json").read_text())
    (enum,) = [b["enum"] for b in schema["$defs"]["Site"]["properties"]["server"]["anyOf"][:1]]
    assert enum == registry.names()


def test_each_server_brings_its_own_quoting_filters() -> None:
    # Through a template: the environment wraps each filter (budgets), so compare results.
    env = Renderer([]).env
    for server in registry.servers().values():
        for name, function in server.filters.items():
            template = env.from_string(f"{{{{ value | {name} }}}}")
            assert template.render(value="/srv/a.pem") == function("/srv/a.pem")


CADDY = """
from provision.servers.base import WebServer


class Caddy(WebServer):
    name = "caddy"
    template = "caddy/Caddyfile.j2"
    redirect_variables = ("{host}", "{uri}")


SERVER = Caddy()
"""


@pytest.fixture
def caddy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A server module dropped beside the shipped ones (a folder added to the package's
    path stands for provision/servers/), with its template beside the playbook."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "caddy.py").write_text(CADDY)
    monkeypatch.setattr(provision.servers, "__path__", [*provision.servers.__path__, str(modules)])
    registry.servers.cache_clear()
    registry.filters.cache_clear()
    try:
        yield modules
    finally:
        sys.modules.pop("provision.servers.caddy", None)
        monkeypatch.undo()
        registry.servers.cache_clear()
        registry.filters.cache_clear()


def test_a_new_server_is_one_module_and_its_template(caddy: Path, project: Path, cli: Cli) -> None:
    (project / "templates" / "caddy").mkdir()
    (project / "templates" / "caddy" / "Caddyfile.j2").write_text(
        "{% for b in bindings %}{{ b.listen }} {{ b.redirect_to or 'serve' }}\n{% endfor %}"
    )
    book = yaml.safe_load((project / "playbooks" / "callmanager-https.yml").read_text())
    site = book["sites"][0]
    site.update(server="caddy", config="{{ certificates_dir }}/../caddy/Caddyfile", reload=False)
    site["bindings"].append({"protocol": "http", "port": 80, "redirect_to_https": True})
    (project / "playbooks" / "caddy.yml").write_text(yaml.safe_dump(book, sort_keys=False))
    result = cli("apply", "playbooks/caddy.yml", "-i", "inventory/example.yml", "-l", "cm-pub-01")
    assert result.exit_code == 0, result.stdout + result.stderr
    written = project / ".provision" / "fleet" / "cm-pub-01" / "caddy" / "Caddyfile"
    assert written.read_text() == "443 serve\n80 https://{host}{uri}\n"
