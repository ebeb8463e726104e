#!/usr/bin/env python3
"""Benchmark `provision report` on a generated fleet (issue 20: 2,000 hosts, under 2 s and
under 5 MB).

    python bench/report.py                 # 2,000 hosts
    python bench/report.py --hosts 10000 --repeat 3

The fleet is tests/reportfleet.py's (local hosts, certificates signed directly, every state
the report colours). Three figures:

- document: `provision report --format json` as the user runs it: every host read and
  planned (read-only), start-up included; informational, it is a plan's cost;
- render (in-process): the document -> the HTML page (`report.html.render_html`), median of
  --repeat runs, imports excluded: the figure the target is set for;
- render (CLI): `provision report --from-json FILE --out report.html`, start-up included.

Prints the figures, the page's size and the load average (a shared machine's figures mean
little without it).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from reportfleet import NOW_TEXT, generate  # noqa: E402

TARGET_SECONDS = 2.0
TARGET_MB = 5.0


def provision(folder: Path, *args: str) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one `provision` command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "provision", *args], cwd=folder, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the generated fleet")
    options = parser.parse_args()

    from provision.report.document import loads
    from provision.report.html import render_html

    folder = Path(tempfile.mkdtemp(prefix="provision-report-bench-"))
    try:
        load_start = os.getloadavg()
        started = time.perf_counter()
        generate(folder, options.hosts)
        generated = time.perf_counter() - started
        documented = provision(
            folder, "report", "site.yml", "-i", "inventory.yml", "--now", NOW_TEXT,
            "--format", "json", "--out", "fleet.json",
        )  # fmt: skip
        document = loads((folder / "fleet.json").read_bytes(), "fleet.json")
        times, cpu_times = [], []
        for _ in range(options.repeat):
            started, cpu_started = time.perf_counter(), time.process_time()
            page = render_html(document)
            times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu_started)
        render, render_cpu = statistics.median(times), statistics.median(cpu_times)
        size_mb = len(page.encode()) / 1_000_000
        cli = provision(folder, "report", "--from-json", "fleet.json", "--out", "report.html")
        assert (folder / "report.html").read_text(encoding="utf-8") == page
        load_end = os.getloadavg()
    finally:
        if options.keep:
            print(f"fleet kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)

    verdict = "ok" if render < TARGET_SECONDS and size_mb < TARGET_MB else "OVER TARGET"
    print(f"hosts: {options.hosts} ({len(document.certificates)} certificates)")
    print(f"fleet generated: {generated:.2f} s")
    print(
        f"document (hosts read and planned, CLI): {documented[0]:.2f} s ({documented[1]:.2f} s CPU)"
    )
    print(
        f"render, in-process (median of {options.repeat}): {render:.3f} s ({render_cpu:.3f} s CPU)"
    )
    print(f"render, CLI --from-json (start-up included): {cli[0]:.2f} s ({cli[1]:.2f} s CPU)")
    print(f"page: {size_mb:.2f} MB")
    print(f"target: < {TARGET_SECONDS} s and < {TARGET_MB} MB: {verdict}")
    print(
        "load average: "
        f"{' '.join(f'{v:.2f}' for v in load_start)} at start, "
        f"{' '.join(f'{v:.2f}' for v in load_end)} at end ({os.cpu_count()} cores)"
    )
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
