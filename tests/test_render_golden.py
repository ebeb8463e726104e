"""Rendered site configs compared byte for byte with golden files.

The golden files under tests/golden/<case>/ are the reviewed output for each server kind
(nginx, Apache, the IIS site XML and its PowerShell script). After an intended change to a
template, regenerate them and review the diff:

    UPDATE_GOLDEN=1 python -m pytest tests/test_render_golden.py

The project copy's absolute path is replaced by /srv/provision, so golden files do not depend
on where the tests run.
"""

from __future__ import annotations

import difflib
import os
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from sitecases import CASES, PFX_PASSWORDS, Run, golden_name, inside, prepare, render

from provision.api import load, run
from provision.servers.apache import apache_quote, apache_regsub_literal
from provision.servers.iis import iis_site_id
from provision.servers.nginx import nginx_quote, nginx_regex, nginx_rewrite_target
from provision.servers.render import RenderError, comment, xml_comment

GOLDEN = Path(__file__).parent / "golden"
PLACEHOLDER = "/srv/provision"
UPDATE = os.environ.get("UPDATE_GOLDEN", "") not in ("", "0")
EXPECTED = {
    "example": [
        "apache/default-web-site.conf",
        "iis/default-web-site.ps1",
        "iis/default-web-site.xml",
        "nginx/default-web-site.conf",
    ],
    "portal": ["apache/portal.conf", "iis/portal.ps1", "iis/portal.xml", "nginx/portal.conf"],
    "haproxy": ["haproxy/portal.cfg", "haproxy/portal.crt-list"],
    "insensitive": ["apache/portal.conf", "nginx/portal.conf"],
}
GOLDEN_CASES = (*CASES, "haproxy", "insensitive")


def _normalised(project: Path, files: dict[str, bytes]) -> dict[str, str]:
    return {
        golden_name(path): content.decode().replace(str(project), PLACEHOLDER)
        for path, content in files.items()
    }


def _rendered(project: Path, case: str) -> dict[str, str]:
    return _normalised(project, render(project, prepare(project, case)))


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_rendered_configs_match_golden_files(project: Path, case: str) -> None:
    rendered = _rendered(project, case)
    assert sorted(rendered) == EXPECTED[case]
    folder = GOLDEN / case
    if UPDATE:
        shutil.rmtree(folder, ignore_errors=True)
        for name, text in rendered.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")
    on_disk = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert on_disk == EXPECTED[case], "golden files missing or stale (UPDATE_GOLDEN=1)"
    for name, text in rendered.items():
        golden = (folder / name).read_text(encoding="utf-8")
        if golden != text:
            diff = "".join(
                difflib.unified_diff(
                    golden.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    fromfile=f"golden/{case}/{name}",
                    tofile="rendered",
                )
            )
            pytest.fail(f"{name} differs from its golden file (UPDATE_GOLDEN=1 to accept):\n{diff}")


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_rendering_is_deterministic(
    project: Path, tmp_path_factory: pytest.TempPathFactory, case: str
) -> None:
    runs = prepare(project, case)
    first = render(project, runs)
    assert render(project, runs) == first  # same input, same bytes
    # A second copy elsewhere renders the same text, apart from its own absolute paths.
    other = tmp_path_factory.mktemp("again")
    for folder in ("playbooks", "inventory", "templates"):
        shutil.copytree(ROOT / folder, other / folder)
    assert _normalised(other, render(other, prepare(other, case))) == _normalised(project, first)


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_every_file_says_which_playbook_rendered_it(project: Path, case: str) -> None:
    runs = prepare(project, case)
    for name, text in _rendered(project, case).items():
        head = "\n".join(text.splitlines()[:3])
        # The playbook's file name: the same whichever folder provision runs from.
        assert any(f"from {Path(r.playbook).name} for host" in head for r in runs), name


@pytest.mark.parametrize("case", CASES)
def test_no_password_is_written_into_any_config(project: Path, case: str) -> None:
    for name, text in _rendered(project, case).items():
        for password in [*PFX_PASSWORDS.values(), "admin-pfx"]:
            assert password not in text, name


def test_iis_site_xml_is_the_site_element(project: Path) -> None:
    rendered = _rendered(project, "portal")
    site = ET.fromstring(rendered["iis/portal.xml"].encode())
    assert site.tag == "site"
    assert site.get("name") == "Portal on IIS"
    assert site.get("id") == str(iis_site_id("Portal on IIS"))
    bindings = [
        (b.get("protocol"), b.get("bindingInformation"), b.get("sslFlags"))
        for b in site.iter("binding")
    ]
    assert bindings == [
        ("https", "*:443:", "0"),
        ("https", "*:443:portal.example.com", "1"),
        ("https", "10.0.0.5:8443:admin.example.com", "1"),
        ("https", "[::1]:443:", "0"),
        ("http", "*:80:", None),
        ("http", "*:80:admin.example.com", None),
        ("http", "127.0.0.1:8080:", None),
    ]
    applications = {
        a.get("path"): (
            a.get("applicationPool"),
            [(v.get("path"), v.get("physicalPath")) for v in a],
        )
        for a in site.findall("application")
    }
    www = f"{PLACEHOLDER}/.provision/web-01/www"
    assert applications == {
        "/": ("Portal on IIS", [("/", f"{www}/home")]),
        "/CCMAdmin": ("Portal on IIS", [("/", f"{www}/CCMAdmin")]),
        "/CCMAdmin/reports": ("Portal on IIS", [("/", f"{www}/reports")]),
    }  # /api is proxied by a URL Rewrite rule, not an application


