"""bench/fleet.py runs end to end on a tiny fleet and writes its table (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLEET = ROOT / "bench" / "fleet.py"

KEY_ROWS = {
    "floor.keygen.sequential",
    "floor.keygen.threads",
    "floor.keygen.processes",
    "floor.keygen",
    "floor.read_parse",
    "apply.fresh",
    "apply.nochange.full",
    "apply.nochange",
    "apply.nochange.api",
    "plan.nochange.full",
    "plan.nochange",
    "plan.onechange",
    "apply.onechange",
}
SHARED_ROWS = {"floor.python", "cli.help", "cli.validate", "floor.write"}


def test_quick_run_writes_markdown_and_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = subprocess.run(
        [
            sys.executable,
            str(FLEET),
            "--hosts",
            "5",
            "--quick",
            "--out",
            str(out),
            "--tmpdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    data = json.loads((out / "fleet-5.json").read_text())
    assert data["hosts"] == 5 and data["quick"] is True
    assert data["keys"] == ["rsa", "ecdsa"]
    assert data["warnings"] == []
    assert data["machine"]["cores"] >= 1 and "commit" in data["machine"]
    rows = {(row["id"], row["key"]): row for row in data["rows"]}
    for key in ("rsa", "ecdsa"):
        for row_id in KEY_ROWS:
            row = rows[(row_id, key)]
            assert row["ok"], row
            assert row["seconds"] >= 0 and row["peak_mb"] > 0 and len(row["runs"]) == 1
        assert rows[("apply.fresh", key)]["floor"] == "floor.keygen"
        assert rows[("apply.nochange", key)]["ratio"] is not None
    for row_id in SHARED_ROWS:
        assert rows[(row_id, None)]["ok"], rows[(row_id, None)]
    assert not any(row_id.startswith("scale.") for row_id, _ in rows)  # --quick skips it
    targets = {target["id"] for target in data["targets"]}
    assert {
        "apply.nochange.ratio.rsa",
        "apply.nochange.per_host.ecdsa",
        "apply.fresh.ratio.rsa",
        "cli.help",
        "cli.validate",
    } <= targets

    markdown = (out / "fleet-5.md").read_text()
    assert markdown.startswith("# provision fleet benchmark: 5 hosts")
    for label in (
        "provision apply, fresh fleet (CLI)",
        "provision apply --full, no change (CLI, every host evaluated)",
        "provision apply, no change (CLI, answered from the converged record)",
        "provision apply, no change (in-process api: load + run)",
        "provision plan, no change (CLI, answered from the converged record)",
        "provision plan, one host's certificate deleted (CLI)",
        "floor: read + parse cer, pem, key of every host",
        "floor: keys + certificates across cores (faster of the two)",
        "provision --help",
        "provision validate (example, 3 hosts)",
        "## Targets",
    ):
        assert label in markdown, label
    assert "| RSA-2048 s |" in markdown and "| ECDSA P-256 s |" in markdown
    # The fleet lives in the temporary folder given, and is cleaned up afterwards.
    assert not list(tmp_path.glob("provision-bench-*"))


def test_compare_two_results(tmp_path: Path) -> None:
    row = {"id": "apply.nochange", "key": "rsa", "seconds": 2.0, "ratio": 4.0, "peak_mb": 60}
    machine = {"commit": "0" * 40, "commit_subject": "old"}
    old = tmp_path / "old.json"
    new = tmp_path / "new.json"
    old.write_text(json.dumps({"machine": machine, "rows": [row]}))
    new.write_text(
        json.dumps(
            {
                "machine": {**machine, "commit_subject": "new"},
                "rows": [{**row, "seconds": 1.0, "ratio": 2.0}],
            }
        )
    )
    result = subprocess.run(
        [sys.executable, str(FLEET), "--compare", str(old), str(new)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "apply.nochange" in result.stdout and "-50%" in result.stdout
