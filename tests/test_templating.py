"""Per-host Jinja2: lazy host variables that are templates, native types, strict, sandboxed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import Cli

from provision.inputs.expressions import HostVariables, HostView, TemplateFailure

VIEW = HostView("cm-pub-01", "10.10.0.11", "cm-pub-01.voice.example.com", ("callmanager",))


def evaluate(value: Any, **variables: Any) -> Any:
    return HostVariables(variables, VIEW).evaluate(value, ("x",))


def failure(value: Any, **variables: Any) -> str:
    with pytest.raises(TemplateFailure) as caught:
        evaluate(value, **variables)
    return caught.value.problem


# --- host variables that are themselves templates --------------------------------------------


def test_a_host_variable_that_is_a_template() -> None:
    assert (
        evaluate("{{ certificates_dir }}/x.pem", certificates_dir="fleet/{{ host.name }}")
        == "fleet/cm-pub-01/x.pem"
    )


def test_variables_chain() -> None:
    variables = {"a": "{{ b }}-a", "b": "{{ c }}-b", "c": "{{ host.address }}"}
    assert evaluate("{{ a }}", **variables) == "10.10.0.11-b-a"


def test_host_view() -> None:
    assert (
        evaluate("{{ host.name }} {{ host.fqdn }} {{ host.address }} {{ host.groups[0] }}")
        == "cm-pub-01 cm-pub-01.voice.example.com 10.10.0.11 callmanager"
    )


def test_an_unused_broken_variable_is_never_evaluated() -> None:
    """Variables are evaluated lazily: one that no string uses cannot fail the playbook."""
    assert evaluate("{{ good }}", good="ok", broken="{{ nope }}") == "ok"


def test_strings_without_markers_are_left_alone() -> None:
    assert evaluate("50% of {x} is }}") == "50% of {x} is }}"


def test_dicts_and_lists_are_walked() -> None:
    value = {"a": ["{{ host.name }}", 1, None, {"b": "{{ n }}"}], "c": True}
    assert evaluate(value, n=5) == {"a": ["cm-pub-01", 1, None, {"b": 5}], "c": True}


# --- native types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ port }}", 8443),
        ("{{ names }}", ["a.example.com", "10.0.0.1"]),
        ("{{ flag }}", False),
        ("{{ port + 1 }}", 8444),
        ("{{ mapping }}", {"k": [1, 2]}),
        # Mixed text renders to a string.
        ("p{{ port }}", "p8443"),
        ("{{ port }} ", "8443 "),
        ("{{ port }}{{ port }}", "84438443"),
        # A string stays a string, even when it looks like a number or a list:
        # whole-expression values are not re-parsed (Jinja's own native mode would).
        ("{{ code }}", "0443"),
        ("{{ listy }}", "[1, 2]"),
        ("{{ port | string }}", "8443"),
    ],
)
def test_native_types(source: str, expected: Any) -> None:
    variables = {
        "port": 8443,
        "names": ["a.example.com", "10.0.0.1"],
        "flag": False,
        "mapping": {"k": [1, 2]},
        "code": "0443",
        "listy": "[1, 2]",
    }
    result = evaluate(source, **variables)
    assert result == expected
    assert type(result) is type(expected)


def test_a_variable_that_is_a_whole_expression_keeps_its_type_too() -> None:
    assert evaluate("{{ b }}", a=[1, 2], b="{{ a }}") == [1, 2]


# --- errors -------------------------------------------------------------------------------


def test_undefined_variable() -> None:
    assert failure("x{{ nope }}") == "undefined variable: 'nope' is undefined"


def test_undefined_whole_expression() -> None:
    # The native code path hands back Undefined rather than failing; it must still fail.
    assert failure("{{ nope }}") == "undefined variable: 'nope' is undefined"


def test_undefined_attribute() -> None:
    assert (
        failure("{{ host.nope }}")
        == "undefined variable: 'provision.inputs.expressions.HostView object' "
        "has no attribute 'nope'"
    )


def test_undefined_inside_a_variable_names_the_variable() -> None:
    assert (
        failure("{{ a }}", a="{{ b }}", b="{{ nope }}")
        == "in variable 'a': in variable 'b': undefined variable: 'nope' is undefined"
    )


@pytest.mark.parametrize(
    ("variables", "source", "problem"),
    [
        ({"a": "{{ a }}"}, "{{ a }}", "variable 'a' refers to itself (a -> a)"),
        (
            {"a": "x-{{ b }}", "b": "{{ a }}"},
            "{{ a }}",
            "variable 'a' refers to itself (a -> b -> a)",
        ),
        (
            {"a": "{{ b }}", "b": "{{ c }}", "c": "{{ b }}"},
            "{{ a }}",
            "variable 'b' refers to itself (a -> b -> c -> b)",
        ),
    ],
)
def test_a_variable_that_needs_itself(variables: dict[str, str], source: str, problem: str) -> None:
    assert failure(source, **variables) == problem


def test_after_a_self_reference_other_variables_still_work() -> None:
    variables = HostVariables({"a": "{{ a }}", "b": "{{ host.name }}"}, VIEW)
    with pytest.raises(TemplateFailure):
        variables.evaluate("{{ a }}", ())
    assert variables.evaluate("{{ b }}", ()) == "cm-pub-01"


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (
            "{{ host.__class__ }}",
            "not allowed in a template: access to attribute '__class__' of 'HostView' "
            "object is unsafe.",
        ),
        (
            "{{ host.name.__class__.__mro__ }}",
            "not allowed in a template: access to attribute '__class__' of 'str' object is unsafe.",
        ),
        (
            "x{{ host.__init__.__globals__ }}",
            "not allowed in a template: access to attribute '__init__' of 'HostView' "
            "object is unsafe.",
        ),
        (
            "{{ names.append('evil') }}",
            "not allowed in a template: access to attribute 'append' of 'list' object is unsafe.",
        ),
    ],
)
def test_the_sandbox_refuses_python_internals(source: str, problem: str) -> None:
    names = ["a"]
    assert failure(source, names=names) == problem
    assert names == ["a"]


def test_the_sandbox_refuses_huge_ranges() -> None:
    assert failure("{{ range(10**9) | list }}").startswith("template error: Range too big.")


def test_a_failure_says_where() -> None:
    variables = HostVariables({}, VIEW)
    with pytest.raises(TemplateFailure) as caught:
        variables.evaluate({"certificates": [{"names": ["ok", "{{ nope }}"]}]}, ())
    assert caught.value.path == ("certificates", 0, "names", 1)
    assert caught.value.source == "{{ nope }}"


# --- through the CLI, on a playbook of our own ----------------------------------------------

INVENTORY = """\
all:
  vars:
    certificates_dir: fleet/{{ host.name }}/certs
    https_port: 8443
    extra_names: ["{{ host.name }}.alt.example.com", 192.0.2.1]
    a: "{{ b }}"
    b: "{{ a }}"
  hosts:
    web-01: {address: 10.0.0.1, fqdn: web-01.example.com}
