"""The SSH transport against real sshd instances on loopback ports (see tests/sshd.py).

Each sshd stands for one host with its own host key and certificates folder. Runs go through
``provision.api`` (and the CLI for the connection options), with ``HOME`` pointed at a
temporary folder so the user's own ``~/.ssh`` can neither help nor hurt.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Cli, require_tool, run_openssl, snapshot
from ssh_counts import counting
from sshd import (
    BECOME_USER,
    SshdFleet,
    SshServer,
    become_user,
    ensure_login_user,
    keygen,
    no_sudo_user,
    sshd_fleet,
)

from provision.api import load, run
from provision.errors import TransportError
from provision.model.inventory import Host
from provision.transport.factory import ConnectOptions, make_transport
from provision.transport.ssh import sftp as sftp_files
from provision.transport.ssh import sudo
from provision.transport.ssh.shell import ShellEnded

__all__ = ["become_user", "no_sudo_user", "sshd_fleet"]  # fixtures, imported to be found

pytestmark = pytest.mark.integration

PLAYBOOK = """\
name: SSH fleet
hosts: fleet
certificates_dir: "{{ certificates_dir }}"
certificates:
  - name: web
    source: self-signed
    key: {type: ecdsa, curve: p256}
    subject: {common_name: "{{ host.name }}.example.test"}
    names: ["{{ host.name }}.example.test", localhost]
    validity_days: 90
    renew_before_days: 30
    outputs:
      - {file: web.cer, format: der, content: certificate}
      - {file: web.pem, format: pem, content: fullchain}
      - {file: web.key, format: pem, content: key}
sites:
  - name: web
    server: nginx
    config: "{{ certificates_dir }}/../nginx/web.conf"
    reload: true
    # Both run over the SSH connection: SSH_CONNECTION is only set in an SSH session (and
    # sudo, for become, drops it but sets SUDO_USER).
    test_command: 'test -s {{ certificates_dir }}/web.pem && test -n "$SSH_CONNECTION$SUDO_USER"'
    reload_command: >-
      printf "%s %s" "$(id -u)" "${SSH_CONNECTION:-sudo by $SUDO_USER}"
      > {{ certificates_dir }}/../reloaded
    bindings:
      - {protocol: https, port: 443, certificate: web}
"""


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


@pytest.fixture
def fleet(sshd_fleet: SshdFleet) -> SshdFleet:
    require_tool("ssh-keygen")
    return sshd_fleet


def host_root(server: SshServer) -> Path:
    """The folder the host's files go to (its certificates folder and the site config)."""
    return server.certificates.parent / "host"


def write_project(
    folder: Path,
    fleet: SshdFleet,
    servers: list[SshServer],
    *,
    user: str = "root",
    become: bool = False,
    roots: dict[str, Path] | None = None,
) -> tuple[Path, Path]:
    """A playbook and an inventory listing ``servers`` as ``connection: ssh`` hosts."""
    hosts: dict[str, Any] = {}
    for server in servers:
        root = (roots or {}).get(server.name, host_root(server))
        hosts[server.name] = {
            "address": "127.0.0.1",
            "ansible_port": server.port,  # the Ansible alias, as inventories write it
            "certificates_dir": str(root / "certificates"),
        }
    inventory = {
        "all": {
            "vars": {
                "connection": "ssh",
                "ansible_user": user,
                "ansible_ssh_private_key_file": str(fleet.client_key),
                "become": become,
            },
            "children": {"fleet": {"hosts": hosts}},
        }
    }
    folder.mkdir(parents=True, exist_ok=True)
    playbook = folder / "ssh.yml"
    playbook.write_text(PLAYBOOK)
    inventory_file = folder / "ssh-inventory.yml"
    inventory_file.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return playbook, inventory_file


def apply(playbook: Path, inventory: Path, **options: Any) -> dict[str, Any]:
    loaded = load(playbook, inventory, connect=ConnectOptions(**options))
    _plan, report = run(loaded, apply=True)
    return {h.host: h for h in report.hosts}


