"""Real OpenSSH servers on loopback ports, one per pretend host, for the SSH transport tests.

Each server has its own host key (made with ssh-keygen in a temporary folder), pid file and
certificates folder; all of them accept one client key, for root and for an optional
unprivileged user with passwordless sudo (the ``become`` tests). Every sshd started here is
killed at teardown.

    def test_x(sshd_fleet):
        servers = sshd_fleet.start(3)
        servers[1].stop()                      # a dead host on a closed port
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import IN_CI, find_tool, require_tool
from ports import free_port

BECOME_USER = "provtest"  # gets passwordless sudo while a become test runs
NO_SUDO_USER = "provtest-nosudo"  # never does
SUDOERS_DIR = Path("/etc/sudoers.d")


def keygen(path: Path, *extra: str, kind: str = "ecdsa") -> Path:
    """A new key pair at ``path`` (and ``path.pub``), no passphrase; ECDSA is fast to make."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", path.name, "-f", str(path), *extra],
        check=True,
        capture_output=True,
    )
    return path


@dataclass
class SshServer:
    """One sshd: a pretend host with its own host key and certificates folder."""

    name: str
    port: int
    folder: Path
    host_key: Path
    certificates: Path
    sshd: str
    host_certificate: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.folder / "sshd_config"

    @property
    def log(self) -> Path:
        return self.folder / "sshd.log"

    @property
    def host_public_key(self) -> str:
        """``TYPE BASE64`` of the host key, as known_hosts holds it."""
        return " ".join(Path(f"{self.host_key}.pub").read_text().split()[:2])

    @property
    def known_hosts_name(self) -> str:
        return f"[127.0.0.1]:{self.port}"

    def fingerprint(self) -> str:
        out = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{self.host_key}.pub"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return out.split()[1]

    def known_hosts_line(self) -> str:
        return f"{self.known_hosts_name} {self.host_public_key}\n"

    def start(self) -> None:
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            [self.sshd, "-D", "-e", "-f", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd {self.name} exited: {self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.recv(4)  # the server's banner: it is accepting connections
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"sshd {self.name} did not listen on {self.port}: {self.log.read_text()}"
        )

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


@dataclass
class SshdFleet:
    """Starts sshd instances on free loopback ports; ``client_key`` logs in as root."""

    folder: Path
    shared: Path  # world-readable: sshd reads authorized_keys as the logging-in user
    sshd: str
    client_key: Path
    servers: list[SshServer] = field(default_factory=list)
    # How sshd serves SFTP: inside sshd, or (a stock sftp-server) started by the login shell.
    sftp_subsystem: str = "internal-sftp"
    log_level: str = "ERROR"  # DEBUG1 logs each channel and exec request (bench counts them)
    extra_config: list[str] = field(default_factory=list)  # more sshd_config lines

    @property
    def authorized_keys(self) -> Path:
        return self.shared / "authorized_keys"

    def start(self, count: int, ca_key: Path | None = None) -> list[SshServer]:
        """``count`` new servers; with ``ca_key`` each also presents a host certificate."""
        started = []
        for _ in range(count):
            index = len(self.servers) + 1
            name = f"host{index}"
            folder = self.folder / name
            folder.mkdir()
            server = SshServer(
                name,
                free_port(),
                folder,
                keygen(folder / "host_key"),
                folder / "certificates",
                self.sshd,
            )
            if ca_key is not None:
                subprocess.run(
                    [
                        "ssh-keygen",
                        "-q",
                        "-s",
                        str(ca_key),
                        "-I",
                        name,
                        "-h",
                        "-n",
                        "127.0.0.1,localhost",
                        "-V",
                        "-5m:+1d",
                        f"{server.host_key}.pub",
                    ],
                    check=True,
                    capture_output=True,
                )
                server.host_certificate = Path(f"{server.host_key}-cert.pub")
            self._write_config(server)
            self.servers.append(server)
            server.start()
            started.append(server)
        return started

    def _write_config(self, server: SshServer) -> None:
        lines = [
            f"Port {server.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {server.host_key}",
            f"PidFile {server.folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "StrictModes no",
            "UsePAM no",
            f"Subsystem sftp {self.sftp_subsystem}",
            f"LogLevel {self.log_level}",
        ]
        if server.host_certificate is not None:
            lines.append(f"HostCertificate {server.host_certificate}")
        lines += self.extra_config
        server.config.write_text("\n".join(lines) + "\n")

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def sshd_fleet(tmp_path: Path) -> Iterator[SshdFleet]:
    sshd = require_tool("sshd")
    require_tool("ssh-keygen")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    shared = Path(tempfile.mkdtemp(prefix="provision-sshd-"))
    shared.chmod(0o755)
    folder = tmp_path / "sshd"
    folder.mkdir()
    client_key = keygen(folder / "client_key")
    fleet = SshdFleet(folder, shared, sshd, client_key)
    fleet.authorized_keys.write_text(Path(f"{client_key}.pub").read_text())
    fleet.authorized_keys.chmod(0o644)
    try:
        yield fleet
    finally:
        fleet.stop_all()
        shutil.rmtree(shared, ignore_errors=True)


def _missing_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def ensure_login_user(name: str, home: Path | None = None) -> str:
    """A local user sshd lets in with the test key (created with useradd when missing, with
    ``home`` as its home if given), whose home exists.

    Users are left in place: user databases are not ours to rewrite. The password field is
    set to ``*`` (no password, yet not "locked", which sshd without PAM would refuse). A user
    can outlive its home (one under a cleaned /var/tmp): sshd would log it in at "/", so a
    missing home is made again.
    """
    if os.geteuid() != 0:
        _missing_or_fail("the become tests create users and sudoers drop-ins: run as root")
    for tool in ("useradd", "usermod", "sudo"):
        if find_tool(tool) is None:
            _missing_or_fail(f"{tool} is not installed (the become tests need it)")
    try:
        pwd.getpwnam(name)
    except KeyError:
        made = subprocess.run(
            [find_tool("useradd") or "useradd", "-m", "-s", "/bin/sh"]
            + (["-d", str(home)] if home else [])
            + [name],
            capture_output=True,
            check=False,
        )
        if made.returncode != 0:
            pwd.getpwnam(name)  # another test process made it meanwhile, or fail here
    entry = pwd.getpwnam(name)
    if not os.path.isdir(entry.pw_dir):
        os.makedirs(entry.pw_dir, mode=0o755)
        os.chown(entry.pw_dir, entry.pw_uid, entry.pw_gid)
    subprocess.run(
        [find_tool("usermod") or "usermod", "-p", "*", name], check=True, capture_output=True
    )
    return name


@pytest.fixture
def become_user() -> Iterator[str]:
    """An unprivileged login user with passwordless sudo, for ``become: true``.

    The sudoers drop-in has a name of its own (parallel test processes each add and remove
    theirs) and is removed at teardown.
    """
    user = ensure_login_user(BECOME_USER)
    drop_in = SUDOERS_DIR / f"provision-tests-{os.getpid()}-{secrets.token_hex(4)}"
    drop_in.write_text(f"{user} ALL=(ALL) NOPASSWD:ALL\n")
    drop_in.chmod(0o440)
    try:
        yield user
    finally:
        drop_in.unlink(missing_ok=True)


@pytest.fixture
def no_sudo_user() -> str:
    """A login user that never gets a sudoers rule."""
    return ensure_login_user(NO_SUDO_USER)
