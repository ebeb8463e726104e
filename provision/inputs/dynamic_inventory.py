"""Dynamic inventories: a script run with ``--list``, or the JSON ``ansible-inventory --list``
prints, read by Ansible's documented protocol into the shape of a YAML inventory.

The JSON maps group names to a list of hosts or to ``{hosts: [...], vars: {...}, children:
[...]}``; ``_meta.hostvars`` gives each host's variables (without it, the script is asked once
per host with ``--host NAME``). A script is hostile input as much as a file: it runs with a
bounded time and a bounded output, and whatever it does wrong is one error naming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from provision.errors import InputError, Location
from provision.inputs.yaml_lines import Document

# An inventory of a large cloud account answers in seconds; a minute is a hung API call.
DEFAULT_TIMEOUT = 60.0
TIMEOUT_ENV = "PROVISION_INVENTORY_TIMEOUT"
MAX_OUTPUT_BYTES = 64 * 1024 * 1024
# Without _meta the protocol asks each host in turn: bounded, as each is a process.
MAX_HOST_CALLS = 2_000


def timeout() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def run_script(path: Path, name: str) -> Document:
    """The inventory the executable at ``path`` prints for ``--list`` (and ``--host``)."""
    data = _json_of(path, name, ["--list"])
    if "_meta" not in data:
        hosts = _hosts_of(data, name)
        if len(hosts) > MAX_HOST_CALLS:
            raise InputError(
                Location(name),
                f"the inventory script gives no _meta and {len(hosts)} hosts; more than "
                f"{MAX_HOST_CALLS} --host calls are refused (print _meta.hostvars)",
            )
        data["_meta"] = {"hostvars": {h: _json_of(path, name, ["--host", h]) for h in hosts}}
    return from_json(data, name)


def _json_of(path: Path, name: str, args: list[str]) -> dict[str, Any]:
    what = f"the inventory script, run with {' '.join(args)},"
    out, err, code = run_bounded([str(path.absolute()), *args], name, what)
    if code != 0:
        detail = err.decode("utf-8", "replace").strip().splitlines()
        said = f": {detail[-1][:300]}" if detail else ""
        raise InputError(Location(name), f"{what} failed with exit status {code}{said}")
    try:
        data = json.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(Location(name), f"{what} printed no valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(Location(name), f"{what} printed JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise InputError(Location(name), f"{what} printed JSON that is not an object")
    return data


def run_bounded(argv: list[str], name: str, what: str) -> tuple[bytes, bytes, int]:
    try:
        # Its own session, so that a timeout ends the script and every child it started.
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise InputError(Location(name), f"cannot run the inventory script: {exc}") from None
    assert process.stdout is not None and process.stderr is not None
    out_fd, err_fd = process.stdout.fileno(), process.stderr.fileno()
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    total = 0
    deadline = time.monotonic() + timeout()
    problem = None
    code = -1
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        selector.register(process.stderr, selectors.EVENT_READ)
        while selector.get_map() and problem is None:
            left = deadline - time.monotonic()
            if left <= 0:
                problem = f"{what} did not finish within {timeout():g} seconds"
                break
            for key, _ in selector.select(left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                chunks[key.fd].append(chunk)
                total += len(chunk)
                if total > MAX_OUTPUT_BYTES:
                    problem = f"{what} printed more than {MAX_OUTPUT_BYTES} bytes"
    if problem is None:
        try:
            code = process.wait(max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            problem = f"{what} did not finish within {timeout():g} seconds"
    if problem is not None:
        _kill(process)
        raise InputError(Location(name), problem)
    process.stdout.close()
    process.stderr.close()
    return b"".join(chunks[out_fd]), b"".join(chunks[err_fd]), code


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _hosts_of(data: dict[str, Any], name: str) -> list[str]:
    hosts: dict[str, None] = {}
    for group, body in data.items():
        for host in _group_parts(group, body, name)[0]:
            hosts[host] = None
    return list(hosts)


def _group_parts(group: str, body: Any, name: str) -> tuple[list[str], dict[str, Any], list[str]]:
    """(hosts, vars, children) of one group's JSON, in either of the protocol's two forms."""
    if body is None:
        return [], {}, []
    if isinstance(body, list):
        return [_text(h, group, name) for h in body], {}, []
    if not isinstance(body, dict):
        raise InputError(Location(name), f"group {group!r}: expected a list or an object")
    hosts, variables, children = (
        body.get("hosts") or [],
        body.get("vars") or {},
        (body.get("children") or []),
    )
    if not isinstance(hosts, list) or not isinstance(children, list):
        raise InputError(Location(name), f"group {group!r}: hosts and children must be lists")
    if not isinstance(variables, dict):
        raise InputError(Location(name), f"group {group!r}: vars must be an object")
    return (
        [_text(h, group, name) for h in hosts],
        variables,
        [_text(c, group, name) for c in children],
    )


def _text(value: Any, group: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(Location(name), f"group {group!r}: {value!r} is not a name")
    return value


def is_listing(data: Any) -> bool:
    """Whether parsed JSON/YAML is a ``--list`` listing rather than a YAML inventory."""
    if not isinstance(data, dict):
        return False
    if "_meta" in data:
        return True
    return any(
        isinstance(body, list) or (isinstance(body, dict) and isinstance(body.get("hosts"), list))
        for body in data.values()
    )


def from_json(data: dict[str, Any], name: str) -> Document:
    """A ``--list`` listing as YAML-inventory data (groups with hosts, vars and children)."""
    meta = data.get("_meta") or {}
    hostvars = meta.get("hostvars") or {} if isinstance(meta, dict) else None
    if not isinstance(hostvars, dict):
        raise InputError(Location(name), "_meta.hostvars must be an object of hosts")
    result: dict[str, Any] = {}
    for group, body in data.items():
        if group == "_meta":
            continue
        hosts, variables, children = _group_parts(str(group), body, name)
        entry: dict[str, Any] = {}
        if hosts:
            entry["hosts"] = dict.fromkeys(hosts)
        if variables:
            entry["vars"] = variables
        if children:
            entry["children"] = dict.fromkeys(children)
        result[str(group)] = entry or None
    everyone = result.get("all") or {}
    listed = everyone.setdefault("hosts", {})
    # As Ansible's script plugin: _meta gives variables to the hosts the groups list, and
    # makes no host of its own (a host only in _meta is not in the inventory).
    grouped = set(_hosts_of({g: b for g, b in data.items() if g != "_meta"}, name))
    for host, variables in hostvars.items():
        if not isinstance(variables, dict):
            raise InputError(Location(name), f"_meta.hostvars.{host}: expected an object")
        if str(host) in grouped:
            listed[str(host)] = variables or listed.get(str(host))
    result["all"] = everyone
    return Document(name, result, {})


__all__ = ["from_json", "is_listing", "run_bounded", "run_script", "timeout"]