def known_hosts_for(path: Path, servers: list[SshServer]) -> Path:
    path.write_text("".join(s.known_hosts_line() for s in servers))
    return path


def assert_landed(server: SshServer, *, owner: int = 0) -> None:
    certificates = host_root(server) / "certificates"
    key = certificates / "web.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.stat().st_uid == owner
    assert stat.S_IMODE((certificates / "web.cer").stat().st_mode) == 0o644
    text = run_openssl(
        "x509", "-inform", "DER", "-in", str(certificates / "web.cer"), "-noout", "-subject"
    )
    assert f"{server.name}.example.test" in text
    reloaded = (host_root(server) / "reloaded").read_text().split()
    assert reloaded[0] == str(owner) and str(server.port) in reloaded  # ran over this sshd


# --- applying over SSH ----------------------------------------------------------------------


def test_apply_over_ssh_then_nothing_to_change(fleet: SshdFleet, tmp_path: Path) -> None:
    servers = fleet.start(3)
    playbook, inventory = write_project(tmp_path / "project", fleet, servers)
    known = known_hosts_for(tmp_path / "known_hosts", servers)

    first = apply(playbook, inventory, known_hosts=str(known))
    assert {h: r.status for h, r in first.items()} == {s.name: "changed" for s in servers}, {
        h: r.error for h, r in first.items()
    }
    for server in servers:
        assert_landed(server)
        assert not [
            p for p in (host_root(server) / "certificates").iterdir() if p.name.endswith(".tmp")
        ]
    before = {s.name: snapshot(host_root(s)) for s in servers}

    second = apply(playbook, inventory, known_hosts=str(known))
    assert {h: r.status for h, r in second.items()} == {s.name: "ok" for s in servers}
    assert {s.name: snapshot(host_root(s)) for s in servers} == before  # mtimes too


def test_dead_host_fails_alone(fleet: SshdFleet, tmp_path: Path) -> None:
    servers = fleet.start(3)
    servers[1].stop()  # its port is closed now
    playbook, inventory = write_project(tmp_path / "project", fleet, servers)
    known = known_hosts_for(tmp_path / "known_hosts", servers)

    result = apply(playbook, inventory, known_hosts=str(known))
    dead = result[servers[1].name]
    assert dead.status == "failed"
    assert dead.error == f"127.0.0.1:{servers[1].port}: cannot connect: connection refused"
    for server in (servers[0], servers[2]):
        assert result[server.name].status == "changed"
        assert_landed(server)


# --- host keys ------------------------------------------------------------------------------


def test_unknown_host_key_is_refused_with_its_fingerprint(fleet: SshdFleet, tmp_path: Path) -> None:
    [server] = fleet.start(1)
    playbook, inventory = write_project(tmp_path / "project", fleet, [server])
    known = tmp_path / "known_hosts"

    result = apply(playbook, inventory, known_hosts=str(known))[server.name]
    assert result.status == "failed"
    assert "\n" not in result.error
    assert result.error.startswith(f"127.0.0.1:{server.port}: host key is not known")
    assert server.fingerprint() in result.error
    assert f"ssh-keyscan -p {server.port} 127.0.0.1 >> {known}" in result.error
    assert "--accept-new-host-keys" in result.error
    assert not (host_root(server) / "certificates").exists()
    assert not known.exists()


def test_changed_host_key_is_refused_even_with_accept_new(fleet: SshdFleet, tmp_path: Path) -> None:
    [server] = fleet.start(1)
    playbook, inventory = write_project(tmp_path / "project", fleet, [server])
    other = keygen(tmp_path / "other_host_key")
    other_public = " ".join(Path(f"{other}.pub").read_text().split()[:2])
    known = tmp_path / "known_hosts"
    known.write_text(f"{server.known_hosts_name} {other_public}\n")
    original = known.read_bytes()

    for accept_new in (False, True):
        result = apply(
            playbook, inventory, known_hosts=str(known), accept_new_host_keys=accept_new
        )[server.name]
        assert result.status == "failed"
        assert "HOST KEY CHANGED" in result.error and server.fingerprint() in result.error
        assert f"ssh-keygen -R '{server.known_hosts_name}'" in result.error
        assert known.read_bytes() == original
    assert not (host_root(server) / "certificates").exists()


