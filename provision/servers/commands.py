"""The test and reload commands a site runs on its host: the site's own, else its server's
defaults for that kind of host (``WebServer.default_commands``).

The executor runs them; the planner asks which reload a site runs, to tell whether a reload
that could not run on the host (provision/reloads.py) is owed again.
"""

from __future__ import annotations

from provision.inputs.targets import Target
from provision.model.playbook import Site
from provision.servers.registry import server


def site_commands(target: Target, site: Site) -> tuple[str | None, str | None]:
    """(test, reload) for ``site`` on ``target``'s host; None runs nothing."""
    default_test, default_reload = server(site.server).default_commands(
        site, target.site_paths(site), target.paths.family
    )
    return site.test_command or default_test, site.reload_command or default_reload
