"""Windows hosts, path flavours and `provision render`.

A host is Windows by its inventory; its paths are spelled the Windows way and stay as
written (``C:\\Program Files\\Cisco\\Certificates``). No transport reaches Windows yet, so
`provision render` writes what such a host would get into a folder on the controller, and
plan/apply fail that host, by name, with a message that says so. The same Windows paths for
a POSIX host are refused at validation, before anything named ``C:...`` can be created.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import Cli
from sitecases import CASES, inside, prepare, render

from provision.api import load, render_all, run
from provision.errors import InputError
from provision.inputs.inventory import load_inventory
from provision.model.playbook import Output
from provision.transport.base import POSIX, WINDOWS

CERTIFICATES = r"C:\Program Files\Cisco\Certificates"
SITE_XML = r"C:\inetpub\provision\default.xml"
WWW = r"C:\inetpub\wwwroot"
PFX_PASSWORD = "iis-pfx-secret"

IIS_PLAYBOOK = rf"""
name: IIS
hosts: all
certificates_dir: '{CERTIFICATES}'
certificates:
  - name: httpscert
    source: self-signed
    key: {{type: ecdsa}}
    names: ["{{{{ host.name }}}}.example.com"]
    validity_days: 90
    outputs:
      - {{file: httpscert.cer, format: der, content: root}}
      - {{file: httpscert.pfx, format: pkcs12, password: {{env: IIS_PFX_PASSWORD}}}}
      - {{file: httpscert.key, format: pem, content: key}}
sites:
  - name: Default Web Site
    server: iis
    config: '{SITE_XML}'
    reload: false
    bindings:
      - {{port: 443, certificate: httpscert}}
    virtual_directories:
      - {{path: /, physical_path: '{WWW}'}}
