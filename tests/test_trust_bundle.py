"""Trust stores (issue 18, item 1), the plain PEM bundle: the internal CA's root written to a
path on each host, idempotent by fingerprint, roots the playbook drops are gone; curl
trusting only that bundle reaches a real nginx serving a leaf of the CA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ports import free_port
from thirdparty import (
    ENV,
    INVENTORY,
    assert_refused,
    certs_dir,
    example,
    fresh,
    plan_json,
    write_playbook,
)
from trustkit import Served, curl, nginx

from provision.crypto import build, encode, keys
from provision.crypto.build import SubjectFields

pytestmark = pytest.mark.usefixtures("openssl")


def trust_playbook(project: Path, stores: Path, roots: list[str]) -> str:
    data: dict[str, Any] = example(project)
    del data["sites"]
    data["authorities"].append(
        {
            "name": "other-root",
            "dir": "pki/other-root",
            "create": True,
            "subject": {"common_name": "Other Root CA"},
        }
    )
    data["trust"] = [
        {
            "name": "fleet-roots",
            "roots": [{"authority": r} for r in roots],
            "stores": [{"type": "bundle", "path": f"{stores}/{{{{ host.name }}}}/ca-bundle.pem"}],
        }
    ]
    return write_playbook(project, "trust.yml", data)


def changes(document: dict[str, Any], host: str) -> list[tuple[str, str, str]]:
    return [(c["resource"], c["action"], c["reason"]) for c in document["hosts"][host]["changes"]]


def test_curl_with_only_the_bundle_reaches_nginx_serving_a_leaf_of_the_ca(
    project: Path, cli: Any, tmp_path: Path
) -> None:
    fresh(project)
    stores = tmp_path / "stores"
    playbook = trust_playbook(project, stores, ["voice-root"])
    result = cli("apply", playbook, "-i", INVENTORY, env=ENV)
    assert result.exit_code == 0, result.stdout + result.stderr
    bundle = stores / "cm-pub-01" / "ca-bundle.pem"
    assert bundle.stat().st_mode & 0o777 == 0o644
    assert bundle.read_bytes().count(b"BEGIN CERTIFICATE") == 1

    # Idempotent: a second plan changes nothing anywhere.
    document = plan_json(cli, playbook)
    assert all(not changes(document, h) for h in document["hosts"]), document

    certs = certs_dir(project, "cm-pub-01")
    site = Served(
        "cm-pub-01.voice.example.com", certs / "httpscert.pem", certs / "httpscert.key", free_port()
    )
    stranger = tmp_path / "stranger.pem"
    other_key = keys.generate("ecdsa", None, "p256")
    stranger.write_bytes(
        encode.certificates_pem(
            [
                build.authority(
                    SubjectFields(common_name="Stranger"), other_key, validity_days=30, now=_now()
                )
            ]
        )
    )
    with nginx(tmp_path / "nginx", [site]):
        fetched = curl(site, bundle)
        assert fetched.returncode == 0, fetched.stderr
        assert fetched.stdout == f"ok {site.name}\n"
        refused = curl(site, stranger)  # the same client without the bundle's root
        assert refused.returncode == 60, refused.stderr

    # Another root added: the plan shows it per host; then dropped: gone from the bundle.
    playbook = trust_playbook(project, stores, ["voice-root", "other-root"])
    document = plan_json(cli, playbook)
    for host in document["hosts"]:
        ((resource, action, reason),) = changes(document, host)
        assert resource == f"trust fleet-roots bundle {stores}/{host}/ca-bundle.pem"
        assert action == "update" and reason.startswith(
            "roots changed: +CN=Other Root CA sha256:"
        ), reason
    assert cli("apply", playbook, "-i", INVENTORY, env=ENV).exit_code == 0
    assert bundle.read_bytes().count(b"BEGIN CERTIFICATE") == 2
    playbook = trust_playbook(project, stores, ["voice-root"])
    document = plan_json(cli, playbook)
    ((_, _, reason),) = changes(document, "cm-sub-01")
    assert reason.startswith("roots changed: -CN=Other Root CA sha256:"), reason
    assert cli("apply", playbook, "-i", INVENTORY, env=ENV).exit_code == 0
    assert bundle.read_bytes().count(b"BEGIN CERTIFICATE") == 1


def test_a_root_naming_no_authority_is_refused_with_its_line(
    project: Path, cli: Any, tmp_path: Path
) -> None:
    fresh(project)
    playbook = trust_playbook(project, tmp_path, ["nope"])
    line = next(
        i
        for i, text in enumerate((project / playbook).read_text().splitlines(), 1)
        if "nope" in text
    )
    assert_refused(
        cli("validate", playbook, "-i", INVENTORY, env=ENV),
        f"{playbook}:{line}",
        "'nope' is not an authority of this playbook",
    )


def test_a_symlinked_bundle_is_refused(project: Path, cli: Any, tmp_path: Path) -> None:
    fresh(project)
    (tmp_path / "cm-pub-01").mkdir()
    target = tmp_path / "elsewhere.pem"
    target.write_text("mine\n")
    (tmp_path / "cm-pub-01" / "ca-bundle.pem").symlink_to(target)
    playbook = trust_playbook(project, tmp_path, ["voice-root"])
    result = cli("apply", playbook, "-i", INVENTORY, env=ENV)
    assert result.exit_code == 1 and "symlink" in result.stdout + result.stderr
    assert target.read_text() == "mine\n"


def _now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)
