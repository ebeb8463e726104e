"""`provision report` (one self-contained HTML page, or its JSON), `status --format json` (the
same fleet document, pinned keys), `status --format prometheus` and `--textfile`.

The page is opened in a real headless Chromium: the page's own script reports any error into
the page (window.onerror) and Chromium logs every console message on stderr; both must be
empty. The screenshot is decoded here (a small PNG reader) to prove the chart is drawn, at the
place the page's script measured it.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from conftest import Cli, require_tool
from reportfleet import HOSTILE, NOW_TEXT, generate
from sshd import SshdFleet, sshd_fleet

from provision.report.document import STATES, FleetDocument
from provision.report.html import COLOURS, ROW_LIMIT

__all__ = ["sshd_fleet"]  # the fixture, imported to be found

WINDOW = (1200, 900)

DOCUMENT_KEYS = [
    "schema_version",
    "generated_at",
    "certificates",
    "authorities",
    "hosts",
    "summary",
]
CERTIFICATE_KEYS = [
    "host",
    "certificate",
    "issuer",
    "not_after",
    "days_left",
    "names_missing",
    "problem",
    "key_type",
    "key_size",
    "renew_before_days",
    "state",
]
HOST_KEYS = ["host", "drift", "changes", "plan_error", "last_apply", "last_apply_success"]
AUTHORITY_KEYS = ["authority", "file", "subject", "not_after", "days_left", "problem", "rotation"]
SUMMARY_KEYS = [
    "hosts",
    "certificates",
    "states",
    "hosts_drifted",
    "hosts_unplanned",
    "last_apply_failed",
    "authorities",
    "authorities_with_problems",
    "next_expiry",
]


# --- helpers --------------------------------------------------------------------------------


def read_png(data: bytes, rows: int | None = None) -> tuple[int, int, list[bytes]]:
    """(width, height, the first ``rows`` rows of RGB(A) bytes) of an 8-bit, non-interlaced
    PNG, as Chromium writes its screenshots."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, b""
    width = height = channels = 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and colour in (2, 6), (depth, colour)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            chunks += body
        position += 12 + length
    raw = zlib.decompress(chunks)
    stride = width * channels
    wanted = height if rows is None else min(rows, height)
    previous = bytearray(stride)
    result = []
    for y in range(wanted):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif kind == 4:
                corner = previous[i - channels] if i >= channels else 0
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + best) & 0xFF
        result.append(bytes(line))
        previous = line
    return width, channels, result


