"""Ansible host ranges (``web[01:20:2]``, ``db-[a:f]``) and ``host:port`` in inventory names.

A range is ``[begin:end]`` or ``[begin:end:step]``, both ends included. Numeric begins with a
leading zero keep their width (``[01:10]``), so both ends must be written with the same width;
letters run through ASCII letters. A name may hold several ranges: each is expanded in turn.
The number of names is bounded, since an inventory is input a stranger may have written.
"""

from __future__ import annotations

import re
import string

# A fleet of a million hosts is not one a controller plans; a range that big is a typo or
# an attack (``h[0:999999999]``), refused before any list is built.
MAX_HOSTS = 100_000


class RangeError(ValueError):
    """Why a host name's range cannot be expanded, in words for a message."""


def expand(pattern: str) -> list[str]:
    """Every host name ``pattern`` stands for, in order (``pattern`` itself if no range)."""
    names = [pattern]
    while any("[" in name for name in names):
        expanded: list[str] = []
        for name in names:
            expanded.extend(_expand_first(name))
            if len(expanded) > MAX_HOSTS:
                raise RangeError(f"expands to more than {MAX_HOSTS} hosts")
        names = expanded
    return names


def _expand_first(name: str) -> list[str]:
    if "[" not in name:
        return [name]
    head, _, rest = name.partition("[")
    inside, closed, tail = rest.partition("]")
    if not closed:
        raise RangeError("has '[' without a closing ']'")
    bounds = inside.split(":")
    if len(bounds) not in (2, 3):
        raise RangeError(f"range [{inside}] must be begin:end or begin:end:step")
    begin, end = bounds[0] or "0", bounds[1]
    if not end:
        raise RangeError(f"range [{inside}] has no end")
    try:
        step = int(bounds[2]) if len(bounds) == 3 else 1
    except ValueError:
        raise RangeError(f"range [{inside}]: step {bounds[2]!r} is not a number") from None
    if step < 1:
        raise RangeError(f"range [{inside}]: step must be 1 or more")
    width = len(begin) if begin[0] == "0" and len(begin) > 1 else 0
    if width and len(end) != width:
        raise RangeError(f"range [{inside}]: begin and end must have the same width")
    items: list[str]
    if begin in string.ascii_letters and end in string.ascii_letters:
        first, last = string.ascii_letters.index(begin), string.ascii_letters.index(end)
        if first > last:
            raise RangeError(f"range [{inside}]: begin is after end")
        items = list(string.ascii_letters[first : last + 1 : step])
    else:
        try:
            low, high = int(begin), int(end)
        except ValueError:
            raise RangeError(f"range [{inside}] is neither numbers nor letters") from None
        if (high - low) // step + 1 > MAX_HOSTS:
            raise RangeError(f"expands to more than {MAX_HOSTS} hosts")
        items = [str(n).zfill(width) for n in range(low, high + 1, step)]
    return [f"{head}{item}{tail}" for item in items]


_BRACKETED_V6 = re.compile(r"^\[([0-9A-Fa-f:.%\w]*:[0-9A-Fa-f:.%\w]*)\](?::(\d+))?$")
_WITH_PORT = re.compile(r"^(.+):(\d+)$")


def split_port(pattern: str) -> tuple[str, int | None]:
    """``web[1:3]:2222`` -> (``web[1:3]``, 2222); IPv6 addresses keep their colons."""
    v6 = _BRACKETED_V6.match(pattern)
    if v6 and v6.group(1).count(":") >= 2:
        return v6.group(1), int(v6.group(2)) if v6.group(2) else None
    found = _WITH_PORT.match(pattern)
    if found and ":" not in _outside_brackets(found.group(1)):
        port = int(found.group(2))
        if not 1 <= port <= 65535:
            raise RangeError(f"port {port} is not between 1 and 65535")
        return found.group(1), port
    return pattern, None


def _outside_brackets(text: str) -> str:
    return re.sub(r"\[[^\]]*\]", "", text)


__all__ = ["MAX_HOSTS", "RangeError", "expand", "split_port"]