def test_accept_new_appends_one_line_per_host(fleet: SshdFleet, tmp_path: Path) -> None:
    servers = fleet.start(3)
    playbook, inventory = write_project(tmp_path / "project", fleet, servers)
    known = tmp_path / "known_hosts"
    # The last line has no newline: the first appended line must not be glued to it.
    known.write_text(
        "# kept as it is\nexample.invalid ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIIp6kGHd0bqUKbwtZSMpTA3X2kaVWNWr5EGVkIRVfeBq"
    )
    before = known.read_text()

    first = apply(playbook, inventory, known_hosts=str(known), accept_new_host_keys=True)
    assert {r.status for r in first.values()} == {"changed"}, {h: r.error for h, r in first.items()}
    text = known.read_text()
    assert text.startswith(before + "\n")  # appended, never rewritten
    added = text[len(before) + 1 :].splitlines()
    assert sorted(added) == sorted(s.known_hosts_line().strip() for s in servers)

    second = apply(playbook, inventory, known_hosts=str(known))  # no acceptance needed now
    assert {r.status for r in second.values()} == {"ok"}
    assert known.read_text() == text


def test_accept_new_defaults_to_the_users_known_hosts(
    fleet: SshdFleet, tmp_path: Path, isolated_home: Path
) -> None:
    [server] = fleet.start(1)
    playbook, inventory = write_project(tmp_path / "project", fleet, [server])

    result = apply(playbook, inventory, accept_new_host_keys=True)[server.name]
    assert result.status == "changed", result.error
    user_file = isolated_home / ".ssh" / "known_hosts"
    assert user_file.read_text() == server.known_hosts_line()
    assert apply(playbook, inventory)[server.name].status == "ok"  # read from there too


def test_cert_authority_is_honoured(fleet: SshdFleet, tmp_path: Path) -> None:
    ca = keygen(tmp_path / "host_ca")
    [server] = fleet.start(1, ca_key=ca)
    playbook, inventory = write_project(tmp_path / "project", fleet, [server])
    ca_public = " ".join(Path(f"{ca}.pub").read_text().split()[:2])
    known = tmp_path / "known_hosts"
    known.write_text(f"@cert-authority [127.0.0.1]:* {ca_public}\n")

    result = apply(playbook, inventory, known_hosts=str(known))[server.name]
    assert result.status == "changed", result.error
    assert_landed(server)

    # Another CA trusted for the host: the certificate is refused, naming the signing CA.
    stranger = keygen(tmp_path / "other_ca")
    stranger_public = " ".join(Path(f"{stranger}.pub").read_text().split()[:2])
    known.write_text(f"@cert-authority [127.0.0.1]:* {stranger_public}\n")
    refused = apply(playbook, inventory, known_hosts=str(known))[server.name]
    assert refused.status == "failed"
    assert "signed by a CA that is not trusted" in refused.error

    # Nothing known for the host: accept-new records its plain key, not the certificate.
    fresh = tmp_path / "fresh_known_hosts"
    accepted = apply(playbook, inventory, known_hosts=str(fresh), accept_new_host_keys=True)[
        server.name
    ]
    assert accepted.status == "ok", accepted.error
    assert fresh.read_text() == server.known_hosts_line()


# --- authentication and reachability ----------------------------------------------------------


def test_wrong_user_is_refused(fleet: SshdFleet, tmp_path: Path) -> None:
    [server] = fleet.start(1)
    playbook, inventory = write_project(tmp_path / "project", fleet, [server], user="no-such-user")
    known = known_hosts_for(tmp_path / "known_hosts", [server])

    result = apply(playbook, inventory, known_hosts=str(known))[server.name]
    assert result.status == "failed"
    assert result.error == (
        f"127.0.0.1:{server.port}: authentication failed for user "
        f"'no-such-user' (key {fleet.client_key})"
    )