def test_iis_example_is_the_default_web_site(project: Path) -> None:
    rendered = _rendered(project, "example")
    site = ET.fromstring(rendered["iis/default-web-site.xml"].encode())
    assert (site.get("name"), site.get("id")) == ("Default Web Site", "1")
    root, *applications = site.findall("application")
    assert root.get("path") == "/"
    assert [a.get("path") for a in applications][:2] == ["/CCMAdmin", "/CCMService"]
    assert {a.get("applicationPool") for a in site.findall("application")} == {"DefaultAppPool"}
    assert [(b.get("bindingInformation"), b.get("sslFlags")) for b in site.iter("binding")] == [
        ("*:443:", "0")
    ]


def test_iis_script_imports_then_binds_by_thumbprint(project: Path) -> None:
    script = _rendered(project, "portal")["iis/portal.ps1"]
    certificates = f"{PLACEHOLDER}/.provision/web-01/certificates"
    assert (
        f"@{{ Name = 'portal'; Pfx = '{certificates}/portal.pfx'; "
        f"PasswordVariable = 'PORTAL_PFX_PASSWORD'; RootDer = '{certificates}/portal.cer' }}"
    ) in script
    # A password kept in a file: the script reads the default variable.
    assert "PasswordVariable = 'PROVISION_PFX_PASSWORD'" in script
    assert "Import-PfxCertificate" in script and "Cert:\\LocalMachine\\My" in script
    assert "$Thumbprints[$certificate.Name] = $leaf.Thumbprint" in script
    assert "Endpoint = 'ipport=0.0.0.0:443'" in script
    assert "Endpoint = 'hostnameport=portal.example.com:443'" in script
    assert "Endpoint = 'hostnameport=admin.example.com:8443'" in script
    assert "Endpoint = 'ipport=[::1]:443'" in script
    assert "Target = 'https://{SERVER_NAME}{REQUEST_URI}'" in script
    assert "Target = 'https://{SERVER_NAME}:8443{REQUEST_URI}'" in script
    assert (
        "Url = '^api(?:/(.*))?$'; Action = 'Rewrite'; "
        "Target = 'http://127.0.0.1:9000/backend/{R:1}'" in script
    )
    assert f"$SiteXml = '{PLACEHOLDER}/.provision/web-01/iis/portal.xml'" in script


def test_redirect_targets_follow_each_servers_variables(project: Path) -> None:
    rendered = _rendered(project, "portal")
    assert "return 301 https://$host$request_uri;" in rendered["nginx/portal.conf"]
    assert "return 301 https://$host:8443$request_uri;" in rendered["nginx/portal.conf"]
    apache = rendered["apache/portal.conf"]
    assert "RewriteRule ^ https://%{SERVER_NAME}%{REQUEST_URI} [R=301,L]" in apache
    assert "RewriteRule ^ https://%{SERVER_NAME}:8443%{REQUEST_URI} [R=301,L]" in apache


def test_apache_listens_once_per_address_and_port(project: Path) -> None:
    apache = _rendered(project, "portal")["apache/portal.conf"]
    listens = [line.strip() for line in apache.splitlines() if line.strip().startswith("Listen")]
    # [::1]:443 is served by the socket on all addresses: Apache cannot bind both.
    assert listens == [
        "Listen 443 https",
        "Listen 10.0.0.5:8443 https",
        "Listen 80 http",
        "Listen 127.0.0.1:8080 http",
    ]
    assert "<VirtualHost [::1]:443>" in apache


def _hostile_project(project: Path, site: dict[str, object]) -> Run:
    book = {
        "name": "Hostile",
        "hosts": "cm-pub-01",
        "certificates_dir": "{{ certificates_dir }}",
        "certificates": [
            {
                "name": "c",
                "source": "self-signed",
                "key": {"type": "ecdsa"},
                "names": ["a.example"],
                "validity_days": 10,
                "renew_before_days": 1,
                "outputs": [
                    {"file": "c.pem", "format": "pem", "content": "fullchain"},
                    {"file": "c.key", "format": "pem", "content": "key"},
                ],
            }
        ],
        "sites": [
            {
                "config": "{{ certificates_dir }}/../site.conf",
                "reload": False,
                "bindings": [{"port": 443, "certificate": "c"}],
                **site,
            }
        ],
    }
    (project / "playbooks" / "hostile.yml").write_text(yaml.safe_dump(book))
    return Run("playbooks/hostile.yml", "inventory/example.yml")


