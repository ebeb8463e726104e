"""Regressions for what an independent review of planning, rendering and loading found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import Cli, run_openssl, snapshot

INVENTORY = "inventory/example.yml"
PLAYBOOK = "playbooks/review.yml"


def _book(project: Path, edit: object) -> dict[str, object]:
    book = yaml.safe_load((project / "playbooks/callmanager-https.yml").read_text())
    book["certificates"][0]["key"] = {"type": "ecdsa"}
    edit(book)  # type: ignore[operator]
    (project / PLAYBOOK).write_text(yaml.safe_dump(book, sort_keys=False))
    return book


def _refused(cli: Cli, project: Path, *fragments: str) -> None:
    before = snapshot(project)
    result = cli("apply", PLAYBOOK, "-i", INVENTORY)
    assert result.exit_code == 1, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in result.stdout + result.stderr
    assert snapshot(project) == before


def test_a_binding_address_cannot_inject_directives(project: Path, cli: Cli) -> None:
    def edit(book: dict) -> None:  # type: ignore[type-arg]
        book["sites"][0]["bindings"][0]["address"] = "127.0.0.1:8443 ssl; root /; } server {"

    _book(project, edit)
    _refused(cli, project, "sites[0].bindings[0].address", "is not an IP address or *")


def test_a_scoped_ipv6_name_is_refused_not_reissued_forever(project: Path, cli: Cli) -> None:
    def edit(book: dict) -> None:  # type: ignore[type-arg]
        book["certificates"][0]["names"].append("fe80::1%eth0")

    _book(project, edit)
    _refused(cli, project, "is a scoped IPv6 address")


def test_an_inline_password_is_never_quoted_nor_templated(project: Path, cli: Cli) -> None:
    def edit(book: dict) -> None:  # type: ignore[type-arg]
        book["certificates"][0]["outputs"].append(
            {"file": "h.pfx", "format": "pkcs12", "password": "S3cr{{et-pw"}
        )

    _book(project, edit)
    result = cli("apply", PLAYBOOK, "-i", INVENTORY)
    assert result.exit_code == 0, result.stderr
    assert "S3cr" not in result.stdout + result.stderr
    pfx = project / ".provision/fleet/cm-pub-01/certificates/h.pfx"
    run_openssl("pkcs12", "-in", str(pfx), "-passin", "pass:S3cr{{et-pw", "-info", "-noout")


def _pfx_book(project: Path, **pfx: object) -> None:
    def edit(book: dict) -> None:  # type: ignore[type-arg]
        book["certificates"][0]["outputs"].append(
            {"file": "h.pfx", "format": "pkcs12", "password": {"env": "PFX"}, **pfx}
        )

    _book(project, edit)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"profile": "legacy"}, {"profile": "modern"}),
        ({"friendly_name": "old"}, {"friendly_name": "new"}),
    ],
)
def test_a_pfx_profile_or_friendly_name_change_is_applied(
    project: Path, cli: Cli, first: dict[str, str], second: dict[str, str]
) -> None:
    env = {"PFX": "pw"}
    _pfx_book(project, **first)
    assert cli("apply", PLAYBOOK, "-i", INVENTORY, env=env).exit_code == 0
    _pfx_book(project, **second)
    plan = json.loads(cli("plan", PLAYBOOK, "-i", INVENTORY, "--format", "json", env=env).stdout)
    changes = plan["hosts"]["cm-pub-01"]["changes"]
    assert [(c["resource"], c["action"]) for c in changes] == [("file h.pfx", "update")]
    assert cli("apply", PLAYBOOK, "-i", INVENTORY, env=env).exit_code == 0
    again = cli("plan", PLAYBOOK, "-i", INVENTORY, "--detailed-exitcode", env=env)
    assert again.exit_code == 0, again.stdout


def test_a_mistyped_pfx_password_does_not_rekey_when_the_pfx_alone_holds_the_key(
    project: Path, cli: Cli
) -> None:
    def edit(book: dict) -> None:  # type: ignore[type-arg]
        book["certificates"][0]["outputs"] = [
            {"file": "httpscert.cer", "format": "der", "content": "root"},
            {"file": "httpscert.pfx", "format": "pkcs12", "password": {"env": "PFX"}},
        ]
        book["sites"] = []

    _book(project, edit)
    assert cli("apply", PLAYBOOK, "-i", INVENTORY, env={"PFX": "right"}).exit_code == 0
    before = snapshot(project)
    result = cli("apply", PLAYBOOK, "-i", INVENTORY, env={"PFX": "wrong"})
    assert result.exit_code == 1
    assert "check the output's password (nothing was regenerated)" in result.stdout
    (project / "playbooks/review.retry").unlink()  # the one write a failed run makes
    assert snapshot(project) == before


def test_a_missing_template_file_fails_the_host_in_one_line(project: Path, cli: Cli) -> None:
    def edit(book: dict) -> None:  # type: ignore[type-arg]
        book["sites"][0]["template"] = str(project / "no-such-template.j2")

    _book(project, edit)
    result = cli("plan", PLAYBOOK, "-i", INVENTORY)
    assert result.exit_code == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "no-such-template.j2: No such file or directory" in result.stdout
