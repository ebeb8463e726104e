"""Whether an internal authority may issue now, and how long a leaf it issues may live.

An authority outside its validity signs leaves that no client accepts; one that expires
before a leaf would makes that leaf useless from the authority's last day on. Both are
judged here once, for the planner (pure: ``now`` is passed in), the executor, status and lint.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from provision.crypto.build import BACKDATE


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def validity_text(certificate: x509.Certificate) -> str:
    return (
        f"valid from {stamp(certificate.not_valid_before_utc)} "
        f"to {stamp(certificate.not_valid_after_utc)}"
    )


def unusable(name: str, file: str, certificate: x509.Certificate, now: dt.datetime) -> str | None:
    """Why the authority cannot issue at ``now`` (expired, not yet valid), or None."""
    if now > certificate.not_valid_after_utc:
        state = f"expired on {stamp(certificate.not_valid_after_utc)}"
    elif now < certificate.not_valid_before_utc:
        state = f"is not valid until {stamp(certificate.not_valid_before_utc)}"
    else:
        return None
    return (
        f"authority {name!r} ({file}) {state} ({validity_text(certificate)}); it cannot "
        "issue, and no client accepts what it signed: renew it, or rotate to a new one "
        f"(`provision ca rotate PLAYBOOK {name}`)"
    )


def leaf_not_after(
    now: dt.datetime, validity_days: int, issuer: x509.Certificate | None
) -> dt.datetime:
    """The end of a leaf issued at ``now``: its validity, cut at its issuer's end (a leaf
    never outlives the authority that vouches for it)."""
    wanted = now - BACKDATE + dt.timedelta(days=validity_days)
    if issuer is None:
        return wanted
    return min(wanted, issuer.not_valid_after_utc)


def capped(now: dt.datetime, validity_days: int, issuer: x509.Certificate) -> str | None:
    """The plan's words when a leaf issued now is cut at its issuer's end; None when not."""
    wanted = now - BACKDATE + dt.timedelta(days=validity_days)
    end = issuer.not_valid_after_utc
    if wanted <= end:
        return None
    left = max(0, (end - (now - BACKDATE)).days)
    return (
        f"validity capped at the authority's expiry {stamp(end)} ({left} days, not {validity_days})"
    )


def at_issuer_end(leaf: x509.Certificate, issuer: x509.Certificate) -> bool:
    """The leaf ends when its issuer does (it was capped): reissuing cannot lengthen it."""
    slack = dt.timedelta(days=1)
    return abs(leaf.not_valid_after_utc - issuer.not_valid_after_utc) <= slack