@pytest.mark.parametrize("server", ["nginx", "apache"])
def test_names_with_newlines_stay_inside_comments(project: Path, server: str) -> None:
    run_ = _hostile_project(
        project,
        {
            "name": "Evil\nlisten 1; \\",
            "server": server,
            "virtual_directories": [
                {
                    "path": "/x",
                    "application": "App\nInclude /etc/passwd \\",
                    "physical_path": '/srv/with space/and"quote',
                }
            ],
        },
    )
    (text,) = render(project, [run_]).values()
    lines = text.decode().splitlines()
    assert not any(line.startswith(("listen 1", "Include")) for line in lines)
    assert "# App Include /etc/passwd" in text.decode()
    assert not any(line.rstrip().endswith("\\") for line in lines)
    quoted = '"/srv/with space/and\\"quote' + ("/" if server == "nginx" else "") + '"'
    assert quoted in text.decode()


def test_a_dollar_in_an_nginx_path_fails_the_host_not_the_config(project: Path) -> None:
    run_ = _hostile_project(
        project,
        {
            "name": "Dollar",
            "server": "nginx",
            "virtual_directories": [{"path": "/x", "physical_path": "/srv/$document_root"}],
        },
    )
    with inside(project):
        _, report = run(load(run_.playbook, run_.inventory), apply=False)
    (host,) = report.hosts
    assert host.status == "failed"
    assert "nginx/site.conf.j2" in (host.error or "") and "'$'" in (host.error or "")


def test_quoting_filters() -> None:
    assert nginx_quote("/plain/path.pem") == "/plain/path.pem"
    assert nginx_quote('a b"c\\') == '"a b\\"c\\\\"'
    assert apache_quote('a "b"') == '"a \\"b\\""'
    with pytest.raises(RenderError):
        nginx_quote("/a\nb")
    with pytest.raises(RenderError):
        apache_quote("/srv/${APACHE_LOG_DIR}")
    assert comment("one\ntwo \\") == "one two"
    assert xml_comment("a -- b-") == "a - - b"


def test_case_insensitive_filters() -> None:
    # nginx reads a doubled backslash in a token as one, so the pattern gets \. as written.
    assert nginx_regex(r"(?i)^/a\.b(/.*)?$") == r'"(?i)^/a\\.b(/.*)?$"'
    assert nginx_rewrite_target("/CCMAdmin") == "/CCMAdmin$1"
    assert nginx_rewrite_target("/a(b)") == '"/a(b)$1"'  # the capture inside the quotes
    with pytest.raises(RenderError):
        nginx_rewrite_target("/a$b")  # nginx would read a variable
    with pytest.raises(RenderError):
        nginx_regex("^/a\n")
    # Apache's substitution: $ before a digit is a capture, a backslash escapes: both escaped.
    assert apache_regsub_literal("/srv/d$1\\x") == "/srv/d\\$1\\\\x"
    assert apache_regsub_literal("/srv/R&D") == "/srv/R&D"


def test_case_insensitive_paths_change_only_nginx_and_apache_path_matching(
    project: Path,
) -> None:
    """The option adds rewrites (nginx) and (?i) patterns (Apache) and nothing else: the rest
    of each file is the portal's own golden output."""
    insensitive = _rendered(project, "insensitive")
    plain = {name: (GOLDEN / "portal" / name).read_text() for name in insensitive}

    def changed(name: str) -> tuple[Counter[str], Counter[str]]:
        """(lines added, lines removed), by content: where they are is the diff's business."""
        before, after = Counter(plain[name].splitlines()), Counter(insensitive[name].splitlines())
        return after - before, before - after

    added, removed = changed("nginx/portal.conf")
    assert not removed
    assert {line.strip() for line in added if line.strip().startswith("rewrite")} == {
        'rewrite "(?i)^/CCMAdmin/reports(/.*)?$" /CCMAdmin/reports$1 last;',
        'rewrite "(?i)^/CCMAdmin(/.*)?$" /CCMAdmin$1 last;',
        'rewrite "(?i)^/api(/.*)?$" /api$1 last;',
        'rewrite "(?i)^/secure-api(/.*)?$" /secure-api$1 last;',
    }
    assert all(line.strip().startswith(("rewrite", "#")) or not line.strip() for line in added)
    added, removed = changed("apache/portal.conf")
    assert {line.split()[0] for line in removed} == {"Alias", "ProxyPass", "RedirectMatch"}
    assert {line.split()[0] for line in added} == {"AliasMatch", "ProxyPassMatch", "RedirectMatch"}
    assert all("(?i)^" in line for line in added)
