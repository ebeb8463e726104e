"""Properties, checked on generated inputs (hypothesis).

(a) The loader refuses anything it cannot read with a ``ProvisionError`` (file:line), never
    with another exception: random text, random bytes, and YAML dumped from random structures
    then mutated. Unmutated, such YAML reads as PyYAML's safe_load reads it.
(b) For generated inventories (1-4 hosts, random group nesting, random variables) and
    playbooks (random DER/PEM outputs, ECDSA keys, names from each host's name, FQDN and
    address): after ``apply`` the plan is empty, and a second ``apply`` changes nothing (every
    file byte-identical, untouched).
"""

from __future__ import annotations

import datetime as dt
import os
import string
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from provision.api import load, run
from provision.errors import ProvisionError
from provision.inputs.yaml_lines import load_bytes, load_text

# No example database and no explain phase: the tests write nothing into the working tree.
_COMMON: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "phases": [Phase.explicit, Phase.generate, Phase.shrink],
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
FAST = settings(max_examples=40, **_COMMON)
SLOW = settings(max_examples=25, **_COMMON)

# --- (a) the loader ---------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
structures = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
# What makes YAML mean something: indicators, anchors and aliases, tags, merge keys, tabs,
# directives, quotes, block scalars, control and odd Unicode characters.
YAML_PIECES = [
    ":",
    ": ",
    "- ",
    "-",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "*b",
    "&b ",
    "!!",
    "!!str ",
    "!!int ",
    "!!float ",
    "!!bool ",
    "!!timestamp ",
    "!!binary ",
    "!!set ",
    "!!python/object/apply:os.system ",
    "!custom ",
    "<<: ",
    "<<: *a",
    "\t",
    "\n",
    "\n  ",
    "\n- ",
    "#",
    "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n",
    "---\n",
    "...\n",
    "'",
    '"',
    "\\",
    "|",
    ">",
    "?",
    "@",
    "`",
    "\x00",
    "\x07",
    "\x85",
    "\ufeff",
    "\ufffe",
    "\ud7ff",
    "2024-02-30",
    "0x",
    "0o9",
    ".inf",
    "~",
    "é",
    "\u2028",
]


@st.composite
def mutated_yaml(draw: st.DrawFn) -> str:
    text = yaml.safe_dump(
        draw(structures),
        allow_unicode=draw(st.booleans()),
        default_flow_style=draw(st.sampled_from([None, False, True])),
    )
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "cut"]))
        if action == "insert":
            text = text[:position] + draw(st.sampled_from(YAML_PIECES)) + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 5)) :]
        elif action == "replace" and text:
            text = text[:position] + draw(st.sampled_from(YAML_PIECES)) + text[position + 1 :]
        elif action == "duplicate":
            lines = text.splitlines(keepends=True)
            if lines:
                index = draw(st.integers(0, len(lines) - 1))
                lines.insert(index, lines[index])
                text = "".join(lines)
        else:
            text = text[:position]
    return text


def _load_or_refuse(text: str) -> Any:
    try:
        return load_text(text, "random.yml").data
    except ProvisionError as exc:
        assert str(exc).startswith("random.yml"), f"a refusal that does not name the file: {exc}"
        return exc


@FAST
@given(st.text(max_size=200))
def test_loader_on_random_text(text: str) -> None:
    _load_or_refuse(text)


@FAST
@given(
    st.lists(st.sampled_from(YAML_PIECES + list(string.ascii_letters[:6])), max_size=60).map(
        "".join
    )
)
def test_loader_on_yaml_soup(text: str) -> None:
    _load_or_refuse(text)


@FAST
@given(st.binary(max_size=200))
def test_loader_on_random_bytes(data: bytes) -> None:
    try:
        load_bytes(data, "random.yml")
    except ProvisionError as exc:
        assert str(exc).startswith("random.yml"), f"a refusal that does not name the file: {exc}"


@FAST
@given(mutated_yaml())
def test_loader_on_mutated_yaml(text: str) -> None:
    _load_or_refuse(text)


@FAST
@given(structures, st.sampled_from([None, False, True]))
def test_loader_reads_what_safe_load_reads(value: Any, flow: bool | None) -> None:
    """Unmutated YAML reads as PyYAML's own safe_load reads it (which is the structure it was
    dumped from, except where PyYAML disagrees with itself: a raw U+0085 is a line break)."""
    text = yaml.safe_dump(value, default_flow_style=flow, allow_unicode=True)
    assert load_text(text, "dumped.yml").data == yaml.safe_load(text)


# --- (b) apply, plan, apply -------------------------------------------------------------------

host_names = st.from_regex(r"\A[a-z][a-z0-9]{0,7}\Z")
var_values = st.one_of(
    st.integers(-1000, 1000),
    st.text(string.ascii_letters + " ./-_", max_size=12),
    st.just("{{ host.name }}-x"),
    st.lists(st.integers(0, 9), max_size=3),
)
variables = st.dictionaries(st.from_regex(r"\Av_[a-z]{1,6}\Z"), var_values, max_size=3)


