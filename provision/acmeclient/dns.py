"""DNS-01 by hook: the playbook's commands publish and remove the TXT record on the controller,
and the record must be visible to the resolvers the playbook names before the CA looks.

The query is a plain RFC 1035 TXT lookup over UDP (one question, no recursion tricks): enough
to ask "does this server answer this value yet", without a DNS library for one question.
"""

from __future__ import annotations

import os
import secrets
import socket
import struct
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from provision.errors import ProvisionError
from provision.model.playbook import DnsHook

_TXT = 16
_HOOK_TIMEOUT = 60.0


class DnsHookError(ProvisionError):
    pass


def run_hook(which: str, hook: DnsHook, domain: str, name: str, value: str, cwd: Path) -> None:
    """Run the hook's ``set`` or ``clear`` command with the record in its environment, the
    names lego's exec provider and certbot's manual hooks use too."""
    command = hook.set if which == "set" else hook.clear
    env = dict(os.environ)
    env.update(
        {
            "PROVISION_ACME_DOMAIN": domain,
            "PROVISION_ACME_NAME": name,
            "PROVISION_ACME_VALUE": value,
            "CERTBOT_DOMAIN": domain,
            "CERTBOT_VALIDATION": value,
        }
    )
    try:
        result = subprocess.run(
            command,
            shell=True,
            cwd=cwd,
            env=env,
            capture_output=True,
            timeout=_HOOK_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DnsHookError(
            f"dns_hook {which} for {domain} ran longer than {_HOOK_TIMEOUT:.0f} s"
        ) from None
    if result.returncode != 0:
        # The hook's own words, without the value (a challenge response, not a secret, but
        # noise in a report).
        said = (result.stderr or result.stdout).decode(errors="replace").strip()
        said = " ".join(said.replace(value, "VALUE").split())[:300]
        raise DnsHookError(
            f"dns_hook {which} for {domain} exited with {result.returncode}"
            + (f": {said}" if said else "")
        )


def system_resolvers() -> list[tuple[str, int]]:
    try:
        text = Path("/etc/resolv.conf").read_text(errors="replace")
    except OSError:
        return [("127.0.0.1", 53)]
    found = [
        (line.split()[1], 53)
        for line in text.splitlines()
        if line.startswith("nameserver") and len(line.split()) > 1
    ]
    return found or [("127.0.0.1", 53)]


def parse_resolver(text: str) -> tuple[str, int]:
    """``ADDRESS:PORT``, ``[V6]:PORT`` or an address alone (port 53)."""
    if text.startswith("["):
        address, _, port = text[1:].partition("]:")
        return address, int(port or 53)
    if text.count(":") == 1:
        address, port = text.split(":")
        return address, int(port)
    return text, 53


def wait_visible(
    name: str, value: str, resolvers: Sequence[tuple[str, int]], timeout: float
) -> None:
    """Wait until every resolver answers ``value`` among the TXT records of ``name``."""
    deadline = time.monotonic() + timeout
    waiting = list(resolvers)
    while True:
        waiting = [r for r in waiting if value not in _txt(name, r)]
        if not waiting:
            return
        if time.monotonic() >= deadline:
            where = ", ".join(f"{a}:{p}" for a, p in waiting)
            raise DnsHookError(
                f"the TXT record {name} was not visible at {where} within {timeout:.0f} s "
                "after dns_hook set ran"
            )
        time.sleep(0.5)


def _txt(name: str, resolver: tuple[str, int]) -> list[str]:
    ident = secrets.randbits(16)
    question = b"".join(
        bytes([len(label)]) + label.encode("idna") for label in name.rstrip(".").split(".")
    )
    query = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + b"\0"
    query += struct.pack(">HH", _TXT, 1)
    family = socket.AF_INET6 if ":" in resolver[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.sendto(query, resolver)
            answer, _ = sock.recvfrom(4096)
        except OSError:
            return []
    try:
        return _parse_txt(answer, ident)
    except (IndexError, struct.error):
        return []  # a malformed answer counts as not visible yet


def _parse_txt(answer: bytes, ident: int) -> list[str]:
    got, _flags, questions, answers = struct.unpack(">HHHH", answer[:8])
    if got != ident:
        return []
    offset = 12
    for _ in range(questions):
        offset = _skip_name(answer, offset) + 4
    values = []
    for _ in range(answers):
        offset = _skip_name(answer, offset)
        kind, _cls, _ttl, length = struct.unpack(">HHIH", answer[offset : offset + 10])
        offset += 10
        data = answer[offset : offset + length]
        offset += length
        if kind == _TXT:
            parts, at = [], 0
            while at < len(data):
                size = data[at]
                parts.append(data[at + 1 : at + 1 + size])
                at += 1 + size
            values.append(b"".join(parts).decode(errors="replace"))
    return values


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        size = data[offset]
        if size == 0:
            return offset + 1
        if size & 0xC0 == 0xC0:  # a compression pointer ends the name
            return offset + 2
        offset += 1 + size
