"""What the reload marker (``layout.RELOAD_MARKER``) says: which sites are owed a reload, and
which reloads cannot run on the host at all.

A site is owed a reload when its files were replaced and the reload did not succeed (the run
died, the command failed, verification found the old certificate served): the next run reloads
it even if nothing else changed. A reload whose command cannot run on the host (the shell's
126 or 127: not executable, not found; PowerShell on a POSIX host) would fail the same way on
every run, so it is not owed as it is: it is kept with its command, and owed again once the
site's reload command is another.

One line per site: its name (owed), or a JSON object ``{"site": ..., "cannot_run": ...}``.
The marker is read from the host, so it is input: a line that is not such an object is a name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# The exit statuses of a POSIX shell for a command it could not run: found but not
# executable (126), not found (127). Every transport runs commands through sh.
CANNOT_RUN = frozenset({126, 127})


@dataclass(frozen=True)
class Marker:
    owed: frozenset[str] = frozenset()
    cannot_run: Mapping[str, str] = field(default_factory=dict)  # site -> its reload command


def parse(content: bytes | None) -> Marker:
    if content is None:
        return Marker()
    owed: set[str] = set()
    cannot_run: dict[str, str] = {}
    for line in content.decode(errors="replace").splitlines():
        entry = _entry(line)
        if entry is None:
            owed.add(line)
        else:
            cannot_run[entry[0]] = entry[1]
    return Marker(frozenset(owed), cannot_run)


def _entry(line: str) -> tuple[str, str] | None:
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) != {"site", "cannot_run"}:
        return None
    site, command = data["site"], data["cannot_run"]
    return (site, command) if isinstance(site, str) and isinstance(command, str) else None


def updated(
    previous: Marker,
    handled: Iterable[str],
    owed: Iterable[str] = (),
    cannot_run: Mapping[str, str] | None = None,
) -> bytes | None:
    """The marker once a run has worked on the sites ``handled``: ``owed`` and ``cannot_run``
    for them, and what ``previous`` said of any other site whose reload could not run (kept
    until a run reloads it). None: nothing is left to say, remove the marker."""
    done = set(handled)
    kept = {site: command for site, command in previous.cannot_run.items() if site not in done}
    kept.update(cannot_run or {})
    lines = list(dict.fromkeys(owed))
    lines += [json.dumps({"site": s, "cannot_run": c}, sort_keys=True) for s, c in kept.items()]
    return "".join(f"{line}\n" for line in lines).encode() if lines else None