def test_an_unusable_ssh_key_is_named(tmp_path: Path) -> None:
    (tmp_path / "not_a_key").write_text("hello\n")
    messages = []
    for key in (tmp_path / "missing_key", tmp_path / "not_a_key"):
        transport = make_transport(
            Host(name="h", address="127.0.0.1", port=1, connection="ssh", ssh_key=str(key)),
            ConnectOptions(known_hosts=str(tmp_path / "known_hosts")),
        )

        async def attempt(transport: Any = transport) -> str:
            try:
                await transport.list_dir("/")
            except Exception as exc:
                return str(exc)
            return "connected"

        messages.append(asyncio.run(attempt()))
    assert messages == [
        f"127.0.0.1:1: cannot load ssh_key {tmp_path}/missing_key: No such file or directory",
        f"127.0.0.1:1: cannot load ssh_key {tmp_path}/not_a_key: Invalid private key",
    ]


def test_a_silent_host_times_out(tmp_path: Path) -> None:
    # A listening socket nobody accepts from: TCP connects, the SSH banner never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        transport = make_transport(
            Host(name="silent", address="127.0.0.1", port=port, connection="ssh", user="root"),
            ConnectOptions(known_hosts=str(tmp_path / "known_hosts"), connect_timeout=0.5),
        )

        async def attempt() -> str:
            try:
                await transport.read("/etc/hostname")
            except Exception as exc:
                return str(exc)
            finally:
                await transport.close()
            return "connected"

        assert asyncio.run(attempt()) == f"127.0.0.1:{port}: connection timed out after 0.5 s"


# --- the transport's own operations -----------------------------------------------------------


def recorded_requests(transport: Any) -> list[tuple[str, tuple[str, ...]]]:
    """Every request the transport sends to the host's shell from now on (sent as before,
    and listed): (script, arguments)."""
    requests: list[tuple[str, tuple[str, ...]]] = []
    original = transport._chain

    async def recording(batch: Any, timeout: float | None = None) -> Any:
        requests.extend((r.script, tuple(r.args)) for r in batch)
        return await original(batch, timeout)

    transport._chain = recording
    return requests


def recorded_folder_syncs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The folders each SFTP folder sync is asked for from now on (synced as before)."""
    calls: list[list[str]] = []
    original = sftp_files.sync_folders

    async def recording(sftp: Any, folders: Any) -> bool:
        calls.append(list(folders))
        return await original(sftp, folders)

    monkeypatch.setattr(sftp_files, "sync_folders", recording)
    return calls


def test_a_durable_commit_is_synced_before_it_returns(
    fleet: SshdFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a journal's roll-forward relies on: its renames are on disk before the journal is
    removed: an fsync of the folder over SFTP (a folder opened like a file, then
    fsync@openssh.com), before commit returns, and no command."""
    [server] = fleet.start(1)
    known = known_hosts_for(tmp_path / "known_hosts", [server])
    host = Host(
        name=server.name,
        address="127.0.0.1",
        port=server.port,
        connection="ssh",
        user="root",
        ssh_key=str(fleet.client_key),
    )
    transport = make_transport(host, ConnectOptions(known_hosts=str(known)))
    folder = tmp_path / "durable"
    syncs = recorded_folder_syncs(monkeypatch)

    async def scenario() -> None:
        try:
            staged = await transport.stage(str(folder / "a.pem"), b"x\n", 0o644)
            await transport.commit(staged, str(folder / "a.pem"), durable=False)
            assert not syncs  # not durable: nothing synced yet
            staged = await transport.stage(str(folder / "b.pem"), b"x\n", 0o644)
            await transport.commit(staged, str(folder / "b.pem"))
            assert syncs == [[str(folder)]]
        finally:
            await transport.close()

    with counting() as counts:
        asyncio.run(scenario())
    assert counts.at(server.port).execs == 0
    assert counts.at(server.port).requests.count("fsync@openssh.com") == 3  # 2 files, 1 folder


