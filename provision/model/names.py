"""The names a certificate covers: DNS names (wildcards allowed leftmost) and IP addresses."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_hostname(name: str) -> bool:
    """RFC 1123 host names, with a wildcard allowed as the whole leftmost label."""
    text = name[:-1] if name.endswith(".") else name
    if not text or len(text) > 253:
        return False
    labels = text.split(".")
    if labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    return all(_LABEL.match(label) for label in labels)


def check_name(value: str) -> str:
    if is_ip(value):
        address = ipaddress.ip_address(value)
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            raise ValueError("is a scoped IPv6 address; a certificate cannot name the %scope")
        return str(address)
    if is_hostname(value):
        return value.lower().rstrip(".")
    raise ValueError("is neither a hostname nor an IP address")


CertificateName = Annotated[str, AfterValidator(check_name)]