@st.composite
def inventories(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """An inventory of 1-4 hosts in randomly nested groups; whether every host has an FQDN."""
    names = draw(st.lists(host_names, min_size=1, max_size=4, unique=True))
    with_fqdn = draw(st.booleans())
    groups = [f"group{i}" for i in range(draw(st.integers(0, 3)))]
    tree: dict[str, dict[str, Any]] = {g: {} for g in groups}
    for index, group in enumerate(groups):
        if draw(st.booleans()):
            tree[group]["vars"] = draw(variables)
        parents = groups[:index]
        if parents and draw(st.booleans()):  # nest under an earlier group: never a cycle
            parent = draw(st.sampled_from(parents))
            tree[parent].setdefault("children", {})[group] = tree[group]
    hosts: dict[str, dict[str, Any]] = {}
    for position, name in enumerate(names):
        host: dict[str, Any] = {"address": f"10.{position}.{draw(st.integers(0, 255))}.1"}
        if with_fqdn:
            host["fqdn"] = f"{name}.example.test"
        host.update(draw(variables))
        hosts[name] = host
        home = draw(st.sampled_from([None, *groups]))
        if home is not None:
            tree[home].setdefault("hosts", {})[name] = host
    nested = {child for g in tree.values() for child in g.get("children", {})}
    children: dict[str, Any] = {g: tree[g] for g in groups if g not in nested}
    all_group: dict[str, Any] = {
        "vars": {
            "connection": "local",
            "certificates_dir": "{{ root }}/{{ host.name }}/certs",
            **draw(variables),
        },
        "hosts": {
            n: h
            for n, h in hosts.items()
            if not any(n in g.get("hosts", {}) for g in tree.values())
        },
        "children": children,
    }
    return {"all": all_group}, with_fqdn


OUTPUT_KINDS = [
    ("der", "certificate"),
    ("der", "root"),
    ("der", "key"),
    ("pem", "certificate"),
    ("pem", "chain"),
    ("pem", "fullchain"),
    ("pem", "root"),
    ("pem", "key"),
]


@st.composite
def playbooks(draw: st.DrawFn, with_fqdn: bool) -> dict[str, Any]:
    name_kinds = ["{{ host.name }}", "{{ host.address }}"] + (
        ["{{ host.fqdn }}"] if with_fqdn else []
    )
    use_ca = draw(st.booleans())
    with_site = draw(st.booleans())
    certificates = []
    for index in range(draw(st.integers(1, 2))):
        kinds = draw(st.lists(st.sampled_from(OUTPUT_KINDS), min_size=1, max_size=5, unique=True))
        if with_site and index == 0:  # what an nginx binding needs
            kinds.extend(k for k in (("pem", "fullchain"), ("pem", "key")) if k not in kinds)
        if not any(content == "key" for _, content in kinds):
            kinds.append(("pem", "key"))
        if not any(content in ("certificate", "fullchain") for _, content in kinds):
            kinds.append(("pem", "fullchain"))
        outputs = [
            {
                "file": f"cert{index}-{n}.{'der' if fmt == 'der' else 'pem'}",
                "format": fmt,
                "content": content,
            }
            for n, (fmt, content) in enumerate(kinds)
        ]
        certificates.append(
            {
                "name": f"cert{index}",
                "source": {"type": "ca", "authority": "root"}
                if use_ca and index == 0
                else "self-signed",
                "key": {"type": "ecdsa", "curve": draw(st.sampled_from(["p256", "p384"]))},
                "names": draw(st.lists(st.sampled_from(name_kinds), min_size=1, unique=True)),
                "validity_days": draw(st.integers(31, 800)),
                "renew_before_days": 30,
                "outputs": outputs,
            }
        )
    book: dict[str, Any] = {
        "name": "generated",
        "hosts": "all",
        "certificates_dir": "{{ certificates_dir }}",
        "certificates": certificates,
    }
    if use_ca:
        book["authorities"] = [
            {
                "name": "root",
                "dir": "ca",
                "create": True,
                "subject": {"common_name": "Generated Root"},
                "key": {"type": "ecdsa", "curve": "p256"},
            }
        ]
    if with_site:
        book["sites"] = [
            {
                "name": "Default Web Site",
                "server": "nginx",
                "reload": False,
                "config": "{{ root }}/{{ host.name }}/nginx/site.conf",
                "bindings": [{"protocol": "https", "port": 443, "certificate": "cert0"}],
            }
        ]
    return book


@st.composite
def fleets(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    inventory, with_fqdn = draw(inventories())
    return inventory, draw(playbooks(with_fqdn))


def files_below(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@SLOW
@given(fleets())
def test_apply_then_plan_is_empty_and_apply_is_idempotent(
    fleet: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    inventory, playbook = fleet
    now = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        inventory["all"]["vars"]["root"] = str(folder / "hosts")
        (folder / "inventory.yml").write_text(yaml.safe_dump(inventory))
        (folder / "playbook.yml").write_text(yaml.safe_dump(playbook))
        old = Path.cwd()
        os.chdir(folder)
        try:

            def cycle(apply: bool) -> Any:
                loaded = load(folder / "playbook.yml", folder / "inventory.yml", now=now)
                return run(loaded, apply=apply, now=now)

            _, first = cycle(apply=True)
            failures = {h.host: h.error for h in first.hosts if h.status == "failed"}
            assert not failures, failures
            assert first.count("changed") == len(first.hosts)
            after_first = files_below(folder)

            plan, report = cycle(apply=False)
            pending = {
                h.host: [f"{c.action} {c.resource}: {c.reason}" for c in h.changes]
                for h in plan.hosts
                if h.changes
            }
            assert not pending, pending
            assert not report.failed

            _, second = cycle(apply=True)
            assert [h.status for h in second.hosts] == ["ok"] * len(second.hosts)
            assert files_below(folder) == after_first
        finally:
            os.chdir(old)