def test_transport_operations_share_one_connection(fleet: SshdFleet, tmp_path: Path) -> None:
    [server] = fleet.start(1)
    known = known_hosts_for(tmp_path / "known_hosts", [server])
    host = Host(
        name=server.name,
        address="127.0.0.1",
        port=server.port,
        connection="ssh",
        user="root",
        ssh_key=str(fleet.client_key),
        vars={"workdir": str(tmp_path)},
    )
    transport = make_transport(host, ConnectOptions(known_hosts=str(known)))
    assert transport.resolve("certs/a.key") == f"{tmp_path}/certs/a.key"
    assert transport.resolve("/etc/../etc/ssl") == "/etc/ssl"
    folder = tmp_path / "certs"

    async def scenario() -> None:
        try:
            await transport.write(str(folder / "a.key"), b"secret\x00\xff", 0o600)
            await transport.write(str(folder / "big.pem"), os.urandom(300_000), 0o640)
            (folder / "link").symlink_to("/etc/passwd")
            states = await asyncio.gather(
                *(transport.read(str(folder / n)) for n in ("a.key", "big.pem", "link", "nope"))
            )
            assert [s.kind for s in states] == ["file", "file", "symlink", "missing"]
            assert states[0].content == b"secret\x00\xff" and states[0].mode == 0o600
            assert states[1].content == (folder / "big.pem").read_bytes()
            assert states[1].mode == 0o640
            assert (await transport.read(str(folder / "a.key" / "x"))).kind == "missing"
            with pytest.raises(Exception, match=r"refusing to replace .*link: it is a symlink"):
                await transport.write(str(folder / "link"), b"x", 0o644)
            assert os.readlink(folder / "link") == "/etc/passwd"
            assert await transport.list_dir(str(folder)) == ["a.key", "big.pem", "link"]
            assert await transport.list_dir(str(folder / "missing")) == []
            assert await transport.create_exclusive(str(folder / "lock"), b"me\n", 0o644)
            assert not await transport.create_exclusive(str(folder / "lock"), b"you\n", 0o644)
            assert (folder / "lock").read_bytes() == b"me\n"
            await transport.remove(str(folder / "lock"))
            await transport.remove(str(folder / "lock"))  # already gone: fine
            result = await transport.run("pwd; echo oops >&2; exit 3")
            assert (result.exit_status, result.stdout, result.stderr) == (
                3,
                f"{tmp_path}\n",
                "oops\n",
            )
            slow = await transport.run("sleep 5", timeout=0.3)
            assert slow.exit_status == 124 and "timed out after 0.3 s" in slow.stderr
            peers = await asyncio.gather(
                *(transport.run("echo $SSH_CONNECTION") for _ in range(12))
            )
            assert len({p.stdout for p in peers}) == 1  # one connection, many channels
        finally:
            await transport.close()

    asyncio.run(scenario())
    assert sorted(p.name for p in folder.iterdir()) == ["a.key", "big.pem", "link"]


# --- become -----------------------------------------------------------------------------------


def test_become_writes_as_root_through_sudo(
    fleet: SshdFleet, become_user: str, tmp_path: Path
) -> None:
    [server] = fleet.start(1)
    # A root-owned 0755 folder the login user cannot write to, reachable by everyone.
    base = Path(fleet.shared) / "become-target"
    base.mkdir(mode=0o755)
    os.chown(base, 0, 0)
    playbook, inventory = write_project(
        tmp_path / "project",
        fleet,
        [server],
        user=BECOME_USER,
        become=True,
        roots={server.name: base},
    )
    known = known_hosts_for(tmp_path / "known_hosts", [server])
    probe = subprocess.run(["sudo", "-u", become_user, "test", "-w", str(base)], check=False)
    assert probe.returncode != 0  # without sudo, the login user could not write there

    with counting() as counts:
        first = apply(playbook, inventory, known_hosts=str(known))[server.name]
    assert first.status == "changed", first.error
    assert counts.at(server.port).commands == ["sudo -n -- sh -s"]  # the one sudo of the run
    certificates = base / "certificates"
    for name in ("web.key", "web.cer", "web.pem"):
        info = (certificates / name).stat()
        assert info.st_uid == 0
    assert stat.S_IMODE((certificates / "web.key").stat().st_mode) == 0o600
    assert "example.test" in run_openssl(
        "x509", "-inform", "DER", "-noout", "-subject", "-in", str(certificates / "web.cer")
    )
    # Commands ran as root, through sudo, for the login user.
    assert (base / "reloaded").read_text() == f"0 sudo by {become_user}"
    assert not [p for p in certificates.iterdir() if p.name.endswith(".tmp")]
    before = snapshot(base)

    second = apply(playbook, inventory, known_hosts=str(known))[server.name]
    assert second.status == "ok", second.error
    assert snapshot(base) == before


