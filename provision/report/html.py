"""The fleet document as one self-contained HTML page (`provision report --out report.html`).

Everything is inline: styles, the timeline (SVG drawn here, on the controller) and a small script
that only sorts and filters the table; a Content-Security-Policy forbids the page every fetch.
Host names, subjects and problems come from hosts and are untrusted: the template is rendered
with autoescaping on, and nothing is marked safe. Output depends on the document alone (its
``generated_at`` is the page's clock), so the same document gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from provision.report.document import STATES, CertificateEntry, FleetDocument

TEMPLATES = Path(__file__).parent / "templates"
# Above this many certificates the timeline counts them per week (or per several weeks)
# instead of drawing one row per certificate: 10,000 rows would be a wall, not a chart.
ROW_LIMIT = 200
MAX_BARS = 160  # the aggregated timeline's bins are widened to stay at most this many

COLOURS = {
    "missing": "#7f7f7f",
    "expired": "#c62828",
    "names": "#8e24aa",
    "renew": "#ef8f00",
    "ok": "#2e7d32",
}
LABELS = {
    "missing": "missing",
    "expired": "expired",
    "names": "names missing",
    "renew": "in renewal window",
    "ok": "fine",
}

WIDTH = 960
LEFT = 230  # room for "host / certificate" labels
RIGHT = 40
TOP = 24
ROW = 14
BARS_HEIGHT = 220


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Mark:
    """One certificate's row: a bar from now to its expiry (or back to it, once expired)."""

    y: float
    label: str
    x0: float
    x1: float
    colour: str
    title: str


@dataclass(frozen=True)
class Segment:
    """One state's part of one bin of the aggregated timeline."""

    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Chart:
    mode: str  # rows | bins
    width: int
    height: int
    ticks: list[Tick]
    now_x: float
    marks: list[Mark]
    segments: list[Segment]
    undated: int  # certificates without a date (missing), counted beside the chart
    caption: str


class _Scale:
    def __init__(self, start: dt.datetime, end: dt.datetime) -> None:
        self.start = start
        self.span = max((end - start).total_seconds(), 86400.0)

    def x(self, moment: dt.datetime) -> float:
        fraction = (moment - self.start).total_seconds() / self.span
        return round(LEFT + fraction * (WIDTH - LEFT - RIGHT), 1)

    def ticks(self, count: int = 6) -> list[Tick]:
        result = []
        for index in range(count + 1):
            moment = self.start + dt.timedelta(seconds=self.span * index / count)
            result.append(Tick(self.x(moment), moment.strftime("%Y-%m-%d")))
        return result


def _range(now: dt.datetime, dates: list[dt.datetime]) -> tuple[dt.datetime, dt.datetime]:
    start = min([now, *dates]) - dt.timedelta(days=7)
    end = max([now, *dates]) + dt.timedelta(days=7)
    return start, end


def _title(entry: CertificateEntry) -> str:
    when = entry.not_after or entry.problem or "missing"
    return f"{entry.host} / {entry.certificate}: {when} ({LABELS[entry.state]})"


def chart_of(document: FleetDocument) -> Chart:
    now = _parse(document.generated_at)
    dated = [(c, _parse(c.not_after)) for c in document.certificates if c.not_after is not None]
    undated = len(document.certificates) - len(dated)
    scale = _Scale(*_range(now, [d for _, d in dated]))
    if len(document.certificates) <= ROW_LIMIT:
        marks = []
        for index, entry in enumerate(document.certificates):
            y = TOP + index * ROW
            if entry.not_after is None:
                x0 = x1 = float(LEFT)
            else:
                ends = sorted((scale.x(now), scale.x(_parse(entry.not_after))))
                x0, x1 = ends[0], max(ends[1], ends[0] + 2)
            label = f"{entry.host} / {entry.certificate}"
            marks.append(Mark(y, label[:38], x0, x1, COLOURS[entry.state], _title(entry)))
        height = TOP + max(len(marks), 1) * ROW + 24
        caption = "Each certificate's time left, from now to its expiry"
        return Chart(
            "rows", WIDTH, height, scale.ticks(), scale.x(now), marks, [], undated, caption
        )
    return _bins(document, now, dated, undated, scale)


def _bins(
    document: FleetDocument,
    now: dt.datetime,
    dated: list[tuple[CertificateEntry, dt.datetime]],
    undated: int,
    scale: _Scale,
) -> Chart:
    weeks = max(1, math.ceil(scale.span / (7 * 86400) / MAX_BARS))
    width_seconds = weeks * 7 * 86400
    counts: dict[int, dict[str, int]] = {}
    for entry, moment in dated:
        index = int((moment - scale.start).total_seconds() // width_seconds)
        bucket = counts.setdefault(index, {})
        bucket[entry.state] = bucket.get(entry.state, 0) + 1
    tallest = max((sum(b.values()) for b in counts.values()), default=1)
    bin_width = (WIDTH - LEFT - RIGHT) * width_seconds / scale.span
    segments = []
    for index in sorted(counts):
        x = round(LEFT + index * bin_width, 1)
        start = scale.start + dt.timedelta(seconds=index * width_seconds)
        base = float(TOP + BARS_HEIGHT)
        for state in reversed(STATES):  # fine at the bottom, the worst on top
            count = counts[index].get(state, 0)
            if not count:
                continue
            height = round(count / tallest * BARS_HEIGHT, 1)
            base = round(base - height, 1)
            title = f"{LABELS[state]}: {count} expiring in the week{'s' if weeks > 1 else ''} "
            title += f"from {start:%Y-%m-%d}"
            segments.append(
                Segment(x, base, max(round(bin_width - 1, 1), 1.0), height, COLOURS[state], title)
            )
    period = "week" if weeks == 1 else f"{weeks} weeks"
    caption = f"Certificates expiring per {period} (tallest bar: {tallest})"
    height = TOP + BARS_HEIGHT + 24
    return Chart("bins", WIDTH, height, scale.ticks(), scale.x(now), [], segments, undated, caption)


def _environment() -> Environment:
    # autoescape=True for every template, whatever its name: the page holds host input.
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_html(document: FleetDocument, title: str = "provision: fleet certificates") -> str:
    document = document.summarised()
    template = _environment().get_template("report.html.j2")
    hosts = {h.host: h for h in document.hosts}
    return template.render(
        title=title,
        document=document,
        summary=document.summary,
        chart=chart_of(document),
        hosts=hosts,
        states=STATES,
        colours=COLOURS,
        labels=LABELS,
    )
