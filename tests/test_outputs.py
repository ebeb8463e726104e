"""Every export format (DER, PEM, PKCS#7, PKCS#12 modern and legacy) and every content, read
back with the openssl command line; outputs are compared by meaning and rewritten only when
their meaning changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot
from thirdparty import (
    CA_PLAYBOOK,
    ENV,
    INVENTORY,
    PFX_PASSWORD,
    Corp,
    certs_dir,
    change_of,
    example,
    fingerprint,
    fresh,
    openssl,
    openssl_ok,
    openssl_text,
    pem_certificates,
    plan_json,
    provided_playbook,
    public_key_of,
    shared_corp,
    subjects,
    supply,
    write_playbook,
)

LEAF = "O = Example Voice Operations, CN = cm-pub-01.voice.example.com"
INTER = "O = Example Corp, CN = Example Corp Issuing CA"
ROOT = "O = Example Corp, CN = Example Corp Root CA"
VOICE_ROOT = "O = Example Voice Operations, CN = Example Voice Root CA"
PFX = {"env": "PFX_PASSWORD"}

EVERY_OUTPUT = [
    {"file": "leaf.cer", "format": "der", "content": "certificate"},
    {"file": "leaf.crt", "format": "pem", "content": "certificate"},
    {"file": "chain.pem", "format": "pem", "content": "chain"},
    {"file": "fullchain.pem", "format": "pem", "content": "fullchain"},
    {"file": "fullpath.pem", "format": "pem", "content": "fullpath"},
    {"file": "root.cer", "format": "der", "content": "root"},
    {"file": "root.pem", "format": "pem", "content": "root"},
    {"file": "key.pem", "format": "pem", "content": "key"},
    {"file": "key.der", "format": "der", "content": "key"},
    {"file": "leaf.p7b", "format": "pkcs7", "content": "certificate"},
    {"file": "chain.p7b", "format": "pkcs7", "content": "chain"},
    {"file": "fullchain.p7b", "format": "pkcs7", "content": "fullchain"},
    {"file": "fullpath.p7b", "format": "pkcs7", "content": "fullpath"},
    {"file": "root.p7b", "format": "pkcs7", "content": "root"},
    {"file": "modern.pfx", "format": "pkcs12", "password": PFX, "friendly_name": "httpscert"},
    {"file": "legacy.pfx", "format": "pkcs12", "password": PFX, "profile": "legacy"},
]


@pytest.fixture(scope="session")
def corp(openssl: str, tmp_path_factory: pytest.TempPathFactory) -> Corp:
    return shared_corp(tmp_path_factory)


def apply(cli: Any, playbook: str, *args: str, env: dict[str, str] | None = None) -> Any:
    result = cli("apply", playbook, "-i", INVENTORY, "-l", "cm-pub-01", *args, env=env or ENV)
    assert result.exit_code == 0, result.stdout + result.stderr
    return result


def every_output_supplied(project: Path, corp: Corp) -> str:
    fresh(project)
    leaf = corp.hosts["cm-pub-01"]
    supply(project, leaf.pem, "cm-pub-01.cer")
    supply(project, leaf.key, "cm-pub-01.key")
    supply(project, corp.chain, "corp-ca-chain.pem")
    return provided_playbook(
        project,
        {
            "certificate": "files/{{ host.name }}.cer",
            "key": "files/{{ host.name }}.key",
            "chain": "files/corp-ca-chain.pem",
        },
        outputs=EVERY_OUTPUT,
    )


def p7b_subjects(path: Path) -> list[str]:
    return subjects(openssl_text("pkcs7", "-inform", "DER", "-in", path, "-print_certs", "-noout"))


def pfx_text(path: Path, *extra: str, env: dict[str, str] | None = None) -> str:
    return openssl_text(
        "pkcs12", "-in", path, "-passin", "env:PFX_PASSWORD", *extra, env=env or ENV
    )


def test_every_format_and_content_reads_back_with_openssl(
    project: Path, cli: Any, corp: Corp
) -> None:
    playbook = every_output_supplied(project, corp)
    apply(cli, playbook)
    d = certs_dir(project)
    leaf, inter, root = corp.hosts["cm-pub-01"].pem, corp.inter, corp.root

    # DER and PEM certificates
    assert fingerprint(d / "leaf.cer", "DER") == fingerprint(leaf)
    assert pem_certificates(d / "leaf.crt") == pem_certificates(leaf)
    assert pem_certificates(d / "chain.pem") == pem_certificates(inter)
    assert pem_certificates(d / "fullchain.pem") == [
        *pem_certificates(leaf),
        *pem_certificates(inter),
    ]
    # fullpath: the whole certification path, root included
    assert pem_certificates(d / "fullpath.pem") == [
        *pem_certificates(leaf),
        *pem_certificates(inter),
        *pem_certificates(root),
    ]
    assert fingerprint(d / "root.cer", "DER") == fingerprint(root)
    assert pem_certificates(d / "root.pem") == pem_certificates(root)
    openssl("verify", "-CAfile", d / "root.pem", "-untrusted", d / "chain.pem", d / "leaf.crt")

    # keys: PEM and DER, the supplied key, owner-only
    assert public_key_of(d / "key.pem") == public_key_of(corp.hosts["cm-pub-01"].key)
    der_pub = openssl("pkey", "-inform", "DER", "-in", d / "key.der", "-pubout")
    assert der_pub == openssl("pkey", "-in", corp.hosts["cm-pub-01"].key, "-pubout")
    for name in ("key.pem", "key.der", "modern.pfx", "legacy.pfx"):
        assert (d / name).stat().st_mode & 0o777 == 0o600, name
    for name in ("leaf.cer", "fullchain.pem", "root.cer", "fullchain.p7b"):
        assert (d / name).stat().st_mode & 0o777 == 0o644, name

    # PKCS#7 in chain order: leaf, then intermediates (openssl crl2pkcs7 -nocrl framing)
    assert p7b_subjects(d / "leaf.p7b") == [LEAF]
    assert p7b_subjects(d / "chain.p7b") == [INTER]
    assert p7b_subjects(d / "fullchain.p7b") == [LEAF, INTER]
    assert p7b_subjects(d / "root.p7b") == [ROOT]
    made_by_openssl = openssl(
        "crl2pkcs7", "-nocrl", "-certfile", leaf, "-certfile", inter, "-outform", "DER"
    )
    assert (d / "fullchain.p7b").read_bytes() == made_by_openssl
    # Windows' "include all certificates in the certification path": leaf, inter, root
    assert p7b_subjects(d / "fullpath.p7b") == [LEAF, INTER, ROOT]
    assert (d / "fullpath.p7b").read_bytes() == openssl(
        "crl2pkcs7", "-nocrl", "-certfile", leaf, "-certfile", inter, "-certfile", root,
        "-outform", "DER",
    )  # fmt: skip

    # PKCS#12: key, leaf, intermediate, root; modern AES-256/SHA-256, legacy 3DES/SHA-1
    for name in ("modern.pfx", "legacy.pfx"):
        text = pfx_text(d / name, "-nokeys", *(["-legacy"] if name == "legacy.pfx" else []))
        assert subjects(text) == [LEAF, INTER, ROOT], name
        key = openssl(
            "pkey",
            "-pubout",
            input=openssl(
                "pkcs12",
                "-in",
                d / name,
                "-passin",
                f"pass:{PFX_PASSWORD}",
                "-nocerts",
                "-nodes",
                *(["-legacy"] if name == "legacy.pfx" else []),
            ),
        )
        assert key == openssl("pkey", "-in", corp.hosts["cm-pub-01"].key, "-pubout")
    modern = pfx_text(d / "modern.pfx", "-info", "-noout")
    assert "PBES2, PBKDF2, AES-256-CBC" in modern
    assert "MAC: sha256" in modern
    assert "friendlyName: httpscert" in pfx_text(d / "modern.pfx", "-nokeys")
    legacy = pfx_text(d / "legacy.pfx", "-info", "-noout", "-legacy")
    assert "pbeWithSHA1And3-KeyTripleDES-CBC" in legacy
    assert "MAC: sha1" in legacy

    # a second apply rewrites nothing (PFX salts are random: compared by meaning)
    before = snapshot(project / ".provision")
    result = apply(cli, playbook)
    assert "Recap: ok 1, changed 0, failed 0" in result.stdout
    assert snapshot(project / ".provision") == before


def test_ca_example_pfx_in_both_profiles(project: Path, cli: Any) -> None:
    fresh(project)
    data = example(project)
    data["certificates"][0]["outputs"].append(
        {
            "file": "httpscert-legacy.pfx",
            "format": "pkcs12",
            "password": PFX,
            "friendly_name": "httpscert",
            "profile": "legacy",
        }
    )
    playbook = write_playbook(project, "both-pfx.yml", data)
    apply(cli, playbook)
    d = certs_dir(project)
    for name, profile in (("httpscert.pfx", []), ("httpscert-legacy.pfx", ["-legacy"])):
        info = pfx_text(d / name, "-info", "-nokeys", *profile)
        assert subjects(info) == [LEAF, VOICE_ROOT], name
        assert "friendlyName: httpscert" in info
    assert "PBES2, PBKDF2, AES-256-CBC" in pfx_text(d / "httpscert.pfx", "-info", "-noout")
    legacy = pfx_text(d / "httpscert-legacy.pfx", "-info", "-noout", "-legacy")
    assert "pbeWithSHA1And3-KeyTripleDES-CBC" in legacy
    # A wrong password is refused by openssl: the file really is protected.
    ok, _ = openssl_ok(
        "pkcs12", "-in", d / "httpscert-legacy.pfx", "-passin", "pass:wrong", "-noout", "-legacy"
    )
    assert not ok
    before = snapshot(project / ".provision")
    assert "changed 0" in apply(cli, playbook).stdout
    assert snapshot(project / ".provision") == before


def test_fullpath_of_a_self_signed_certificate_holds_it_once(project: Path, cli: Any) -> None:
    # A self-signed leaf is its own root: its certification path is the leaf alone. Alone,
    # a fullpath output also carries the leaf for the planner, so a second apply is idle.
    fresh(project)
    data = example(project, "callmanager-https.yml")
    del data["sites"]  # nginx would need a fullchain output
    data["certificates"][0]["outputs"] = [
        {"file": "httpscert.pem", "format": "pem", "content": "fullpath"},
        {"file": "httpscert.p7b", "format": "pkcs7", "content": "fullpath"},
        {"file": "httpscert.key", "format": "pem", "content": "key"},
    ]
    playbook = write_playbook(project, "self-signed-fullpath.yml", data)
    apply(cli, playbook)
    d = certs_dir(project)
    assert len(pem_certificates(d / "httpscert.pem")) == 1
    leaf_subject = subjects(openssl_text("x509", "-in", d / "httpscert.pem", "-noout", "-subject"))
    assert p7b_subjects(d / "httpscert.p7b") == leaf_subject
    before = snapshot(project / ".provision")
    assert "changed 0" in apply(cli, playbook, "--full").stdout
    assert snapshot(project / ".provision") == before


def test_pfx_password_from_a_file(project: Path, cli: Any) -> None:
    fresh(project)
    secret = project / "playbooks" / "secrets" / "pfx.txt"
    secret.parent.mkdir()
    secret.write_text("from a file\n")
    data = example(project)
    for output in data["certificates"][0]["outputs"]:
        if output["format"] == "pkcs12":
            output["password"] = {"file": "secrets/pfx.txt"}
    playbook = write_playbook(project, "pfx-file.yml", data)
    apply(cli, playbook, env={})
    text = openssl_text(
        "pkcs12",
        "-in",
        certs_dir(project) / "httpscert.pfx",
        "-passin",
        f"file:{secret}",
        "-nokeys",
    )
    assert subjects(text) == [LEAF, VOICE_ROOT]


def test_a_new_pfx_password_rewrites_only_the_pfx(project: Path, cli: Any) -> None:
    fresh(project)
    apply(cli, CA_PLAYBOOK)
    before = snapshot(project / ".provision")
    env = {"PFX_PASSWORD": "a new password"}
    document = plan_json(cli, CA_PLAYBOOK, "-l", "cm-pub-01", env=env)
    changes = document["hosts"]["cm-pub-01"]["changes"]
    assert [(c["resource"], c["action"], c["reason"]) for c in changes] == [
        ("file httpscert.pfx", "update", "does not hold the current key and certificates")
    ]
    apply(cli, CA_PLAYBOOK, env=env)
    after = snapshot(project / ".provision")
    changed = {name for name in after if after[name] != before.get(name)}
    assert {n for n in changed if "/.backup/" not in n} == {
        "fleet/cm-pub-01/certificates/httpscert.pfx"
    }
    pfx_text(certs_dir(project) / "httpscert.pfx", "-nokeys", env=env)


@pytest.mark.parametrize(
    ("name", "damage", "reason"),
    [
        ("httpscert.p7b", "replace", "does not hold the current fullchain"),
        ("httpscert.cer", "replace", "does not hold the current root"),
        ("httpscert.key", "chmod", "mode 0644, want 0600"),
        ("httpscert.p7b", "delete", "missing"),
    ],
)
def test_a_damaged_output_is_restored(
    project: Path, cli: Any, name: str, damage: str, reason: str
) -> None:
    fresh(project)
    apply(cli, CA_PLAYBOOK)
    path = certs_dir(project) / name
    good = path.read_bytes(), path.stat().st_mode
    if damage == "replace":
        other = certs_dir(project) / "httpscert.pem"
        path.write_bytes(
            openssl("x509", "-in", other, "-outform", "DER")
            if name.endswith(".cer")
            else openssl(
                "crl2pkcs7",
                "-nocrl",
                "-certfile",
                other,
                "-certfile",
                project / "playbooks" / "pki" / "voice-root" / "ca.crt",
                "-outform",
                "DER",
            )
        )
    elif damage == "chmod":
        path.chmod(0o644)
    else:
        path.unlink()
    document = plan_json(cli, CA_PLAYBOOK, "-l", "cm-pub-01")
    change = change_of(document, "cm-pub-01", f"file {name}")
    assert change is not None
    assert change["reason"] == reason
    assert change_of(document, "cm-pub-01", "certificate httpscert") is None  # not reissued
    apply(cli, CA_PLAYBOOK)
    assert (path.read_bytes(), path.stat().st_mode) == good