def test_become_reads_are_batched_and_exact(
    fleet: SshdFleet, become_user: str, tmp_path: Path
) -> None:
    [server] = fleet.start(1)
    known = known_hosts_for(tmp_path / "known_hosts", [server])
    host = Host(
        name=server.name,
        address="127.0.0.1",
        port=server.port,
        connection="ssh",
        user=become_user,
        ssh_key=str(fleet.client_key),
        become=True,
    )
    transport = make_transport(host, ConnectOptions(known_hosts=str(known)))
    # Relative to the login's home, which only the server can tell: asked for by start().
    assert transport.resolve("certs") == "~/certs"
    folder = Path(fleet.shared) / "become-reads"
    folder.mkdir(mode=0o700)  # root only: the login user could not even look inside
    (folder / "key.pem").write_bytes(b"\x00secret\xff\n" * 100)
    (folder / "key.pem").chmod(0o600)
    (folder / "empty").write_bytes(b"")
    (folder / "link").symlink_to("key.pem")
    (folder / "sub").mkdir(mode=0o751)
    requests = recorded_requests(transport)
    names = ("key.pem", "empty", "link", "sub", "nope", "key.pem/x")

    async def scenario() -> list[Any]:
        try:
            await transport.start()
            assert transport.resolve("certs") == f"/home/{become_user}/certs"
            assert transport.resolve("~/x/../y") == f"/home/{become_user}/y"
            return list(await asyncio.gather(*(transport.read(str(folder / n)) for n in names)))
        finally:
            await transport.close()

    with counting() as counts:
        states = asyncio.run(scenario())
    assert counts.at(server.port).commands == ["sudo -n -- sh -s"]
    assert [s.kind for s in states] == [
        "file",
        "file",
        "symlink",
        "directory",
        "missing",
        "missing",
    ]
    assert states[0].content == (folder / "key.pem").read_bytes() and states[0].mode == 0o600
    assert states[1].content == b""
    assert states[3].mode == 0o751
    assert requests == [(sudo.READ, tuple(str(folder / n) for n in names))]  # one for all


HOME_ELSEWHERE = ("provtest-home", Path("/var/tmp/provision-tests-home"))


def test_the_login_home_comes_from_the_server(fleet: SshdFleet, tmp_path: Path) -> None:
    """Relative paths start at the home the server reports (SFTP realpath('.')), not at a
    guess such as /home/USER: this user's home is elsewhere."""
    user, home = HOME_ELSEWHERE
    ensure_login_user(user, home)
    actual = Path(pwd.getpwnam(user).pw_dir)
    assert not str(actual).startswith("/home/")
    [server] = fleet.start(1)
    known = known_hosts_for(tmp_path / "known_hosts", [server])
    host = Host(
        name=server.name,
        address="127.0.0.1",
        port=server.port,
        connection="ssh",
        user=user,
        ssh_key=str(fleet.client_key),
    )
    transport = make_transport(host, ConnectOptions(known_hosts=str(known)))
    folder = f"certs-{secrets.token_hex(4)}"

    async def scenario() -> str:
        try:
            await transport.start()
            path = transport.resolve(f"{folder}/a.pem")
            await transport.write(path, b"x\n", 0o600)
            result = await transport.run("pwd")
            assert result.stdout.strip() == str(actual)
            return path
        finally:
            await transport.close()

    try:
        path = asyncio.run(scenario())
        assert path == f"{actual}/{folder}/a.pem"
        assert Path(path).read_bytes() == b"x\n"
    finally:
        shutil.rmtree(actual / folder, ignore_errors=True)


