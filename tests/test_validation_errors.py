"""Every way a playbook can be wrong, through the CLI: one line naming file:line and key,
quoting the value, exit 1, no traceback, and nothing written anywhere.

Each case edits the example playbook in the temporary project (one textual replacement), so
the expected line is found in the broken text itself: the line a person would look at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Cli, Result, snapshot

EXAMPLE = "playbooks/callmanager-https.yml"
BAD = "playbooks/bad.yml"
INVENTORY = "inventory/example.yml"
FOR_HOST = " (for host cm-pub-01)"


@dataclass(frozen=True)
class Case:
    old: str  # text of the example playbook to replace (must occur)
    new: str
    marker: str  # the expected line is the first line of the broken file containing this
    message: str  # everything after "error: playbooks/bad.yml:LINE: "
    # Other lines the message names: placeholder -> text of the first line holding it.
    refs: tuple[tuple[str, str], ...] = ()


CASES = {
    "malformed-yaml": Case(
        "subject: {",
        "subject: @{",
        "subject: @{",
        "malformed YAML: found character '@' that cannot start any token",
    ),
    "unclosed-flow-mapping": Case(
        "validity_days: 825",
        "validity_days: 825\n    extra: {a: 1",
        "renew_before_days:",
        "malformed YAML: expected ',' or '}', but got ':' "
        "(while parsing a flow mapping at line {open})",
        refs=(("open", "extra: {a: 1"),),
    ),
    "unknown-key-suggestion": Case(
        "validity_days: 825",
        "vaildity_days: 825",
        "vaildity_days",
        "certificates[0].vaildity_days: unknown key 'vaildity_days'; "
        "did you mean 'validity_days'?" + FOR_HOST,
    ),
    "unknown-key-beats-missing": Case(
        "  - name: httpscert",
        "  - nome: httpscert",
        "nome: httpscert",
        "certificates[0].nome: unknown key 'nome'; did you mean 'name'?" + FOR_HOST,
    ),
    "unknown-top-level-key": Case(
        "certificates_dir:",
        "certificate_dir:",
        "certificate_dir:",
        "certificate_dir: unknown key 'certificate_dir'; "
        "did you mean 'certificates_dir'?" + FOR_HOST,
    ),
    "unknown-key-lists-valid-keys": Case(
        "key: {type: rsa, size: 2048}",
        "key: {type: rsa, size: 2048, colour: blue}",
        "colour: blue",
        "certificates[0].key.colour: unknown key 'colour' (valid keys: rotate, size, type)"
        + FOR_HOST,
    ),
    "wrong-key-size": Case(
        "size: 2048",
        "size: 1024",
        "size: 1024",
        "certificates[0].key.size: Input should be 2048, 3072 or 4096 (got 1024)" + FOR_HOST,
    ),
    "port-not-a-number": Case(
        "port: 443",
        "port: abc",
        "port: abc",
        "sites[0].bindings[0].port: Input should be a valid integer, unable to parse string "
        "as an integer (got 'abc')" + FOR_HOST,
    ),
    "undefined-template-variable": Case(
        '"{{ host.name }}", "{{ host.address }}"',
        '"{{ nope }}", "{{ host.address }}"',
        "{{ nope }}",
        "certificates[0].names[1]: undefined variable: 'nope' is undefined in '{{ nope }}'"
        + FOR_HOST,
    ),
    "not-a-hostname": Case(
        '"{{ host.address }}", localhost',
        '"not a host!", localhost',
        "not a host!",
        "certificates[0].names[2]: 'not a host!' is neither a hostname nor an IP address"
        + FOR_HOST,
    ),
    "not-a-hostname-block-list": Case(
        'names: ["{{ host.fqdn }}", "{{ host.name }}", "{{ host.address }}", localhost, 127.0.0.1]',
        'names:\n      - "{{ host.fqdn }}"\n      - localhost\n      - "not a host!"\n'
        "      - 127.0.0.1",
        "not a host!",
        "certificates[0].names[2]: 'not a host!' is neither a hostname nor an IP address"
        + FOR_HOST,
    ),
    "duplicate-key": Case(
        "validity_days: 825",
        "validity_days: 825\n    validity_days: 397",
        "validity_days: 397",
        "duplicate key 'validity_days' (first at line {first})",
        refs=(("first", "validity_days: 825"),),
    ),
    "missing-required-field": Case(
        '    config: "{{ certificates_dir }}/../nginx/default-web-site.conf"\n',
        "",
        "- name: Default Web Site",
        "sites[0].config: is required but missing" + FOR_HOST,
    ),
    "unknown-certificate": Case(
        "certificate: httpscert}",
        "certificate: httpscrt}",
        "certificate: httpscrt",
        "sites[0].bindings[0].certificate: 'httpscrt' is not a certificate of this playbook "
        "(defined: httpscert)" + FOR_HOST,
    ),
    "duplicate-certificate-name": Case(
        "sites:",
        "  - name: httpscert\n    source: self-signed\n    key: {type: ecdsa}\n"
        "    names: [other.example.com]\n    validity_days: 90\n"
        "    outputs: [{file: o.pem, format: pem, content: fullchain},"
        " {file: o.key, format: pem, content: key}]\nsites:",
        "  - name: httpscert\n    source: self-signed\n    key: {type: ecdsa}",
        "certificates[1].name: two certificates are named 'httpscert'" + FOR_HOST,
    ),
    "output-escapes-certificates-dir": Case(
        "file: httpscert.pem,",
        "file: ../x.pem,",
        "../x.pem",
        "certificates[0].outputs[1].file: '../x.pem' escapes the certificates directory "
        "(use a relative name)" + FOR_HOST,
    ),
    "output-absolute-path": Case(
        "file: httpscert.pem,",
        "file: /etc/x.pem,",
        "/etc/x.pem",
        "certificates[0].outputs[1].file: '/etc/x.pem' escapes the certificates directory "
        "(use a relative name)" + FOR_HOST,
    ),
    "der-cannot-hold-fullpath": Case(
        "{file: httpscert.cer, format: der, content: root}",
        "{file: httpscert.cer, format: der, content: fullpath}",
        "content: fullpath",
        "certificates[0].outputs[0]: format der cannot hold content 'fullpath' "
        "(allowed: certificate, key, root)" + FOR_HOST,
    ),
    "unknown-key-type": Case(
        "key: {type: rsa, size: 2048}",
        "key: {type: dsa}",
        "type: dsa",
        "certificates[0].key: Input tag 'dsa' found using 'type' does not match any of the "
        "expected tags: 'rsa', 'ecdsa', 'ed25519'" + FOR_HOST,
    ),
}


def write_bad(project: Path, case: Case) -> tuple[int, str]:
    """Write the broken playbook; return the expected line and message."""
    text = (project / EXAMPLE).read_text()
    assert text.count(case.old) == 1, f"the example playbook no longer holds {case.old!r}"
    broken = text.replace(case.old, case.new)
    (project / BAD).write_text(broken)
    message = case.message
    for name, marker in case.refs:
        message = message.replace("{" + name + "}", str(line_of(broken, marker)))
    return line_of(broken, case.marker), message


def line_of(text: str, marker: str) -> int:
    """The 1-based line where ``marker`` (possibly several lines) starts."""
    index = text.index(marker)
    return text.count("\n", 0, index) + 1


def assert_refused(result: Result, line: int, message: str) -> None:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr == f"error: {BAD}:{line}: {message}\n"


@pytest.mark.parametrize("name", list(CASES))
def test_validate_refuses_with_file_line_key_and_value(name: str, project: Path, cli: Cli) -> None:
    line, message = write_bad(project, CASES[name])
    before = snapshot(project)
    result = cli("validate", BAD, "-i", INVENTORY)
    assert_refused(result, line, message)
    assert result.stdout == ""
    assert not (project / ".provision").exists()
    assert snapshot(project) == before


@pytest.mark.parametrize(
    "name",
    [
        "unknown-key-suggestion",
        "not-a-hostname",
        "output-escapes-certificates-dir",
        "malformed-yaml",
    ],
)
@pytest.mark.parametrize("command", ["apply", "plan"])
def test_apply_and_plan_refuse_the_same_input_and_write_nothing(
    name: str, command: str, project: Path, cli: Cli
) -> None:
    line, message = write_bad(project, CASES[name])
    before = snapshot(project)
    assert_refused(cli(command, BAD, "-i", INVENTORY), line, message)
    assert not (project / ".provision").exists()
    assert snapshot(project) == before


VALIDITY = Case(
    "validity_days: 825",
    "validity_days: 30",
    "validity_days: 30",
    "certificates[0].validity_days: validity_days (30) must be longer than renew_before_days "
    "(30), or it would be renewed on every run" + FOR_HOST,
)


def test_validity_not_longer_than_renewal_is_refused(project: Path, cli: Cli) -> None:
    write_bad(project, VALIDITY)
    for command in ("validate", "apply"):
        result = cli(command, BAD, "-i", INVENTORY)
        assert result.exit_code == 1
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith(f"error: {BAD}:")
        assert result.stderr.endswith(
            ": validity_days (30) must be longer than renew_before_days (30), or it would be "
            "renewed on every run (for host cm-pub-01)\n"
        )
        assert not (project / ".provision").exists()


def test_validity_not_longer_than_renewal_points_at_validity_days(project: Path, cli: Cli) -> None:
    line, message = write_bad(project, VALIDITY)
    assert_refused(cli("validate", BAD, "-i", INVENTORY), line, message)


def test_the_unbroken_example_is_valid(project: Path, cli: Cli) -> None:
    """The control: the same replacement machinery with no change validates."""
    (project / BAD).write_text((project / EXAMPLE).read_text())
    result = cli("validate", BAD, "-i", INVENTORY)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{BAD}: valid for 3 hosts\n"
    assert not (project / ".provision").exists()


def test_an_error_for_one_host_only_names_that_host(project: Path, cli: Cli) -> None:
    """A value that is wrong only for cm-sub-02 (its address) names cm-sub-02."""
    inventory = project / INVENTORY
    inventory.write_text(
        inventory.read_text().replace(
            "cm-sub-02: {address: 10.10.0.13", "cm-sub-02: {address: 'not a host!'"
        )
    )
    (project / BAD).write_text((project / EXAMPLE).read_text())
    result = cli("apply", BAD, "-i", INVENTORY)
    line = next(
        i
        for i, text in enumerate((project / BAD).read_text().splitlines(), 1)
        if text.strip().startswith("names:")
    )
    assert_refused(
        result,
        line,
        "certificates[0].names[2]: 'not a host!' is neither a hostname "
        "nor an IP address (for host cm-sub-02)",
    )
    # Validation covers every host before any is touched: not even cm-pub-01 was written.
    assert not (project / ".provision").exists()


def test_a_playbook_that_is_not_a_mapping(project: Path, cli: Cli) -> None:
    (project / BAD).write_text("- just\n- a list\n")
    assert_refused(cli("validate", BAD, "-i", INVENTORY), 1, "a playbook must be a mapping of keys")


def test_a_missing_playbook_file(project: Path, cli: Cli) -> None:
    result = cli("validate", "playbooks/nope.yml", "-i", INVENTORY)
    assert result.exit_code == 1
    assert result.stderr == "error: playbooks/nope.yml: no such file\n"


def test_inventory_errors_name_the_inventory(project: Path, cli: Cli) -> None:
    (project / "inventory" / "bad.yml").write_text(
        "all:\n  children:\n    callmanager:\n      hostz:\n        cm-pub-01: {}\n"
    )
    result = cli("validate", EXAMPLE, "-i", "inventory/bad.yml")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: inventory/bad.yml:4: all.children.callmanager.hostz: "
        "unknown key 'hostz'; did you mean 'hosts'?\n"
    )
    assert not (project / ".provision").exists()