"""


def _write(project: Path, name: str, text: str) -> str:
    (project / name).parent.mkdir(parents=True, exist_ok=True)
    (project / name).write_text(text)
    return name


def _inventory(project: Path, host_vars: str) -> str:
    return _write(project, "inventory/win.yml", f"all:\n  hosts:\n    win-01: {host_vars}\n")


def _named_like_a_drive(*folders: Path) -> list[Path]:
    return [
        path
        for folder in folders
        if folder.exists()
        for path in [folder, *folder.rglob("*")]
        if path.name[:2].upper().endswith(":") or path.name.upper().startswith("C:")
    ]


# --- render ---------------------------------------------------------------------------------


def test_render_writes_the_iis_script_and_site_xml_with_windows_paths_as_written(
    project: Path, cli: Cli
) -> None:
    playbook = _write(project, "playbooks/iis.yml", IIS_PLAYBOOK)
    inventory = _inventory(project, "{address: 10.0.0.9, fqdn: win-01.example.com, os: windows}")
    # No password is needed to render: the script names the variable, never its value.
    result = cli("render", playbook, "-i", inventory, "--out", "out")
    assert result.exit_code == 0, result.stderr
    out = project / "out" / "win-01"
    script = out / "C" / "inetpub" / "provision" / "default.ps1"
    xml = out / "C" / "inetpub" / "provision" / "default.xml"
    assert sorted(p for p in out.rglob("*") if p.is_file()) == [script, xml]
    assert f"{SITE_XML} -> out/win-01/C/inetpub/provision/default.xml" in result.stdout
    text = script.read_text()
    assert f"$SiteXml = '{SITE_XML}'" in text
    assert f"$CertificatesDir = '{CERTIFICATES}'" in text
    assert f"Pfx = '{CERTIFICATES}\\httpscert.pfx'" in text
    assert f"RootDer = '{CERTIFICATES}\\httpscert.cer'" in text
    assert "PasswordVariable = 'IIS_PFX_PASSWORD'" in text
    assert f'physicalPath="{WWW}"' in xml.read_text()
    assert oct(script.stat().st_mode & 0o777) == "0o644"
    assert _named_like_a_drive(project) == []


def test_render_writes_no_key_material(project: Path, cli: Cli) -> None:
    """A POSIX host applied first holds a real key; rendering it and a Windows host writes
    neither that key nor any other, nor the PFX password, anywhere under the folder."""
    env = {"IIS_PFX_PASSWORD": PFX_PASSWORD, "HTTPSCERT_PFX_PASSWORD": PFX_PASSWORD}
    assert (
        cli("apply", "playbooks/callmanager-https.yml", "-i", "inventory/example.yml").exit_code
        == 0
    )
    key_file = project / ".provision/fleet/cm-pub-01/certificates/httpscert.key"
    key = key_file.read_bytes()
    assert b"PRIVATE KEY" in key
    body = b"".join(line for line in key.splitlines() if not line.startswith(b"-----"))
    for args in (
        ("playbooks/callmanager-https.yml", "-i", "inventory/example.yml"),
        (
            _write(project, "playbooks/iis.yml", IIS_PLAYBOOK),
            "-i",
            _inventory(project, "{fqdn: win-01.example.com, os: windows}"),
        ),
    ):
        result = cli("render", *args, "--out", "out", env=env)
        assert result.exit_code == 0, result.stderr
    files = [p for p in (project / "out").rglob("*") if p.is_file()]
    assert len(files) == 3 + 2  # three nginx hosts, one IIS script and site XML
    for path in files:
        data = path.read_bytes()
        assert b"PRIVATE KEY" not in data, path
        assert body[:40] not in data and body[-40:] not in data, path
        assert PFX_PASSWORD.encode() not in data, path
        assert path.suffix in (".conf", ".ps1", ".xml"), path


@pytest.mark.parametrize("case", CASES)
def test_render_writes_what_apply_would_write(project: Path, cli: Cli, case: str) -> None:
    """nginx, Apache and IIS sites of POSIX hosts: the same bytes a plan renders, at the
    host path mirrored under OUT/HOST/."""
    runs = prepare(project, case)
    planned = render(project, runs)
    for item in runs:
        limit = ("--limit", item.limit) if item.limit else ()
        result = cli("render", item.playbook, "-i", item.inventory, *limit, "--out", "out")
        assert result.exit_code == 0, result.stderr
    host = "cm-pub-01" if case == "example" else "web-01"
    written = {
        "/" + str(p.relative_to(project / "out" / host)): p.read_bytes()
        for p in (project / "out" / host).rglob("*")
        if p.is_file()
    }
    assert written == planned
    assert {Path(p).parent.name for p in planned} == {"nginx", "apache", "iis"}
    assert not (project / ".provision").exists()  # no host file written, no key made


def test_render_is_atomic_and_replaces_earlier_files(project: Path, cli: Cli) -> None:
    playbook = _write(project, "playbooks/iis.yml", IIS_PLAYBOOK)
    inventory = _inventory(project, "{os: windows}")
    target = project / "out/win-01/C/inetpub/provision/default.xml"
    target.parent.mkdir(parents=True)
    target.write_text("old")
    assert cli("render", playbook, "-i", inventory, "--out", "out").exit_code == 0
    assert target.read_text().startswith("<?xml") or "<site" in target.read_text()
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == []


# --- POSIX hosts refuse Windows paths -------------------------------------------------------


@pytest.mark.parametrize(
    ("replace", "line", "field"),
    [
        ((CERTIFICATES, CERTIFICATES), 4, "certificates_dir"),
        ((SITE_XML, SITE_XML), 18, "sites[0].config"),
        ((WWW, WWW), 23, "sites[0].virtual_directories[0].physical_path"),
        ((WWW, r"\\fileserver\www"), 23, "sites[0].virtual_directories[0].physical_path"),
    ],
)
def test_windows_paths_for_a_posix_host_are_refused_with_file_line(
    project: Path, cli: Cli, replace: tuple[str, str], line: int, field: str
) -> None:
    text = IIS_PLAYBOOK.replace(*replace)
    # Only the path under test is a Windows one: the others become POSIX paths.
    for windows, posix in (
        (CERTIFICATES, "/srv/certs"),
        (SITE_XML, "/srv/site.xml"),
        (WWW, "/srv/www"),
    ):
        if windows != replace[0]:
            text = text.replace(f"'{windows}'", f"'{posix}'")
    playbook = _write(project, "playbooks/iis.yml", text)
    inventory = _inventory(project, "{connection: local}")
    env = {"IIS_PFX_PASSWORD": PFX_PASSWORD}
    for command in ("render", "validate", "plan", "apply"):
        extra = ("--out", "out") if command == "render" else ()
        result = cli(command, playbook, "-i", inventory, *extra, env=env)
        assert result.exit_code == 1, (command, result.stdout)
        message = result.stderr.strip()
        assert message.startswith(
            f"error: {playbook}:{line}: {field}: '{replace[1]}' is a Windows path"
        ), message
        assert "os: windows" in message and "Traceback" not in message
        assert len(message.splitlines()) == 1
    assert _named_like_a_drive(project, project / "out", project / "playbooks") == []
    assert not (project / "out").exists() and not (project / ".provision").exists()


def test_relative_paths_for_a_windows_host_are_refused(project: Path, cli: Cli) -> None:
    playbook = _write(
        project, "playbooks/iis.yml", IIS_PLAYBOOK.replace(f"'{CERTIFICATES}'", "certs")
    )
    inventory = _inventory(project, "{os: windows}")
    result = cli("render", playbook, "-i", inventory, "--out", "out")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: {playbook}:4: certificates_dir: 'certs' is not an absolute Windows path"
    )
    assert not (project / "out").exists()


# --- no transport reaches Windows yet -------------------------------------------------------


def test_plan_and_apply_fail_a_windows_host_naming_render(project: Path, cli: Cli) -> None:
    """The Windows host fails, by itself; a POSIX host of the same run goes on."""
    playbook = _write(
        project,
        "playbooks/iis.yml",
        IIS_PLAYBOOK.replace("hosts: all", "hosts: windows"),
    )
    _write(
        project,
        "inventory/win.yml",
        "all:\n  children:\n    windows:\n      hosts:\n"
        "        win-01: {ansible_connection: winrm}\n"
        "        win-02: {ansible_shell_type: powershell}\n",
    )
    env = {"IIS_PFX_PASSWORD": PFX_PASSWORD}
    for command in ("plan", "apply", "verify", "rollback"):
        result = cli(command, playbook, "-i", "inventory/win.yml", env=env)
        assert result.exit_code == 1, command
        assert "Traceback" not in result.stdout + result.stderr
        for host in ("win-01", "win-02"):
            assert f"{host} is a Windows host" in result.stdout, (command, result.stdout)
        assert "provision render" in result.stdout
    assert _named_like_a_drive(project) == []


def test_one_windows_host_does_not_stop_the_fleet(project: Path) -> None:
    _write(
        project,
        "inventory/mixed.yml",
        (project / "inventory/example.yml").read_text()
        + "        cm-win-01: {address: 10.10.0.14, fqdn: cm-win-01.example.com, os: windows}\n",
    )
    with inside(project):
        # The example's relative certificates_dir is refused for the Windows host ...
        with pytest.raises(InputError, match="not an absolute Windows path"):
            load("playbooks/callmanager-https.yml", "inventory/mixed.yml")
        book = yaml.safe_load((project / "playbooks/callmanager-https.yml").read_text())
        book["certificates_dir"] = "{{ certificates_dir }}"
        book["sites"][0]["config"] = "{{ site_config }}"
        book["sites"][0]["virtual_directories"] = []
        (project / "playbooks/mixed.yml").write_text(yaml.safe_dump(book))
        inventory = (
            (project / "inventory/mixed.yml")
            .read_text()
            .replace(
                "cm-win-01: {address: 10.10.0.14, fqdn: cm-win-01.example.com, os: windows}",
                "cm-win-01: {address: 10.10.0.14, fqdn: cm-win-01.example.com, os: windows, "
                "certificates_dir: 'D:\\certs', "
                "site_config: 'D:\\nginx\\site.conf'}",
            )
        )
        inventory = inventory.replace(
            "    www_root:", "    site_config: '{{ certificates_dir }}/../site.conf'\n    www_root:"
        )
        (project / "inventory/mixed.yml").write_text(inventory)
        loaded = load("playbooks/mixed.yml", "inventory/mixed.yml")
        by_host = {t.host.name: t for t in loaded.targets}
        assert by_host["cm-win-01"].certificates_dir == "D:\\certs"
        assert by_host["cm-win-01"].paths is WINDOWS and by_host["cm-pub-01"].paths is POSIX
        _, report = run(loaded, apply=False)
    status = {h.host: h.status for h in report.hosts}
    assert status == {
        "cm-pub-01": "changed",
        "cm-sub-01": "changed",
        "cm-sub-02": "changed",
        "cm-win-01": "failed",
    }


def test_render_all_is_the_api_entry_point(project: Path) -> None:
    playbook = _write(project, "playbooks/iis.yml", IIS_PLAYBOOK)
    inventory = _inventory(project, "{os: windows}")
    with inside(project):
        loaded = load(playbook, inventory, controller_files=False)
        (result,) = render_all(loaded, project / "elsewhere")
    assert result.error is None
    assert [host_path for host_path, _ in result.files] == [
        SITE_XML,
        SITE_XML.replace(".xml", ".ps1"),
    ]
    assert result.files[0][1] == project / "elsewhere/win-01/C/inetpub/provision/default.xml"


# --- the inventory decides ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host_vars", "os", "connection"),
    [
        ("{os: windows}", "windows", "local"),
        ("{ansible_shell_type: powershell}", "windows", "local"),
        ("{ansible_connection: winrm}", "windows", "winrm"),
        ("{connection: psrp}", "windows", "psrp"),
        ("{connection: ssh}", "posix", "ssh"),
        ("{}", "posix", "local"),
    ],
)
def test_the_inventory_says_which_hosts_are_windows(
    tmp_path: Path, host_vars: str, os: str, connection: str
) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(f"all:\n  hosts:\n    h1: {host_vars}\n")
    host = load_inventory(path).hosts["h1"]
    assert (host.os, host.connection) == (os, connection)


def test_an_os_that_contradicts_a_windows_connection_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    h0:\n    h1: {os: posix, ansible_connection: winrm}\n")
    with pytest.raises(InputError) as caught:
        load_inventory(path, "hosts.yml")
    assert caught.value.message == (
        "hosts.yml:4: all.hosts.h1: host 'h1': os: 'posix' contradicts connection: winrm, "
        "which only Windows hosts use"
    )


# --- path flavours --------------------------------------------------------------------------


def test_path_flavours() -> None:
    assert WINDOWS.join(CERTIFICATES, "httpscert.pfx") == CERTIFICATES + "\\httpscert.pfx"
    assert (
        WINDOWS.normpath(CERTIFICATES + "/../iis/site.xml")
        == r"C:\Program Files\Cisco\iis\site.xml"
    )
    assert WINDOWS.normpath(CERTIFICATES) == CERTIFICATES  # stays as written
    assert WINDOWS.isabs(r"C:\x") and WINDOWS.isabs(r"\\server\share\x")
    assert not WINDOWS.isabs(r"\x") and not WINDOWS.isabs("C:x") and not WINDOWS.isabs("/srv")
    assert WINDOWS.is_inside(r"c:\INETPUB\wwwroot\key.pem", r"C:\inetpub\wwwroot")
    assert not WINDOWS.is_inside(r"C:\inetpub\wwwroot2\k", r"C:\inetpub\wwwroot")
    assert POSIX.is_inside("/srv/www/k", "/srv/www/") and not POSIX.is_inside(
        "/srv/wwwx", "/srv/www"
    )
    assert WINDOWS.parts(r"C:\X\y") == ("C", "X", "y")
    assert WINDOWS.parts(r"\\fs\share\y") == ("UNC", "fs", "share", "y")
    assert POSIX.parts("/etc/nginx/x") == ("etc", "nginx", "x")
    assert WINDOWS.is_root("C:\\") and POSIX.is_root("/") and not POSIX.is_root("/etc")
    with pytest.raises(ValueError):
        POSIX.parts("etc/nginx")


@pytest.mark.parametrize(
    "name", ["../x.pem", "..\\x.pem", "a\\..\\..\\x", "/x.pem", "\\x.pem", "C:x.pem", "c:\\x"]
)
def test_an_output_file_escaping_its_folder_is_refused_for_both_flavours(name: str) -> None:
    with pytest.raises(ValueError, match="escapes the certificates directory"):
        Output(file=name, format="pem", content="key")


def test_an_output_file_in_a_subfolder_joins_with_the_hosts_separator(project: Path) -> None:
    text = IIS_PLAYBOOK.replace("file: httpscert.cer", "file: 'roots\\httpscert.cer'")
    playbook = _write(project, "playbooks/iis.yml", text)
    inventory = _inventory(project, "{os: windows}")
    with inside(project):
        (target,) = load(playbook, inventory, controller_files=False).targets
    (certificate,) = target.playbook.certificates
    assert target.output_path(certificate.outputs[0]) == CERTIFICATES + "\\roots\\httpscert.cer"
    assert Output(file="roots\\a.pem", format="pem", content="key").file == "roots/a.pem"


def test_render_reaches_no_ssh_host(project: Path, cli: Cli) -> None:
    """An SSH host at an address nobody answers on renders all the same; a path relative to
    its login's home cannot be rendered (only the host knows that home) unless workdir is
    absolute."""
    runs = prepare(project, "example")
    inventory = (project / "inventory/example.yml").read_text()
    unreachable = inventory.replace(
        "connection: local", "connection: ssh\n    address: 192.0.2.1\n    port: 9"
    )
    _write(project, "inventory/ssh.yml", unreachable)
    result = cli("render", runs[0].playbook, "-i", "inventory/ssh.yml", "--out", "out")
    assert result.exit_code == 1
    assert (
        "cm-pub-01: failed: ~/.provision/fleet/cm-pub-01/nginx/default-web-site.conf is "
        "relative to the login's home" in result.stdout
    )
    _write(
        project,
        "inventory/ssh.yml",
        unreachable.replace("    port: 9", "    port: 9\n    workdir: /srv/cm"),
    )
    result = cli("render", runs[0].playbook, "-i", "inventory/ssh.yml", "--out", "out")
    assert result.exit_code == 0, result.stdout
    written = (
        project / "out/cm-pub-01/srv/cm/.provision/fleet/cm-pub-01/nginx/default-web-site.conf"
    )
    assert (
        "ssl_certificate     /srv/cm/.provision/fleet/cm-pub-01/certificates/"
        in written.read_text()
    )


def test_two_files_differing_only_by_case_are_one_file_on_windows(project: Path) -> None:
    text = IIS_PLAYBOOK.replace("file: httpscert.key", "file: HTTPSCERT.PFX")
    playbook = _write(project, "playbooks/iis.yml", text)
    for host_vars, refused in (("{os: windows}", True), ("{}", False)):
        if not refused:  # the same names on a POSIX host are two files
            text = text.replace(f"'{CERTIFICATES}'", "/srv/certs")
            text = text.replace(f"'{SITE_XML}'", "/srv/site.xml").replace(f"'{WWW}'", "/srv/www")
            _write(project, "playbooks/iis.yml", text)
        inventory = _inventory(project, host_vars)
        with inside(project):
            if refused:
                with pytest.raises(InputError, match=r"iis.yml:14: .*writes C:\\.*HTTPSCERT.PFX"):
                    load(playbook, inventory, controller_files=False)
            else:
                load(playbook, inventory, controller_files=False)


# --- issue 15, item 2: what an IIS site runs ------------------------------------------------

STAGED_IIS = """\
name: IIS files staged on a POSIX host
hosts: all
certificates_dir: out/certs
certificates:
  - name: httpscert
    source: self-signed
    key: {type: ecdsa}
    names: [web.example.com, 127.0.0.1]
    validity_days: 90
    outputs:
      - {file: httpscert.cer, format: der, content: root}
      - {file: httpscert.pfx, format: pkcs12, password: {env: IIS_PFX_PASSWORD}}
      - {file: httpscert.key, format: pem, content: key}
