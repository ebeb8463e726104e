"""The nginx site rendered by the example apply, accepted by the real `nginx -t`.

`nginx -t` loads the certificate and key (and checks that they match) but binds no port, so
the rendered `listen 443 ssl;` needs no privileges. The control test swaps the key for
another one and expects nginx to refuse: proof that the check can fail.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, Cli, require_tool

pytestmark = pytest.mark.integration

PLAYBOOK = "playbooks/callmanager-https.yml"
INVENTORY = "inventory/example.yml"
HOSTS = ("cm-pub-01", "cm-sub-01", "cm-sub-02")
TEMP_PATHS = {  # directive -> the module that provides it (nginx-light may lack some)
    "client_body_temp_path": None,
    "proxy_temp_path": "http_proxy",
    "fastcgi_temp_path": "http_fastcgi",
    "uwsgi_temp_path": "http_uwsgi",
    "scgi_temp_path": "http_scgi",
}


@pytest.fixture(scope="module")
def nginx() -> str:
    return require_tool("nginx")


def nginx_test(nginx: str, folder: Path, include: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` of a minimal main config that includes ``include``; all state in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    built = subprocess.run([nginx, "-V"], capture_output=True, text=True, check=True).stderr
    temp = "".join(
        f"    {directive} {folder}/{directive.removesuffix('_temp_path')};\n"
        for directive, module in TEMP_PATHS.items()
        if module is None or f"--without-{module}_module" not in built
    )
    conf = folder / "nginx.conf"
    conf.write_text(
        f"pid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log;\n"
        "events {}\n"
        "http {\n"
        "    access_log off;\n"
        f"{temp}"
        f"    include {include};\n"
        "}\n"
    )
    return subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", f"{folder}/", "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def site_conf(project: Path, host: str) -> Path:
    return project / ".provision" / "fleet" / host / "nginx" / "default-web-site.conf"


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory, nginx: str) -> Path:
    project = tmp_path_factory.mktemp("nginx-project")
    for folder in ("playbooks", "inventory", "templates"):
        shutil.copytree(ROOT / folder, project / folder)
    result = Cli(project)("apply", PLAYBOOK, "-i", INVENTORY)
    assert result.exit_code == 0, result.stderr
    return project


@pytest.mark.parametrize("host", HOSTS)
def test_nginx_accepts_the_rendered_site(
    applied: Path, nginx: str, tmp_path: Path, host: str
) -> None:
    conf = site_conf(applied, host)
    text = conf.read_text()
    # The config really is the TLS site with the generated files (not an empty include).
    certificates = applied / ".provision" / "fleet" / host / "certificates"
    assert "listen 443 ssl;" in text
    assert f"ssl_certificate     {certificates / 'httpscert.pem'};" in text
    assert f"ssl_certificate_key {certificates / 'httpscert.key'};" in text
    result = nginx_test(nginx, tmp_path / "nginx", conf)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
    assert "test is successful" in result.stderr


def test_nginx_accepts_every_host_in_one_server(applied: Path, nginx: str, tmp_path: Path) -> None:
    """All three sites in one nginx, each on its own port (same server_name on one port
    would only be warned about and ignored)."""
    combined = tmp_path / "all.conf"
    parts = []
    for port, host in zip((443, 8443, 9443), HOSTS, strict=True):
        parts.append(
            site_conf(applied, host).read_text().replace("listen 443 ssl;", f"listen {port} ssl;")
        )
    combined.write_text("\n".join(parts))
    result = nginx_test(nginx, tmp_path / "nginx", combined)
    assert result.returncode == 0, result.stderr


def test_nginx_refuses_a_key_that_does_not_match(
    project: Path, cli: Cli, nginx: str, tmp_path: Path
) -> None:
    result = cli("apply", PLAYBOOK, "-i", INVENTORY, "--limit", "cm-pub-01,cm-sub-01")
    assert result.exit_code == 0, result.stderr
    conf = site_conf(project, "cm-pub-01")
    assert nginx_test(nginx, tmp_path / "before", conf).returncode == 0
    # cm-sub-01's key: a valid RSA key of the same size, just not this certificate's.
    fleet = project / ".provision" / "fleet"
    shutil.copyfile(
        fleet / "cm-sub-01/certificates/httpscert.key",
        fleet / "cm-pub-01/certificates/httpscert.key",
    )
    result = nginx_test(nginx, tmp_path / "after", conf)
    assert result.returncode != 0
    assert "key values mismatch" in result.stderr or "SSL_CTX_use_PrivateKey" in result.stderr, (
        result.stderr
    )
    # And provision sees it too, and puts it right.
    assert (
        cli(
            "plan", PLAYBOOK, "-i", INVENTORY, "--limit", "cm-pub-01", "--detailed-exitcode"
        ).exit_code
        == 2
    )
    assert cli("apply", PLAYBOOK, "-i", INVENTORY, "--limit", "cm-pub-01").exit_code == 0
    assert nginx_test(nginx, tmp_path / "fixed", conf).returncode == 0


def test_nginx_refuses_a_missing_certificate(
    project: Path, cli: Cli, nginx: str, tmp_path: Path
) -> None:
    assert cli("apply", PLAYBOOK, "-i", INVENTORY, "--limit", "cm-pub-01").exit_code == 0
    (project / ".provision/fleet/cm-pub-01/certificates/httpscert.pem").unlink()
    result = nginx_test(nginx, tmp_path / "nginx", site_conf(project, "cm-pub-01"))
    assert result.returncode != 0
    assert "httpscert.pem" in result.stderr
