"""The fleet document as Prometheus metrics (`status --format prometheus`, `--textfile DIR`),
in prometheus_client's text exposition format (docs/status-json.md lists every metric).

Drawn from the document alone, so a document read back (`--from-json`, another shard's, merged)
gives the same metrics. One registry per call, never the process-wide default one (whose
Python and process collectors would add metrics that are about this command, not the fleet).
Samples follow the document's order, which is sorted: the output is stable for review.
"""

from __future__ import annotations

import datetime as dt
import os

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from provision import fsutil
from provision.report.document import FleetDocument

TEXTFILE_NAME = "provision.prom"  # node_exporter's textfile collector reads *.prom

CERTIFICATE_LABELS = ("host", "certificate", "issuer")


def _seconds(stamp: str) -> float:
    moment = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return moment.timestamp()


def registry_of(document: FleetDocument) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)

    def gauge(name: str, help_text: str, labels: tuple[str, ...]) -> Gauge:
        return Gauge(name, help_text, labels, registry=registry)

    present = gauge(
        "provision_certificate_present",
        "1 when the host holds the certificate and it could be read, else 0.",
        ("host", "certificate"),
    )
    not_after = gauge(
        "provision_certificate_not_after_seconds",
        "The certificate's notAfter, in seconds since the epoch.",
        CERTIFICATE_LABELS,
    )
    # The one name in days (issue 20 asks for it: what people read on a dashboard); promtool
    # check metrics flags its unit, which is expected. Alert on not_after_seconds - time().
    days = gauge(
        "provision_certificate_days_left",
        "Whole days until the certificate expires (negative: expired), from the report's clock.",
        CERTIFICATE_LABELS,
    )
    renew = gauge(
        "provision_certificate_renew_before_seconds",
        "The playbook's renew_before_days, in seconds: apply renews the certificate once "
        "its notAfter is this close.",
        CERTIFICATE_LABELS,
    )
    missing = gauge(
        "provision_certificate_names_missing",
        "How many names of the playbook the certificate does not cover.",
        CERTIFICATE_LABELS,
    )
    drift = gauge(
        "provision_host_drift",
        "1 when a read-only plan has changes for the host, 0 when none; absent when the host "
        "could not be planned.",
        ("host",),
    )
    planned = gauge(
        "provision_host_plan_success",
        "1 when the host could be read and planned, else 0.",
        ("host",),
    )
    last_apply = gauge(
        "provision_last_apply_timestamp_seconds",
        "When the newest apply that changed the host ran (its backup's time).",
        ("host",),
    )
    last_success = gauge(
        "provision_last_apply_success",
        "0 while the host owes a reload or holds a killed run's journal, else 1.",
        ("host",),
    )
    authority = gauge(
        "provision_authority_not_after_seconds",
        "An internal CA's notAfter, in seconds since the epoch.",
        ("authority",),
    )
    for entry in document.certificates:
        present.labels(entry.host, entry.certificate).set(0 if entry.not_after is None else 1)
        if entry.not_after is None or entry.days_left is None:
            continue
        labels = (entry.host, entry.certificate, entry.issuer or "")
        not_after.labels(*labels).set(_seconds(entry.not_after))
        days.labels(*labels).set(entry.days_left)
        renew.labels(*labels).set(entry.renew_before_days * 86400)
        missing.labels(*labels).set(len(entry.names_missing))
    for host in document.hosts:
        planned.labels(host.host).set(0 if host.drift is None else 1)
        if host.drift is not None:
            drift.labels(host.host).set(1 if host.drift else 0)
        if host.last_apply is not None:
            last_apply.labels(host.host).set(_seconds(host.last_apply))
        if host.last_apply_success is not None:
            last_success.labels(host.host).set(1 if host.last_apply_success else 0)
    for ca in document.authorities:
        if ca.not_after is not None:
            authority.labels(ca.authority).set(_seconds(ca.not_after))
    return registry


def exposition(document: FleetDocument) -> str:
    """The metrics in the text exposition format (what a scrape or a .prom file holds)."""
    return generate_latest(registry_of(document)).decode()


def write_textfile(document: FleetDocument, folder: str) -> str:
    """``FOLDER/provision.prom``, replaced atomically: node_exporter never reads half a file
    (the staged file's name does not end in .prom, so the collector skips it too)."""
    path = os.path.join(folder, TEXTFILE_NAME)
    fsutil.write_atomic(path, exposition(document).encode(), 0o644)
    return path