"""

PLAYBOOK = """\
name: Templating
certificates_dir: "{{ certificates_dir }}"
certificates:
  - name: web
    source: self-signed
    key: {type: ecdsa}
    subject: {common_name: "COMMON"}
    names: "{{ [host.fqdn] + extra_names }}"
    validity_days: 90
    outputs:
      - {file: web.pem, format: pem, content: fullchain}
      - {file: web.key, format: pem, content: key}
sites:
  - name: web
    config: "{{ certificates_dir }}/../web.conf"
    reload: false
    bindings:
      - {port: "{{ https_port }}", certificate: web}
"""


def write(project: Path, common_name: str) -> None:
    (project / "inventory" / "t.yml").write_text(INVENTORY)
    (project / "playbooks" / "t.yml").write_text(PLAYBOOK.replace("COMMON", common_name))


def test_templates_through_the_cli(project: Path, cli: Cli) -> None:
    write(project, "{{ host.fqdn }}")
    result = cli("apply", "playbooks/t.yml", "-i", "inventory/t.yml")
    assert result.exit_code == 0, result.stderr
    certs = project / "fleet" / "web-01" / "certs"
    assert sorted(p.name for p in certs.iterdir() if not p.name.startswith(".")) == [
        "web.key",
        "web.pem",
    ]
    conf = (project / "fleet" / "web-01" / "web.conf").read_text()
    assert "listen 8443 ssl;" in conf  # "{{ https_port }}" validated as the integer 8443
    assert f"ssl_certificate     {certs / 'web.pem'};" in conf

    from cryptography import x509

    leaf = x509.load_pem_x509_certificate((certs / "web.pem").read_bytes())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n.value) for n in san] == [
        "web-01.example.com",
        "web-01.alt.example.com",
        "192.0.2.1",
    ]
    assert leaf.subject.rfc4514_string() == "CN=web-01.example.com"


@pytest.mark.parametrize(
    ("common_name", "problem"),
    [
        ("{{ a }}", "variable 'a' refers to itself (a -> b -> a) in '{{ a }}'"),
        (
            "{{ host.__class__ }}",
            "not allowed in a template: access to attribute '__class__' of 'HostView' object is "
            "unsafe. in '{{ host.__class__ }}'",
        ),
        ("{{ https_port }}", "Input should be a valid string (got 8443)"),
    ],
)
def test_template_errors_through_the_cli(
    project: Path, cli: Cli, common_name: str, problem: str
) -> None:
    write(project, common_name)
    result = cli("apply", "playbooks/t.yml", "-i", "inventory/t.yml")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        f"error: playbooks/t.yml:7: certificates[0].subject.common_name: {problem} "
        "(for host web-01)\n"
    )
    assert not (project / "fleet").exists()


def test_an_evaluation_past_its_time_budget_fails_with_the_rule(monkeypatch: Any) -> None:
    """Issue 14: each host's evaluation has a wall-clock budget, checked as loops run."""
    import provision.sandbox

    monkeypatch.setattr(provision.sandbox, "SECONDS", 0.01)
    variables = HostVariables({}, HostView("web-01", "10.0.0.1", None, ()))
    with provision.sandbox.time_budget(), pytest.raises(TemplateFailure) as caught:
        variables.evaluate("{% for a in range(99999) %}{{ a ~ a }}{% endfor %}", ("name",))
    assert (
        caught.value.problem
        == "template error: too costly: evaluation took longer than 0.01 seconds"
    )


def test_loop_iterations_are_counted_per_expression_however_they_nest() -> None:
    variables = HostVariables({}, HostView("web-01", "10.0.0.1", None, ()))
    fine = "{% for a in range(1000) %}{% for b in range(999) %}{% endfor %}{% endfor %}ok"
    assert variables.evaluate(fine, ("name",)) == "ok"  # 999,000 + 1,000 iterations
    with pytest.raises(TemplateFailure, match="more than 1,000,000 loop iterations"):
        variables.evaluate(fine.replace("999", "1000"), ("name",))
