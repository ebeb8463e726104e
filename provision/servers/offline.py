"""`provision render`: what a host's sites would get, written on the controller alone.

No transport is used (a Windows host has none yet), no host file is read and no certificate
output is made: only site configs and their companion files (the IIS PowerShell script),
rendered exactly as a plan would render them, each under ``OUT/HOST/`` at its host path
mirrored into plain names (``C:\\X\\y`` -> ``OUT/HOST/C/X/y``, ``/etc/nginx/x`` ->
``OUT/HOST/etc/nginx/x``). Reviewers read them; a Windows administrator runs the script.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from provision import fsutil
from provision.errors import ProvisionError
from provision.inputs.targets import Target
from provision.servers.render import Renderer
from provision.servers.site import site_context, site_files

CONFIG_MODE = 0o644  # as on the host: configs hold no secret


@dataclass
class Rendered:
    """One host's rendered files: (path on the host, path written here)."""

    host: str
    files: list[tuple[str, Path]] = field(default_factory=list)
    error: str | None = None


def host_files(target: Target, renderer: Renderer, playbook_name: str) -> list[tuple[str, bytes]]:
    """Pure: every site file of a host, by its path on the host."""
    result: list[tuple[str, bytes]] = []
    for site in target.playbook.sites:
        context = site_context(target, site, playbook_name)
        for path, template in site_files(target, site):
            result.append((path, renderer.render(template, context).encode()))
    return result


def mirrored(out: Path, target: Target, host_path: str) -> Path:
    """Where a host's file goes under ``out``: its host folder, then its path's names."""
    name = target.host.name
    if name in ("", ".", "..") or any(ch in name for ch in "/\\\0"):
        raise ProvisionError(f"host name {name!r} cannot name a folder")
    try:
        return out.joinpath(name, *target.paths.parts(host_path))
    except ValueError:
        if host_path.startswith("~"):
            raise ProvisionError(
                f"{host_path} is relative to the login's home, which only the host can tell "
                "(and render reaches no host); give the host an absolute workdir, or use "
                "absolute paths, to render it"
            ) from None
        raise ProvisionError(f"{host_path} is not an absolute path on the host") from None


def render_targets(
    targets: Sequence[Target], renderer: Renderer, playbook_name: str, out: Path
) -> list[Rendered]:
    """Render and write every host's site files; a host that fails does not stop the rest."""
    results = []
    for target in targets:
        rendered = Rendered(target.host.name)
        try:
            files = [
                (path, mirrored(out, target, path), content)
                for path, content in host_files(target, renderer, playbook_name)
            ]
            for path, local, content in files:
                fsutil.write_atomic(str(local), content, CONFIG_MODE)
                rendered.files.append((path, local))
        except ProvisionError as exc:
            rendered.error = exc.message
        results.append(rendered)
    return results