def chart_pixels(png: bytes, box: tuple[int, int, int, int]) -> int:
    """How many pixels inside ``box`` (left, top, width, height) have one of the state
    colours: the bars, not the background, the grid or the labels."""
    left, top, width, height = box
    colours = set()
    for colour in COLOURS.values():
        colours.add(bytes.fromhex(colour[1:]))
    _, channels, rows = read_png(png, rows=top + height)
    count = 0
    for line in rows[top : top + height]:
        for x in range(left, min(left + width, len(line) // channels)):
            pixel = line[x * channels : x * channels + 3]
            if any(max(abs(a - b) for a, b in zip(pixel, c, strict=True)) <= 8 for c in colours):
                count += 1
    return count


def open_in_chromium(page: Path, scratch: Path) -> tuple[str, bytes]:
    """The DOM after the page's script ran, and a screenshot; fails on any console message."""
    browser = require_tool("chromium")
    common = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--force-device-scale-factor=1",
        f"--user-data-dir={scratch / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    url = page.resolve().as_uri()
    dom = subprocess.run(
        [*common, "--dump-dom", url], capture_output=True, text=True, timeout=300, check=False
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = scratch / "screenshot.png"
    taken = subprocess.run(
        [*common, f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    for log in (dom.stderr, taken.stderr):
        console = [line for line in log.splitlines() if ":CONSOLE" in line]
        assert console == [], console  # errors, CSP violations, anything the page logged
    return dom.stdout, shot.read_bytes()


def check_page(page: Path, scratch: Path, document: FleetDocument) -> str:
    dom, png = open_in_chromium(page, scratch)
    assert re.search(r'<div id="errors"></div>', dom), dom[:2000]
    ready = re.search(r'data-ready="(\d+)"', dom)
    assert ready, "the page's script did not run to its end"
    assert int(ready.group(1)) == len(document.certificates)
    body = dom.split('<table id="certificates">', 1)[1].split("</table>", 1)[0]
    assert body.count("<tr data-state=") == len(document.certificates)
    box = re.search(r'data-chart-box="(\d+),(\d+),(\d+),(\d+)"', dom)
    assert box, dom[:2000]
    left, top, width, height = (int(v) for v in box.groups())
    assert width > 0 and height > 0 and top + height <= WINDOW[1]
    drawn = chart_pixels(png, (left, top, width, height))
    assert drawn > 200, drawn
    return dom


def cli_json(cli: Cli, *args: str) -> dict[str, object]:
    result = cli(*args)
    assert result.exit_code in (0, 1), result.stdout + result.stderr
    document: dict[str, object] = json.loads(result.stdout)
    return document


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Cli]:
    """Three hosts, one of them named <script>...: it alone applied, so it alone has an apply
    on record and no drift."""
    folder = tmp_path / "small"
    generate(folder, 3, hostile=True)
    cli = Cli(folder)
    applied = cli("apply", "site.yml", "-i", "inventory.yml", "--limit", "!web-*")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    return folder, cli


# --- the page -------------------------------------------------------------------------------


def test_three_hosts_in_chromium(small: tuple[Path, Cli], tmp_path: Path) -> None:
    folder, cli = small
    result = cli("report", "site.yml", "-i", "inventory.yml", "--now", NOW_TEXT, "--out", "r.html")
    assert result.exit_code == 0, result.stdout + result.stderr
    html = (folder / "r.html").read_text(encoding="utf-8")
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 1  # the page's own, and no other
    assert not re.search(r"(src|href)=\"?(https?:)?//", html)  # nothing fetched
    document = FleetDocument.model_validate(
        cli_json(
            cli, "report", "site.yml", "-i", "inventory.yml", "--now", NOW_TEXT, "--format", "json"
        )
    )
    assert [c.state for c in document.certificates] == ["renew", "names", "ok"]
    hosts = {h.host: h for h in document.hosts}
    assert hosts[HOSTILE].drift is False and hosts[HOSTILE].last_apply is not None
    assert hosts[HOSTILE].last_apply_success is True
    assert hosts["web-00000"].drift is True and hosts["web-00000"].last_apply is None
    dom = check_page(folder / "r.html", tmp_path, document)
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in dom  # shown as text
    assert "<script>alert(1)" not in dom
    # One row per certificate in the timeline too, each with its own label.
    assert dom.count("web-00000 / site") >= 1 and dom.count("&lt;script&gt;alert(1)") >= 2


def test_two_thousand_hosts_in_chromium(tmp_path: Path) -> None:
    folder = tmp_path / "big"
    generate(folder, 2000)
    cli = Cli(folder)
    made = cli(
        "report", "site.yml", "-i", "inventory.yml", "--now", NOW_TEXT, "--format", "json",
        "--out", "fleet.json",
    )  # fmt: skip
    assert made.exit_code == 0, made.stdout + made.stderr
    result = cli("report", "--from-json", "fleet.json", "--out", "r.html")
    assert result.exit_code == 0, result.stdout + result.stderr
    document = FleetDocument.model_validate_json((folder / "fleet.json").read_text())
    assert len(document.certificates) == 2000 > ROW_LIMIT
    assert document.summary is not None
    assert document.summary.states == {
        "missing": 100,
        "expired": 100,
        "renew": 200,
        "names": 100,
        "ok": 1500,
    }
    page = folder / "r.html"
    assert page.stat().st_size < 5_000_000
    html = page.read_text(encoding="utf-8")
    assert "Certificates expiring per " in html  # aggregated, not 2,000 chart rows
    check_page(page, tmp_path, document)


# --- the document ---------------------------------------------------------------------------


def test_status_json_keys_are_pinned(small: tuple[Path, Cli]) -> None:
    _, cli = small
    data = cli_json(
        cli, "status", "site.yml", "-i", "inventory.yml", "--format", "json", "--now", NOW_TEXT
    )
    assert list(data) == DOCUMENT_KEYS
    assert data["schema_version"] == 1
    assert data["generated_at"] == NOW_TEXT
    certificates = data["certificates"]
    assert isinstance(certificates, list) and len(certificates) == 3
    for entry in certificates:
        assert list(entry) == CERTIFICATE_KEYS
        assert entry["state"] in STATES
    hosts = data["hosts"]
    assert isinstance(hosts, list) and [list(h) for h in hosts] == [HOST_KEYS] * 3
    summary = data["summary"]
    assert isinstance(summary, dict) and list(summary) == SUMMARY_KEYS
    assert list(summary["states"]) == list(STATES)
    report = cli_json(
        cli, "report", "site.yml", "-i", "inventory.yml", "--format", "json", "--now", NOW_TEXT
    )
    assert report == data  # one document for both commands


def test_authority_keys_are_pinned(project: Path, cli: Cli) -> None:
    result = cli(
        "status", "playbooks/callmanager-https-ca.yml", "-i", "inventory/example.yml",
        "--format", "json", env={"PFX_PASSWORD": "report test"},
    )  # fmt: skip
    assert result.exit_code == 1, result.stdout + result.stderr  # nothing applied yet
    authorities = json.loads(result.stdout)["authorities"]
    assert [a["authority"] for a in authorities] == ["voice-root"]
    for entry in authorities:
        assert list(entry) == AUTHORITY_KEYS


def test_from_json_round_trip_and_bad_documents(small: tuple[Path, Cli]) -> None:
    folder, cli = small
    first = cli("status", "site.yml", "-i", "inventory.yml", "--format", "json", "--now", NOW_TEXT)
    (folder / "doc.json").write_text(first.stdout)
    again = cli("status", "--from-json", "doc.json", "--format", "json")
    assert again.stdout == first.stdout and again.exit_code == first.exit_code == 1
    table = cli("status", "--from-json", "doc.json")
    assert table.exit_code == 1  # web-00001 misses a name
    lines = [line.split() for line in table.stdout.splitlines() if line.strip()]
    assert lines[0] == ["host", "certificate", "issuer", "expires", "names"]
    assert [line[0] for line in lines[1:]] == [
        "web-00000",
        "web-00001",
        "<script>alert(1)</script>",
    ]
    page1 = cli("report", "--from-json", "doc.json")
    page2 = cli("report", "--from-json", "doc.json")
    assert page1.exit_code == 0 and page1.stdout == page2.stdout  # deterministic bytes
    data = json.loads(first.stdout)
    for change, words in (
        ({"schema_version": 2}, "schema_version 2"),
        ({"certificates": [{"host": 1}]}, "certificates.0"),
        ({"extra": True}, "extra"),
    ):
        (folder / "bad.json").write_text(json.dumps({**data, **change}))
        bad = cli("report", "--from-json", "bad.json")
        assert bad.exit_code == 1 and bad.stdout == ""
        assert bad.stderr.startswith("error: bad.json: ") and words in bad.stderr, bad.stderr
        assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    late = cli("status", "site.yml", "-i", "inventory.yml", "--now", "next tuesday")
    assert late.exit_code == 1 and late.stderr.startswith("error: --now 'next tuesday' is not")
    mixed = cli("report", "site.yml", "--from-json", "doc.json")
    assert mixed.exit_code == 1 and "--from-json" in mixed.stderr


# --- Prometheus -----------------------------------------------------------------------------


def test_prometheus_equals_status_json(small: tuple[Path, Cli], tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    folder, cli = small
    args = ("status", "site.yml", "-i", "inventory.yml", "--now", NOW_TEXT)
    data = cli_json(cli, *args, "--format", "json")
    metrics = cli(*args, "--format", "prometheus")
    assert metrics.exit_code == 1  # the same health as the table: a name is missing
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(metrics.stdout):
        assert family.type == "gauge"
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    certificates = data["certificates"]
    assert isinstance(certificates, list)
    import datetime as dt

    for entry in certificates:
        labels = {
            "host": entry["host"],
            "certificate": entry["certificate"],
            "issuer": entry["issuer"],
        }
        moment = dt.datetime.strptime(entry["not_after"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.UTC
        )
        assert value("provision_certificate_not_after_seconds", **labels) == moment.timestamp()
        assert value("provision_certificate_days_left", **labels) == entry["days_left"]
        assert value("provision_certificate_names_missing", **labels) == len(entry["names_missing"])
        assert value("provision_certificate_present", host=entry["host"], certificate="site") == 1
    hosts = data["hosts"]
    assert isinstance(hosts, list)
    for host in hosts:
        assert value("provision_host_drift", host=host["host"]) == (1 if host["drift"] else 0)
        if host["last_apply"] is None:
            assert ("provision_last_apply_success", (("host", host["host"]),)) not in samples
            continue
        moment = dt.datetime.strptime(host["last_apply"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.UTC
        )
        assert (
            value("provision_last_apply_timestamp_seconds", host=host["host"]) == moment.timestamp()
        )
        assert value("provision_last_apply_success", host=host["host"]) == 1
    assert (
        value(
            "provision_certificate_names_missing",
            host="web-00001",
            certificate="site",
            issuer="CN=web-00001.example.com",
        )
        == 1
    )

    promtool = require_tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=metrics.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    # Parsed without error; its one lint finding is the unit of the days_left.
    expected = 'provision_certificate_days_left use base unit "seconds" instead of "days"'
    assert checked.stderr.splitlines() == [expected], checked.stderr
    assert checked.returncode == 3, checked.stdout + checked.stderr  # 3: lint only, 1: invalid

    textfiles = tmp_path / "textfile"
    written = cli(*args, "--textfile", str(textfiles))
    assert written.stdout == ""
    assert sorted(p.name for p in textfiles.iterdir()) == ["provision.prom"]  # no leftover
    assert (textfiles / "provision.prom").read_text() == metrics.stdout
    from_json = folder / "doc.json"
    from_json.write_text(json.dumps(data))
    again = cli("status", "--from-json", str(from_json), "--format", "prometheus")
    assert again.stdout == metrics.stdout


def test_alert_rules_check() -> None:
    promtool = require_tool("promtool")
    rules = Path(__file__).resolve().parent.parent / "docs" / "alerts" / "provision.rules.yml"
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    names = set(re.findall(r"\bprovision_[a-z_]+", rules.read_text()))
    from provision.report.metrics import registry_of

    document = FleetDocument(generated_at=NOW_TEXT)
    known = {family.name for family in registry_of(document).collect()}
    assert names <= known, names - known  # every metric an alert uses is one we publish


# --- over SSH -------------------------------------------------------------------------------


@pytest.mark.integration
def test_document_over_ssh(
    sshd_fleet: SshdFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over SSH the hosts are read, their records read and planned on the same connections,
    which are closed once (each step on a connection another step closed would fail)."""
    from test_ssh import apply as ssh_apply
    from test_ssh import known_hosts_for, write_project

    from provision.api import load
    from provision.overview import fleet_document
    from provision.transport.factory import ConnectOptions

    require_tool("ssh-keygen")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    servers = sshd_fleet.start(2)
    playbook, inventory = write_project(tmp_path / "project", sshd_fleet, servers)
    known = known_hosts_for(tmp_path / "known_hosts", servers)
    applied = ssh_apply(playbook, inventory, known_hosts=str(known))
    assert {h.status for h in applied.values()} == {"changed"}
    loaded = load(playbook, inventory, connect=ConnectOptions(known_hosts=str(known)))
    document = fleet_document(loaded)
    assert [c.state for c in document.certificates] == ["ok", "ok"], document
    assert all(c.key_type == "ecdsa" and c.key_size == 256 for c in document.certificates)
    for host in document.hosts:
        assert host.drift is False and host.changes == 0, host
        assert host.last_apply is not None and host.last_apply_success is True
