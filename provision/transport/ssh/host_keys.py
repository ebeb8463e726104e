"""SSH host keys: which keys a host may present, and recording the key of a new host.

OpenSSH's rules: keys from ``~/.ssh/known_hosts`` and the run's ``--known-hosts`` file,
``@cert-authority`` lines for host certificates, and ``--accept-new-host-keys`` as
``StrictHostKeyChecking=accept-new`` (a changed key is always refused).
"""

from __future__ import annotations

import base64
import fcntl
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncssh
from asyncssh.public_key import get_default_public_key_algs

from provision.errors import TransportError
from provision.transport.base import ConnectOptions


def user_known_hosts() -> str:
    return os.path.expanduser("~/.ssh/known_hosts")


def known_hosts_name(address: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: ``[host]:port`` for a non-standard port."""
    return address if port == 22 else f"[{address}]:{port}"


@dataclass
class HostKeyPolicy:
    """Which host keys a host may present, and what to do with one nobody has seen yet.

    Trusted keys come from the user's ``~/.ssh/known_hosts`` and the run's ``--known-hosts``
    file. ``accept_new`` is OpenSSH's ``StrictHostKeyChecking=accept-new``: a host with no
    key on record gets its key appended to ``write_to``; a host whose key differs from the
    recorded one is refused all the same.
    """

    address: str
    port: int
    files: tuple[str, ...]
    write_to: str
    accept_new: bool
    known: asyncssh.SSHKnownHosts = field(default_factory=asyncssh.SSHKnownHosts)
    problem: str | None = None  # why the last key was refused, for the error message

    @classmethod
    def load(cls, address: str, port: int, options: ConnectOptions) -> HostKeyPolicy:
        files = [user_known_hosts()]
        if options.known_hosts:
            files.append(os.path.abspath(os.path.expanduser(options.known_hosts)))
        files = list(dict.fromkeys(files))
        policy = cls(address, port, tuple(files), files[-1], options.accept_new_host_keys)
        policy.known = _read_known_hosts(policy.files)
        return policy

    @property
    def name(self) -> str:
        return known_hosts_name(self.address, self.port)

    def _match(self, host: str, addr: str) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
        port = None if self.port == 22 else self.port
        host_keys, ca_keys, *_ = self.known.match(host, addr, port)
        return list(host_keys), list(ca_keys)

    def anything_known(self) -> bool:
        """Whether known_hosts holds a key or a CA for this host (checked before connecting)."""
        host_keys, ca_keys = self._match(self.address, _ip_or_empty(self.address))
        return bool(host_keys or ca_keys)

    def server_host_key_algs(self) -> list[str] | None:
        """For a host nobody knows, ask for a plain key (not a certificate) so it can be recorded.

        ``None`` keeps asyncssh's choice: the known key's type, or certificates when a CA is
        trusted for the host.
        """
        return (
            None
            if self.anything_known()
            else [alg.decode() for alg in get_default_public_key_algs()]
        )

    def validate(self, host: str, addr: str, key: asyncssh.SSHKey) -> bool:
        """Called by asyncssh only for a key known_hosts does not trust."""
        offered = f"{key.get_algorithm()} key {key.get_fingerprint('sha256')}"
        host_keys, _ = self._match(host, addr)
        if host_keys:
            self.problem = self._changed(offered)
            return False
        if not self.accept_new:
            self.problem = (
                f"host key is not known ({offered}); check the fingerprint, "
                f"then accept it with `ssh-keyscan -p {self.port} {self.address} >> "
                f"{self.write_to}` or run with --accept-new-host-keys"
            )
            return False
        try:
            return self._append(host, addr, key, offered)
        except OSError as exc:
            self.problem = f"cannot record the host key of {self.name} in {self.write_to}: {exc}"
            return False

    def validate_ca(self, key: asyncssh.SSHKey) -> bool:
        self.problem = (
            f"the host certificate is signed by a CA that is not trusted for it "
            f"({key.get_algorithm()} {key.get_fingerprint('sha256')}); add a "
            f"`@cert-authority` line to {self.write_to}"
        )
        return False

    def _changed(self, offered: str) -> str:
        return (
            f"HOST KEY CHANGED: the host offered {offered}, but known_hosts "
            f"({', '.join(self.files)}) holds another key; if the host was reinstalled, remove "
            f"the old key with `ssh-keygen -R '{self.name}' -f FILE`, otherwise someone may be "
            "intercepting the connection"
        )

    def _append(self, host: str, addr: str, key: asyncssh.SSHKey, offered: str) -> bool:
        """Append one line to ``write_to``, under a lock, without rewriting the file.

        Hosts connect in parallel (and other runs may too): each appends a whole line with a
        single O_APPEND write while holding an exclusive ``flock``, after re-reading the file
        under the lock so a key recorded meanwhile is neither duplicated nor overridden.
        """
        line = f"{self.name} {key.get_algorithm()} {base64.b64encode(key.public_data).decode()}"
        folder = os.path.dirname(self.write_to)
        if folder and not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(self.write_to, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with open(self.write_to, "rb") as existing_file:
                existing = existing_file.read()
            try:
                now_known = asyncssh.import_known_hosts(existing.decode(errors="replace"))
            except ValueError as exc:
                raise OSError(f"it has an invalid line: {exc}") from None
            port = None if self.port == 22 else self.port
            recorded, *_ = now_known.match(host, addr, port)
            if recorded:
                if key in recorded:
                    return True  # another run recorded this very key meanwhile
                self.problem = self._changed(offered)
                return False
            data = (line + "\n").encode()
            if existing and not existing.endswith(b"\n"):
                data = b"\n" + data
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write ({written} of {len(data)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock
        self.known.load(line)
        return True


def _read_known_hosts(files: Sequence[str]) -> asyncssh.SSHKnownHosts:
    """The files' keys, parsed once for all the hosts of a run (each host used to parse every
    line again): kept while every file is the same (size and times). A key recorded by
    ``--accept-new-host-keys`` changes the file, so the next host reads it anew."""
    stamp = tuple(_stamp(file) for file in files)
    cached = _PARSED.get(tuple(files))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    known = asyncssh.SSHKnownHosts()
    for file in files:
        try:
            with open(file, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise TransportError(f"cannot read known_hosts {file}: {exc.strerror}") from None
        try:
            known.load(text)
        except ValueError as exc:
            raise TransportError(f"known_hosts {file}: {exc}") from None
    _PARSED[tuple(files)] = (stamp, known)
    return known


_PARSED: dict[
    tuple[str, ...], tuple[tuple[tuple[int, int, int] | None, ...], asyncssh.SSHKnownHosts]
] = {}


def _stamp(file: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(file)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns, info.st_ctime_ns


def _ip_or_empty(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return ""