sites:
  - name: Default Web Site
    server: iis
    config: out/iis/default.xml
    bindings:
      - {port: 443, certificate: httpscert}
    virtual_directories:
      - {path: /, physical_path: /srv/www}
"""
POWERSHELL = 'powershell -NoProfile -ExecutionPolicy Bypass -File "out/iis/default.ps1"'


def _staged(project: Path, reload_command: str | None = None) -> tuple[str, str]:
    text = STAGED_IIS
    if reload_command is not None:
        text = text.replace(
            "    config: out/iis/default.xml\n",
            f"    config: out/iis/default.xml\n    reload_command: '{reload_command}'\n",
        )
    playbook = _write(project, "playbooks/staged.yml", text)
    inventory = _write(
        project, "inventory/staged.yml", "all:\n  hosts:\n    web-01: {address: 127.0.0.1}\n"
    )
    return playbook, inventory


def test_an_iis_site_runs_its_script_by_default_only_on_a_windows_host() -> None:
    from provision.model.playbook import Site
    from provision.servers.iis import SERVER

    site = Site.model_validate(
        {"name": "Default Web Site", "server": "iis", "config": SITE_XML,
         "bindings": [{"port": 443, "certificate": "httpscert"}]}
    )  # fmt: skip
    paths = [SITE_XML, r"C:\inetpub\provision\default.ps1"]
    assert SERVER.default_commands(site, paths, "windows") == (
        None,
        r'powershell -NoProfile -ExecutionPolicy Bypass -File "C:\inetpub\provision\default.ps1"',
    )
    assert SERVER.default_commands(site, paths, "posix") == (None, None)


def test_an_iis_site_on_a_posix_host_writes_its_files_and_runs_nothing(
    project: Path, cli: Cli
) -> None:
    """The script is for the Windows host: on a POSIX host (a share, a staging copy) it is
    written, and nothing runs unless the site's reload_command says what."""
    playbook, inventory = _staged(project)
    env = {"IIS_PFX_PASSWORD": PFX_PASSWORD}
    result = cli("apply", playbook, "-i", inventory, env=env)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "web-01: changed" in result.stdout
    assert "powershell" not in result.stdout
    for name in ("iis/default.xml", "iis/default.ps1", "certs/httpscert.pfx"):
        assert (project / "out" / name).is_file(), name
    assert "Import-PfxCertificate" in (project / "out/iis/default.ps1").read_text()
    again = cli("plan", playbook, "-i", inventory, "--detailed-exitcode", env=env)
    assert again.exit_code == 0, again.stdout  # no reload owed