def test_become_syncs_each_folder_once_as_root(
    fleet: SshdFleet, become_user: str, tmp_path: Path
) -> None:
    """Replacements that are not durable one by one are made durable together, at the flush,
    in the root shell (the folder may be root's alone), not by a sync after every rename."""
    [server] = fleet.start(1)
    known = known_hosts_for(tmp_path / "known_hosts", [server])
    host = Host(
        name=server.name,
        address="127.0.0.1",
        port=server.port,
        connection="ssh",
        user=become_user,
        ssh_key=str(fleet.client_key),
        become=True,
    )
    transport = make_transport(host, ConnectOptions(known_hosts=str(known)))
    folder = Path(fleet.shared) / "become-flush"
    folder.mkdir(mode=0o700)  # root only
    requests = recorded_requests(transport)
    recording = transport._chain  # type: ignore[attr-defined]

    async def refusing(batch: Any, timeout: float | None = None) -> Any:
        if any(r.script == sudo.SYNC for r in batch):
            raise ShellEnded("sudo: a password is required")
        return await recording(batch, timeout)

    async def scenario() -> None:
        try:
            for name in ("a.pem", "b.pem"):
                staged = await transport.stage(str(folder / name), b"x\n", 0o644)
                await transport.commit(staged, str(folder / name), durable=False)
            renames = len(requests)
            await transport.flush()
            assert requests[renames:] == [(sudo.SYNC, (str(folder),))]
            # When the shell fails, the flush fails: what waits for it must not go ahead.
            staged = await transport.stage(str(folder / "c.pem"), b"x\n", 0o644)
            await transport.commit(staged, str(folder / "c.pem"), durable=False)
            transport._chain = refusing  # type: ignore[attr-defined]
            with pytest.raises(TransportError, match=r"cannot flush .*password is required"):
                await transport.flush()
            transport._chain = recording  # type: ignore[attr-defined]
            await transport.flush()  # the folder is still owed its sync, and gets it
            assert requests[-1] == (sudo.SYNC, (str(folder),))
        finally:
            await transport.close()

    asyncio.run(scenario())
    assert sorted(p.name for p in folder.iterdir()) == ["a.pem", "b.pem", "c.pem"]
    commits = [r for r in requests if r[0] == sudo.commit_script(False)]
    assert len(commits) == 3
    assert len([r for r in requests if r[0] == sudo.SYNC]) == 2


def test_become_without_passwordless_sudo_fails_clearly(
    fleet: SshdFleet, no_sudo_user: str, tmp_path: Path
) -> None:
    [server] = fleet.start(1)
    playbook, inventory = write_project(
        tmp_path / "project", fleet, [server], user=no_sudo_user, become=True
    )
    known = known_hosts_for(tmp_path / "known_hosts", [server])

    result = apply(playbook, inventory, known_hosts=str(known))[server.name]
    assert result.status == "failed"
    assert "a password is required" in result.error and "passwordless sudo" in result.error


# --- the command line -------------------------------------------------------------------------


def test_cli_apply_with_known_hosts_and_accept_new(
    fleet: SshdFleet, project: Path, cli: Cli, converged_records: Path
) -> None:
    servers = fleet.start(2)
    playbook, inventory = write_project(project, fleet, servers)
    known = project / "known_hosts"

    refused = cli(
        "apply",
        str(playbook),
        "-i",
        str(inventory),
        "--known-hosts",
        str(known),
        "--connect-timeout",
        "5",
    )
    assert refused.exit_code == 1
    output = refused.stdout + refused.stderr
    for server in servers:
        assert server.fingerprint() in output
    assert "Traceback" not in output

    accepted = cli(
        "apply",
        str(playbook),
        "-i",
        str(inventory),
        "--known-hosts",
        str(known),
        "--accept-new-host-keys",
    )
    assert accepted.exit_code == 0, accepted.stdout + accepted.stderr
    assert len(known.read_text().splitlines()) == 2
    for server in servers:
        assert_landed(server)

    again = cli("apply", str(playbook), "-i", str(inventory), "--known-hosts", str(known))
    assert again.exit_code == 0, again.stdout + again.stderr
    assert "changed 0" in again.stdout
    assert len(known.read_text().splitlines()) == 2
    # Converged, but over SSH: never answered from a converged record (see converged.py).
    assert list(converged_records.rglob("*.json")) == []


