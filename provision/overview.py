"""The fleet document (report/document.py) made from the hosts: each certificate as status
reads it, each host's records (its newest apply, a reload it owes) and a read-only plan (drift).

Reads only: the plan is the one `provision plan` makes (never the converged record's answer,
which is about the last run rather than now), and nothing is written to any host.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from provision.apply.backups import read_history
from provision.errors import ProvisionError
from provision.fleet import close_all, plan_and_apply
from provision.inputs.load import Loaded
from provision.inputs.targets import Target
from provision.layout import JOURNAL_FILE
from provision.reloads import parse as parse_marker
from provision.report.document import STAMP, FleetDocument, HostEntry
from provision.status import authority_rows, status_rows


async def _records(target: Target) -> tuple[str | None, bool | None]:
    """The host's newest apply that changed it, and whether it left the host settled."""
    try:
        await target.transport.start()
        history = await read_history(target)
        marker, journal = await target.transport.read_many(
            [target.marker_path, target.paths.join(target.certificates_dir, JOURNAL_FILE)]
        )
    except ProvisionError:
        return None, None  # the plan reports the host's problem
    applies = [b for b in history.backups if b.manifest.operation == "apply"]
    if not applies:
        return None, None
    owed = marker.content is not None and bool(parse_marker(marker.content).owed)
    return applies[-1].time.strftime(STAMP), not owed and journal.content is None


async def _collect(loaded: Loaded, now: dt.datetime) -> FleetDocument:
    try:
        rows = await status_rows(loaded, now)
        records = await asyncio.gather(*(_records(t) for t in loaded.targets))
    except BaseException:
        await close_all(loaded)
        raise
    _, report = await plan_and_apply(loaded, apply=False, now=now)  # closes the hosts
    plans = {h.host: h for h in report.hosts}
    hosts = []
    for target, (last_apply, success) in zip(loaded.targets, records, strict=True):
        host = plans[target.host.name]
        failed = host.status == "failed"
        hosts.append(
            HostEntry(
                host=target.host.name,
                drift=None if failed else host.plan.has_changes,
                changes=None if failed else len(host.plan.changes),
                plan_error=host.error if failed else None,
                last_apply=last_apply,
                last_apply_success=success,
            )
        )
    return FleetDocument(
        generated_at=now.strftime(STAMP),
        certificates=rows,
        authorities=authority_rows(loaded, now),
        hosts=hosts,
    ).summarised()


def fleet_document(loaded: Loaded, now: dt.datetime | None = None) -> FleetDocument:
    """Every selected host read and planned (``now``: the clock days are counted from)."""
    moment = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    return asyncio.run(_collect(loaded, moment))