def test_a_reload_the_host_cannot_run_fails_it_once_and_is_owed_again_when_changed(
    project: Path, cli: Cli
) -> None:
    """PowerShell on a POSIX host: the host fails with what to do, and the next runs do not
    retry the same impossible reload; a new reload_command is run by the next apply."""
    playbook, inventory = _staged(project, POWERSHELL)
    env = {"IIS_PFX_PASSWORD": PFX_PASSWORD}
    failed = cli("apply", playbook, "-i", inventory, env=env)
    assert failed.exit_code == 1, failed.stdout
    assert "Traceback" not in failed.stdout + failed.stderr
    assert (
        f"web-01: changed, failed: reload `{POWERSHELL}` of site 'Default Web Site' cannot run on "
        "web-01, a posix host: the command is not found there (" in failed.stdout
    )
    assert "not retried as it is" in failed.stdout
    assert "Give the site a reload_command this host can run" in failed.stdout
    assert (project / "out/iis/default.xml").is_file()  # the files are written

    for command in ("plan", "apply"):
        idle = cli(command, playbook, "-i", inventory, env=env)
        assert idle.exit_code == 0, idle.stdout + idle.stderr
        assert "reload owed" not in idle.stdout
    assert cli("plan", playbook, "-i", inventory, "--detailed-exitcode", env=env).exit_code == 0

    # A command the host has: the reload is owed again, and the next apply runs it.
    _staged(project, "touch reloaded.flag")
    plan = cli("plan", playbook, "-i", inventory, env=env)
    assert (
        f"reload owed: `{POWERSHELL}` could not run on this host, and the site's reload "
        "command is now `touch reloaded.flag`" in plan.stdout
    )
    applied = cli("apply", playbook, "-i", inventory, env=env)
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    assert (project / "reloaded.flag").exists()
    done = cli("plan", playbook, "-i", inventory, "--detailed-exitcode", env=env)
    assert done.exit_code == 0, done.stdout


def test_the_reload_marker_is_read_as_input() -> None:
    """The marker comes from the host: a line that is not exactly an entry is a site name."""
    from provision import reloads

    marker = reloads.parse(
        b'plain site\n{"site": "iis", "cannot_run": "powershell x"}\n'
        b'{"site": 5, "cannot_run": "x"}\n{not json\n{"site": "a", "cannot_run": "b", "c": 1}\n'
    )
    assert marker.cannot_run == {"iis": "powershell x"}
    assert marker.owed == {
        "plain site",
        '{"site": 5, "cannot_run": "x"}',
        "{not json",
        '{"site": "a", "cannot_run": "b", "c": 1}',
    }
    kept = reloads.updated(marker, ["plain site"], owed=["other"])
    assert reloads.parse(kept).cannot_run == {"iis": "powershell x"}
    assert reloads.parse(kept).owed == {"other"}
    assert reloads.updated(marker, ["iis"]) is None
