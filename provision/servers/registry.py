"""Every web server `provision` knows, found among the modules of this package.

A module of `provision.servers` that exports ``SERVER`` (a `WebServer`) is a server; the
others (base, registry, render, site) export none. So a new server is one module and its
templates, and every place that needs the list (validation, the JSON schema, the renderer's
filters) reads it here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from functools import cache

import provision.servers
from provision.servers.base import Filter, WebServer


@cache
def servers() -> Mapping[str, WebServer]:
    """Every server by name, sorted by name (the schema's enum and error messages list them
    in this order)."""
    found: dict[str, WebServer] = {}
    for module in pkgutil.iter_modules(provision.servers.__path__):
        loaded = importlib.import_module(f"{provision.servers.__name__}.{module.name}")
        server = getattr(loaded, "SERVER", None)
        if server is None:
            continue
        if not isinstance(server, WebServer) or server.name != module.name:
            # A packaging mistake, not a user's: say which module, loudly.
            raise TypeError(f"{loaded.__name__}.SERVER must be a WebServer named {module.name!r}")
        found[server.name] = server
    return {name: found[name] for name in sorted(found)}


def names() -> list[str]:
    return list(servers())


def server(name: str) -> WebServer:
    """The server a validated site names (validation refused any other name)."""
    return servers()[name]


@cache
def filters() -> Mapping[str, Filter]:
    """Every server's quoting filters, for the one template environment of a run."""
    result: dict[str, Filter] = {}
    for each in servers().values():
        for name, function in each.filters.items():
            if result.setdefault(name, function) is not function:
                raise TypeError(f"two servers define the template filter {name!r}")
    return result
