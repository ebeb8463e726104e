"""HTTP-01 as each server's rendered site says it, compared with golden files.

IIS cannot run here: its site XML (the challenge folder as a virtual directory, an http
binding added on port 80) and its script (the folder and its web.config, redirects that
leave the challenge path alone) are pinned byte for byte. nginx and Apache are pinned too;
tests/test_acme_http.py serves the same templates live. Regenerate with UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
from conftest import Cli

GOLDEN = Path(__file__).parent / "golden" / "acme"
UPDATE = os.environ.get("UPDATE_GOLDEN", "") not in ("", "0")

WINDOWS_PLAYBOOK = r"""
name: ACME on IIS
hosts: all
certificates_dir: 'C:\ProgramData\provision\certs'
certificates:
  - name: web
    source:
      type: acme
      directory: https://acme-staging-v02.api.letsencrypt.org/directory
      accept_terms: true
      challenge: http-01
    names: [www.example.com]
    outputs:
      - {file: web.pfx, format: pkcs12, password: {env: WEB_PFX_PASSWORD}}
sites:
  - name: Default Web Site
    server: iis
    config: 'C:\inetpub\provision\web.xml'
    reload: false
    bindings:
      - {port: 443, certificate: web}
    virtual_directories:
      - {path: /, physical_path: 'C:\inetpub\wwwroot'}
"""

POSIX_PLAYBOOK = """
name: ACME on nginx and Apache
hosts: all
certificates_dir: /etc/ssl/provision
certificates_dir_mode: "0711"
certificates:
  - name: web
    source:
      type: acme
      directory: https://acme-staging-v02.api.letsencrypt.org/directory
      accept_terms: true
      challenge: http-01
    names: [www.example.com]
    outputs:
      - {file: web.pem, format: pem, content: fullchain}
      - {file: web.key, format: pem, content: key}
sites:
  - name: web-nginx
    server: nginx
    config: /etc/nginx/sites-enabled/web.conf
    bindings:
      - {port: 443, certificate: web}
      - {protocol: http, port: 80, redirect_to_https: true}
    virtual_directories:
      - {path: /, proxy_to: "http://127.0.0.1:8080"}
  - name: web-apache
    server: apache
    config: /etc/apache2/sites-enabled/web.conf
    bindings:
      - {address: 192.0.2.10, port: 443, certificate: web}
      - {protocol: http, address: 192.0.2.10, port: 80}
    virtual_directories:
      - {path: /, proxy_to: "http://127.0.0.1:8080"}
"""


def _render(project: Path, cli: Cli, playbook: str, host: str) -> dict[str, str]:
    (project / "playbooks" / "acme.yml").write_text(playbook)
    (project / "inventory" / "acme.yml").write_text(f"all:\n  hosts:\n    web-01: {host}\n")
    result = cli("render", "playbooks/acme.yml", "-i", "inventory/acme.yml", "--out", "out")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "failed" not in result.stdout, result.stdout
    out = project / "out" / "web-01"
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.rglob("*")) if p.is_file()}


def _compare(rendered: dict[str, str]) -> None:
    for name, text in rendered.items():
        golden = GOLDEN / name
        if UPDATE:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(text)
        expected = golden.read_text()
        if expected != text:
            diff = "".join(
                difflib.unified_diff(
                    expected.splitlines(keepends=True), text.splitlines(keepends=True)
                )
            )
            pytest.fail(f"{name} differs from its golden file (UPDATE_GOLDEN=1):\n{diff}")


def test_iis_serves_the_challenge_folder_as_a_virtual_directory(project: Path, cli: Cli) -> None:
    rendered = _render(project, cli, WINDOWS_PLAYBOOK, "{os: windows}")
    assert sorted(rendered) == ["C/inetpub/provision/web.ps1", "C/inetpub/provision/web.xml"]
    xml = rendered["C/inetpub/provision/web.xml"]
    script = rendered["C/inetpub/provision/web.ps1"]
    folder = r"C:\ProgramData\provision\certs\.acme-challenge"
    assert f'<virtualDirectory path="/.well-known/acme-challenge" physicalPath="{folder}" />' in xml
    assert '<binding protocol="http" bindingInformation="*:80:" />' in xml
    assert f"$Challenge = '{folder}'" in script
    assert "Url = '^(?!\\.well-known/acme-challenge/)(.*)$'; Action = 'Redirect'" in script
    _compare(rendered)


def test_nginx_and_apache_serve_the_challenge_before_any_redirect_or_proxy(
    project: Path, cli: Cli
) -> None:
    rendered = _render(project, cli, POSIX_PLAYBOOK, "{address: 192.0.2.10}")
    nginx = rendered.pop("etc/nginx/sites-enabled/web.conf")
    apache = rendered.pop("etc/apache2/sites-enabled/web.conf")
    assert rendered == {}
    _compare(
        {"etc/nginx/sites-enabled/web.conf": nginx, "etc/apache2/sites-enabled/web.conf": apache}
    )
    # nginx: the user's own http binding serves it; its redirect moves into location /.
    assert nginx.count("location ^~ /.well-known/acme-challenge/") == 1
    assert "alias /etc/ssl/provision/.acme-challenge/;" in nginx
    # Apache: the proxied root leaves the path alone on the http binding.
    http = apache[apache.index("<VirtualHost 192.0.2.10:80>") :]
    assert http.index("ProxyPass /.well-known/acme-challenge/ !") < http.index('ProxyPass "/"')


def test_render_of_an_haproxy_http01_site_names_plan(project: Path, cli: Cli) -> None:
    """HAProxy answers with the account's thumbprint, which only plan and apply read."""
    playbook = POSIX_PLAYBOOK.replace("server: nginx", "server: haproxy").replace(
        "web.key", "web.pem.key"
    )
    (project / "playbooks" / "acme.yml").write_text(playbook)
    (project / "inventory" / "acme.yml").write_text("all:\n  hosts:\n    web-01: {}\n")
    result = cli("render", "playbooks/acme.yml", "-i", "inventory/acme.yml", "--out", "out")
    assert "only plan and apply read from the controller" in result.stdout, result.stdout