def test_cli_dead_host_exit_1_others_changed(fleet: SshdFleet, project: Path, cli: Cli) -> None:
    servers = fleet.start(3)
    servers[0].stop()
    playbook, inventory = write_project(project, fleet, servers)
    known = known_hosts_for(project / "known_hosts", servers)

    result = cli(
        "apply",
        str(playbook),
        "-i",
        str(inventory),
        "--known-hosts",
        str(known),
        "--format",
        "json",
    )
    assert result.exit_code == 1
    assert "connection refused" in result.stdout + result.stderr
    for server in servers[1:]:
        assert_landed(server)


# --- rollback over SSH (issue 15, item 6) -----------------------------------------------------


def test_rollback_list_and_twice_over_ssh(fleet: SshdFleet, project: Path, cli: Cli) -> None:
    """`rollback --list` names each backup's files by full path on the host; a second
    rollback goes one apply further back, a third finds nothing more to undo."""
    [server] = fleet.start(1)
    playbook, inventory = write_project(project, fleet, [server])
    known = known_hosts_for(project / "known_hosts", [server])
    ssh = ("-i", str(inventory), "--known-hosts", str(known))
    root = host_root(server)
    certificates = root / "certificates"
    # Rolled back to before the first apply, the host has no web.pem to test for.
    book = PLAYBOOK.replace("test -s {{ certificates_dir }}/web.pem && ", "")
    playbook.write_text(book)
    assert cli("apply", str(playbook), *ssh).exit_code == 0
    first = snapshot(certificates)
    playbook.write_text(book.replace("localhost]", "localhost, v2.example.test]"))
    assert cli("apply", str(playbook), *ssh).exit_code == 0
    oldest, latest = sorted(p.name for p in (certificates / ".backup").iterdir())

    listed = cli("rollback", str(playbook), *ssh, "--list")
    assert listed.exit_code == 0, listed.stdout + listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == f"{server.name}: 2 backups"
    assert f"      removes  {root / 'nginx' / 'web.conf'}" in lines  # the first apply made it
    assert f"      restores {certificates / 'web.pem'}" in lines  # the second replaced it
    assert lines[-1].startswith(f"  next rollback undoes {latest} (the apply of ")

    once = cli("rollback", str(playbook), *ssh)
    assert once.exit_code == 0, once.stdout + once.stderr
    assert f"  update   file {certificates / 'web.pem'} restore from backup {latest}" in once.stdout
    assert {k: v[:2] for k, v in snapshot(certificates).items() if "/" not in k} == {
        k: v[:2] for k, v in first.items() if "/" not in k
    }
    # The rollback's reload ran on the host, over this sshd.
    assert str(server.port) in (root / "reloaded").read_text().split()

    listed = cli("rollback", str(playbook), *ssh, "--list", "--format", "json")
    report = json.loads(listed.stdout)["hosts"][server.name]
    [_, second, undo] = report["backups"]
    assert second["undone_by"] == undo["name"] and undo["undoes"] == [latest]
    assert report["next"] == oldest

    twice = cli("rollback", str(playbook), *ssh)
    assert twice.exit_code == 0, twice.stdout + twice.stderr
    assert not (certificates / "web.pem").exists()
    assert not (root / "nginx" / "web.conf").exists()

    before = snapshot(root)
    third = cli("rollback", str(playbook), *ssh)
    assert third.exit_code == 1
    assert f"{server.name}: failed: nothing more to roll back" in third.stdout
    assert "Traceback" not in third.stdout + third.stderr
    assert snapshot(root) == before
