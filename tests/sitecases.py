"""The site-rendering cases shared by the golden tests and the real-server tests.

Two cases, each a set of playbooks in a copy of the project:

- ``example``: the example playbook (nginx) as shipped, and the same site for Apache and for
  IIS (with a PKCS#12 output, which IIS needs), on host cm-pub-01;
- ``portal``: tests/golden/inputs/portal.yml, one site with many kinds of binding and
  directory, for nginx, Apache and IIS;
- ``haproxy``: tests/golden/inputs/haproxy.yml, the portal for HAProxy (every directory
  proxied: HAProxy serves no files). Not in ``CASES``, which every server renders;
- ``insensitive``: the portal's nginx and Apache sites with ``case_insensitive_paths: true``
  (IIS always ignores case). Not in ``CASES`` either.

Rendering goes through the public API's plan, so the bytes are exactly what apply writes.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from provision.api import load, run

INPUTS = Path(__file__).parent / "golden" / "inputs"
PFX_PASSWORDS = {"HTTPSCERT_PFX_PASSWORD": "example-pfx", "PORTAL_PFX_PASSWORD": "portal-pfx"}
EXTENSIONS = {"nginx": "conf", "apache": "conf", "iis": "xml"}


@dataclass(frozen=True)
class Run:
    playbook: str  # relative to the project folder, as a person would type it
    inventory: str
    limit: str | None = None


@contextmanager
def inside(folder: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def _example_for(project: Path, server: str) -> str:
    source = project / "playbooks" / "callmanager-https.yml"
    book = yaml.safe_load(source.read_text())
    if server == "nginx":
        return "playbooks/callmanager-https.yml"
    book = copy.deepcopy(book)
    site = book["sites"][0]
    site["server"] = server
    site["config"] = f"{{{{ certificates_dir }}}}/../{server}/default-web-site.{EXTENSIONS[server]}"
    if server == "iis":
        book["certificates"][0]["outputs"].append(
            {
                "file": "httpscert.pfx",
                "format": "pkcs12",
                "password": {"env": "HTTPSCERT_PFX_PASSWORD"},
            }
        )
    name = f"playbooks/callmanager-https-{server}.yml"
    (project / name).write_text(yaml.safe_dump(book, sort_keys=False))
    return name


def prepare(
    project: Path,
    case: str,
    *,
    ports: Mapping[int, int] | None = None,
    addresses: Mapping[str, str] | None = None,
) -> list[Run]:
    """Write the case's playbooks into the project copy; the runs that render it.

    ``ports`` and ``addresses`` move the bindings (a server checking its config binds them).
    """
    if case == "example":
        runs = [
            Run(_example_for(project, server), "inventory/example.yml", "cm-pub-01")
            for server in ("nginx", "apache", "iis")
        ]
    elif case == "portal":
        shutil.copy(INPUTS / "portal.yml", project / "playbooks" / "portal.yml")
        shutil.copy(INPUTS / "portal-inventory.yml", project / "inventory" / "portal.yml")
        (project / "playbooks" / "admin-pfx.pass").write_text("admin-pfx\n")
        runs = [Run("playbooks/portal.yml", "inventory/portal.yml")]
    elif case == "insensitive":
        book = yaml.safe_load((INPUTS / "portal.yml").read_text())
        book["sites"] = [
            {**site, "case_insensitive_paths": True}
            for site in book["sites"]
            if site["server"] in ("nginx", "apache")
        ]
        (project / "playbooks" / "portal.yml").write_text(yaml.safe_dump(book, sort_keys=False))
        shutil.copy(INPUTS / "portal-inventory.yml", project / "inventory" / "portal.yml")
        (project / "playbooks" / "admin-pfx.pass").write_text("admin-pfx\n")
        runs = [Run("playbooks/portal.yml", "inventory/portal.yml")]
    elif case == "haproxy":
        shutil.copy(INPUTS / "haproxy.yml", project / "playbooks" / "haproxy.yml")
        shutil.copy(INPUTS / "portal-inventory.yml", project / "inventory" / "portal.yml")
        runs = [Run("playbooks/haproxy.yml", "inventory/portal.yml")]
    else:
        raise ValueError(case)
    if ports or addresses:
        for item in runs:
            _move_bindings(project / item.playbook, ports or {}, addresses or {})
    return runs


def _move_bindings(path: Path, ports: Mapping[int, int], addresses: Mapping[str, str]) -> None:
    book = yaml.safe_load(path.read_text())
    seen: set[int] = set()
    for site in book["sites"]:
        for binding in site["bindings"]:
            if id(binding) in seen:  # YAML aliases share bindings between sites
                continue
            seen.add(id(binding))
            binding["port"] = ports.get(binding["port"], binding["port"])
            if "address" in binding:
                binding["address"] = addresses.get(binding["address"], binding["address"])
    path.write_text(yaml.safe_dump(book, sort_keys=False))


CASES = ("example", "portal")


def render(project: Path, runs: list[Run]) -> dict[str, bytes]:
    """Every site file the runs would write: absolute path on the host -> bytes."""
    files: dict[str, bytes] = {}
    with inside(project), _passwords():
        for item in runs:
            loaded = load(item.playbook, item.inventory, item.limit)
            plan, _ = run(loaded, apply=False)
            for host in plan.hosts:
                assert host.error is None, host.error
                for change in host.changes:
                    if change.site is not None:
                        assert change.path is not None and change.content is not None
                        files[change.path] = change.content
    return files


@contextmanager
def _passwords() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in PFX_PASSWORDS}
    os.environ.update(PFX_PASSWORDS)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def golden_name(path: str) -> str:
    """``.../nginx/portal.conf`` -> ``nginx/portal.conf``: the server folder and file name."""
    parts = Path(path).parts
    return f"{parts[-2]}/{parts[-1]}"


def apply(project: Path, runs: list[Run]) -> None:
    """Apply the runs for real (certificates and configs land under the project folder)."""
    with inside(project), _passwords():
        for item in runs:
            loaded = load(item.playbook, item.inventory, item.limit)
            _, report = run(loaded, apply=True)
            failures = [f"{h.host}: {h.error}" for h in report.hosts if h.status == "failed"]
            assert not failures, failures
