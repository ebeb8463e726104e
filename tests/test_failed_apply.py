"""An apply that fails after it wrote says what it wrote (issue 15, item 5).

A host whose certificates and config were replaced before its reload command failed, or
before verification found the server still serving the old certificate, is reported
``changed`` and ``failed`` together, with its changes and the reload it still owes (the site
and the command), in the text recap and in ``--format json``. An apply whose config test
failed put the previous files back: that host is failed and not changed, and leaves no
backup for a rollback to undo. Against a real nginx on loopback (test_verify's ``site``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_servers import nginx, served_leaf
from test_verify import INVENTORY, NAMES, PLAYBOOK, SITE, Verified, settle_quickly, site

__all__ = ["nginx", "site"]  # fixtures, imported to be found

pytestmark = pytest.mark.integration

REFUSED = "echo 'reload refused: no permission' >&2; exit 1"


def backups(site: Verified) -> list[str]:
    return sorted(p.name for p in (site.certificates / ".backup").iterdir())


def test_a_refused_verification_reports_the_changes_and_the_owed_reload(
    site: Verified, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.write(NAMES)
    result, _host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    settle_quickly(monkeypatch)

    # The reload "succeeds" but does nothing: the files are new, nginx serves the old ones.
    site.write([*NAMES, "new.example.test"], reload_command="true")
    result, host = site.apply()
    assert result.exit_code == 1, result.stdout
    assert host["status"] == "failed" and host["changed"] is True
    assert host["error"].startswith("verification failed: ")
    assert {c["resource"] for c in host["changes"]} >= {"certificate web", "file web.pem"}
    assert host["reload_owed"] == [{"site": SITE, "command": "true"}]
    summary = json.loads(result.stdout)["summary"]
    assert summary == {"ok": 0, "changed": 1, "failed": 1, "skipped": 0}
    assert served_leaf(site.port) != site.leaf()

    # The text recap says the same.
    site.write([*NAMES, "new.example.test", "newer.example.test"], reload_command="true")
    text = site.cli("apply", PLAYBOOK, "-i", INVENTORY)
    assert text.exit_code == 1, text.stdout
    lines = text.stdout.splitlines()
    assert lines[0].startswith("web1: changed, failed: verification failed: ")
    assert any(line.startswith("  replace  certificate web ") for line in lines)
    assert any(line.startswith("  update   file web.pem ") for line in lines)
    owed = f"  owed     site {SITE}"
    assert [line for line in lines if line.startswith(owed)] == [
        f"{owed:<45} reload `true`: the next apply runs it"
    ]
    assert lines[-1] == "Recap: ok 0, changed 1, failed 1"


def test_a_failing_reload_reports_the_changes_and_the_owed_reload(site: Verified) -> None:
    site.write(NAMES)
    result, _host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    old = site.leaf()

    # nginx's own config test passes; its reload is refused.
    site.write([*NAMES, "new.example.test"], reload_command=REFUSED)
    text = site.cli("apply", PLAYBOOK, "-i", INVENTORY)
    assert text.exit_code == 1, text.stdout
    lines = text.stdout.splitlines()
    assert lines[0] == (
        f"web1: changed, failed: reload `{REFUSED}` failed (will be retried): "
        "reload refused: no permission"
    )
    assert any(line.startswith("  replace  certificate web ") for line in lines)
    assert f"reload `{REFUSED}`: the next apply runs it" in text.stdout
    assert lines[-1] == "Recap: ok 0, changed 1, failed 1"
    new = site.leaf()
    assert new != old and served_leaf(site.port) == old  # written, not served
    assert (site.certificates / ".provision-reload-pending").read_text() == f"{SITE}\n"

    # JSON, on the next run with the reload still refused: the reload alone is owed now.
    result, host = site.apply()
    assert result.exit_code == 1
    assert host["status"] == "failed" and host["changed"] is False  # nothing more written
    assert host["reload_owed"] == [{"site": SITE, "command": REFUSED}]

    # With the reload command fixed, the owed reload is done and the server serves the new
    # certificate.
    site.write([*NAMES, "new.example.test"])
    result, host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert host["status"] == "changed" and "reload_owed" not in host
    assert served_leaf(site.port) == new


def test_a_refused_config_test_reports_nothing_changed_and_leaves_no_backup(
    site: Verified,
) -> None:
    site.write(NAMES)
    result, _host = site.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    before = backups(site)
    pem = (site.certificates / "web.pem").read_bytes()

    # nginx -t itself fails (its main config is not where the command says).
    site.write([*NAMES, "new.example.test"])
    book = site.project / PLAYBOOK
    missing = Path(site.server.folder) / "missing.conf"
    book.write_text(book.read_text().replace(f"-c {site.server.conf}", f"-c {missing}", 1))
    result, host = site.apply()
    assert result.exit_code == 1, result.stdout
    assert host["status"] == "failed" and host["changed"] is False
    assert host["error"].startswith("config test `")
    assert "previous files restored" in host["error"] and str(missing) in host["error"]
    assert "reload_owed" not in host
    assert json.loads(result.stdout)["summary"]["changed"] == 0
    assert (site.certificates / "web.pem").read_bytes() == pem
    # Nothing changed, so nothing for a rollback to undo: the backup taken was discarded.
    assert backups(site) == before
