"""Ansible Vault values, encrypted by the real ansible-vault (ansible-core, a test dependency
only), decrypted by provision's own reader: both formats, with and without a vault id, as
``!vault`` scalars and whole files; passwords from files, scripts, --vault-id and the
environment; a wrong password is one line naming file and line; secrets are never shown."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from ansiblecheck import ansible_env
from conftest import Cli, require_tool

from provision.errors import InputError
from provision.inputs.inventory import load_inventory
from provision.inputs.vault import VaultError, VaultSecret, decrypt
from provision.inputs.vault_secrets import VaultKeys

PASSWORD, PROD = "correct horse", "prod battery"


def _vault(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    home = tempfile.mkdtemp()
    return subprocess.Popen(
        ["ansible-vault", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ansible_env(home),
    )


@pytest.fixture(scope="module")
def vaulted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An INI inventory whose group_vars and host_vars ansible-vault encrypted, four ways."""
    require_tool("ansible-vault")
    root = tmp_path_factory.mktemp("vaulted")
    (root / "hosts").write_text("[web]\nw1\n\n[db]\nd1\n")
    (root / "pw").write_text(PASSWORD + "\n")
    (root / "prod-pw").write_text(PROD + "\n")
    (root / "group_vars").mkdir()
    (root / "host_vars").mkdir()
    (root / "group_vars" / "all.yml").write_text("all_secret: s-all\n")
    (root / "host_vars" / "d1.yml").write_text("host_secret: s-host\nport_number: 8443\n")
    runs = {
        "web": _vault(
            "encrypt_string",
            "--vault-password-file",
            "pw",
            "s-web",
            "--name",
            "web_secret",
            cwd=root,
        ),
        "db": _vault(
            "encrypt_string",
            "--vault-id",
            "prod@prod-pw",
            "s-db",
            "--name",
            "db_secret",
            cwd=root,
        ),
        "all": _vault("encrypt", "--vault-password-file", "pw", "group_vars/all.yml", cwd=root),
        "d1": _vault("encrypt", "--vault-id", "prod@prod-pw", "host_vars/d1.yml", cwd=root),
    }
    outputs = {}
    for name, run in runs.items():
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err.decode()
        outputs[name] = out.decode()
    (root / "group_vars" / "web.yml").write_text("plain: visible\n" + outputs["web"] + "\n")
    (root / "group_vars" / "db.yml").write_text(outputs["db"] + "\n")
    return root


def test_the_real_ansible_vaults_formats(vaulted: Path) -> None:
    assert (vaulted / "group_vars" / "all.yml").read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")
    assert (
        (vaulted / "host_vars" / "d1.yml").read_text().startswith("$ANSIBLE_VAULT;1.2;AES256;prod")
    )
    assert "!vault |" in (vaulted / "group_vars" / "web.yml").read_text()


def test_every_vaulted_value_decrypts(vaulted: Path) -> None:
    keys = VaultKeys.of([("default", str(vaulted / "pw")), ("prod", str(vaulted / "prod-pw"))])
    inventory = load_inventory(vaulted / "hosts", vault=keys)
    w1, d1 = inventory.hosts["w1"].vars, inventory.hosts["d1"].vars
    assert (w1["web_secret"], w1["plain"], w1["all_secret"]) == ("s-web", "visible", "s-all")
    assert (d1["db_secret"], d1["host_secret"], d1["port_number"]) == ("s-db", "s-host", 8443)
    assert "s-web" not in repr(w1)  # what an error message would quote


def test_a_vault_id_label_is_a_hint_not_a_requirement(vaulted: Path) -> None:
    """As Ansible: every password is tried; the label only says which to try first."""
    text = (vaulted / "host_vars" / "d1.yml").read_bytes()
    plain = decrypt(text, [VaultSecret("default", b"nope"), VaultSecret("other", PROD.encode())])
    assert plain.startswith(b"host_secret: s-host")


def test_a_tampered_vault_is_refused(vaulted: Path) -> None:
    """One ciphertext byte changed: the HMAC refuses it before anything is decrypted."""
    header, *body = (vaulted / "group_vars" / "all.yml").read_text().splitlines()
    salt, mac, ciphertext = bytes.fromhex("".join(body)).split(b"\n", 2)
    flipped = bytes.fromhex(ciphertext.decode())
    flipped = bytes([flipped[0] ^ 1]) + flipped[1:]
    envelope = b"\n".join([salt, mac, flipped.hex().encode()])
    with pytest.raises(VaultError, match="no vault password given decrypts it"):
        decrypt(f"{header}\n{envelope.hex()}", [VaultSecret("default", PASSWORD.encode())])


@pytest.mark.parametrize(
    ("sources", "where", "message"),
    [
        # a whole vaulted file: its first line (a !vault scalar's own line: the CLI test)
        (
            [("default", "pw")],
            "host_vars/d1.yml:1",
            "no vault password given decrypts it (vault id prod)",
        ),
        ([], "group_vars/all.yml:1", "is vault-encrypted and no vault password was given"),
    ],
)
def test_a_wrong_or_missing_password_names_file_and_line(
    vaulted: Path, sources: list[tuple[str, str]], where: str, message: str
) -> None:
    keys = VaultKeys([(label, str(vaulted / file)) for label, file in sources])
    with pytest.raises(InputError) as caught:
        load_inventory(vaulted / "hosts", vault=keys)
    text = str(caught.value)
    assert where in text and message in text
    assert len(text.splitlines()) == 1


# --- through the CLI ------------------------------------------------------------------------


@pytest.fixture
def vaulted_project(project: Path, vaulted: Path) -> Path:
    """The example project (INI inventory), with a vaulted token in group_vars/all.yml."""
    group_vars = project / "inventory" / "group_vars"
    group_vars.mkdir()
    secret = (vaulted / "group_vars" / "web.yml").read_text().replace("web_secret", "api_token")
    (group_vars / "all.yml").write_text(secret)
    (project / "pw").write_text(PASSWORD + "\n")
    script = project / "pw-script"
    script.write_text(f"#!/bin/sh\necho '{PASSWORD}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return project


PLAN = ("plan", "playbooks/callmanager-https.yml", "-i", "inventory/example.ini")


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--vault-password-file", "pw"), None),
        (("--vault-password-file", "pw-script"), None),  # run, as Ansible runs it
        (("--vault-id", "default@pw"), None),
        ((), {"ANSIBLE_VAULT_PASSWORD_FILE": "pw"}),
    ],
)
def test_plan_with_a_vault_password(
    vaulted_project: Path, cli: Cli, args: tuple[str, ...], env: dict[str, str] | None
) -> None:
    from provision.converged.document import cache_dir

    for _ in range(2):  # the second is not answered from a record: none was made
        result = cli(*PLAN, *args, env=env)
        assert result.exit_code == 0, result.stderr
        assert "s-web" not in result.stdout + result.stderr
    assert list((cache_dir() / "converged").glob("*.json")) == []


def test_plan_with_a_wrong_vault_password(vaulted_project: Path, cli: Cli) -> None:
    (vaulted_project / "wrong").write_text("not it\n")
    result = cli(*PLAN, "--vault-password-file", "wrong")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: inventory/group_vars/all.yml:2")
    assert "no vault password given decrypts it" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE") is None


# Every command that reads the inventory, as a user types it (the vault options last).
COMMANDS = {
    "validate": ("validate", "playbooks/callmanager-https.yml"),
    "plan": PLAN,
    "apply": ("apply", "playbooks/callmanager-https.yml", "-i", "inventory/example.ini"),
    "status": ("status", "playbooks/callmanager-https.yml", "-i", "inventory/example.ini"),
    "verify": ("verify", "playbooks/callmanager-https.yml", "-i", "inventory/example.ini"),
    "render": ("render", "playbooks/callmanager-https.yml", "-i", "inventory/example.ini"),
    "csr": ("csr", "playbooks/callmanager-https.yml", "-i", "inventory/example.ini"),
    "rollback": ("rollback", "playbooks/callmanager-https.yml", "-i", "inventory/example.ini"),
    "revoke": ("revoke", "playbooks/callmanager-https.yml", "-i", "inventory/example.ini"),
    "lint": ("lint", "playbooks/callmanager-https.yml", "-i", "inventory/example.ini"),
}
EXTRA = {
    "validate": ("-i", "inventory/example.ini"),
    "render": ("--out", "rendered"),
    "csr": ("--out", "csr"),
    "rollback": ("--list",),
    "revoke": ("--limit", "cm-pub-01"),
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_reading_the_inventory_takes_the_vault_options(
    vaulted_project: Path, cli: Cli, command: str
) -> None:
    """A wrong password given to the command is used (its error, naming file and line, is
    not the one for no password), and so is the environment's."""
    (vaulted_project / "wrong").write_text("not it\n")
    args = (*COMMANDS[command], *EXTRA.get(command, ()))
    for options, env in (
        (("--vault-password-file", "wrong"), None),
        (("--vault-id", "ops@wrong"), None),
        ((), {"ANSIBLE_VAULT_PASSWORD_FILE": "wrong"}),
    ):
        result = cli(*args, *options, env=env)
        assert result.exit_code == 1, (options, result.stdout)
        assert result.stderr.startswith("error: inventory/group_vars/all.yml:2: "), result.stderr
        assert "no vault password given decrypts it" in result.stderr
        assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
        assert "not it" not in result.stdout + result.stderr
    assert not (vaulted_project / ".provision").exists()  # nothing written anywhere


@pytest.mark.parametrize("command", ["plan", "apply", "status", "render", "validate", "lint"])
def test_a_command_with_the_right_vault_password_runs(
    vaulted_project: Path, cli: Cli, command: str
) -> None:
    args = (*COMMANDS[command], *EXTRA.get(command, ()))
    if command == "status":
        assert cli(*COMMANDS["apply"], "--vault-password-file", "pw").exit_code == 0
    result = cli(*args, "--vault-password-file", "pw")
    assert result.exit_code == 0, result.stdout + result.stderr
    for secret in ("s-web", PASSWORD):  # the value, and the password that opened it
        assert secret not in result.stdout + result.stderr
    if command == "status":
        assert result.stdout.count("httpscert") == 3  # a row per host


def test_a_saved_plan_of_a_vaulted_inventory_applies_with_the_password(
    vaulted_project: Path, cli: Cli
) -> None:
    saved = cli(*PLAN, "--vault-password-file", "pw", "--out", "p.json")
    assert saved.exit_code == 0, saved.stderr
    for secret in ("s-web", PASSWORD):
        assert secret not in (vaulted_project / "p.json").read_text()
    missing = cli("apply", "p.json")
    assert missing.exit_code == 1
    assert "is vault-encrypted and no vault password was given" in missing.stderr
    applied = cli("apply", "p.json", "--vault-id", "pw")
    assert applied.exit_code == 0, applied.stderr
    assert (vaulted_project / ".provision/fleet/cm-pub-01/certificates/httpscert.cer").is_file()


def test_a_vault_encrypted_inventory_file_is_read_as_ansible_reads_it(
    vaulted: Path, tmp_path: Path
) -> None:
    """``ansible-vault encrypt hosts.ini``: Ansible's INI and YAML plugins decrypt it first."""
    (tmp_path / "hosts.ini").write_text("[web]\nw1 token=t1\n\n[web:vars]\nport_number=8443\n")
    (tmp_path / "hosts.yml").write_text("db:\n  hosts:\n    d1: {token: t2}\n")
    for name in ("hosts.ini", "hosts.yml"):
        run = _vault("encrypt", "--vault-password-file", str(vaulted / "pw"), name, cwd=tmp_path)
        assert run.communicate(timeout=120) and run.returncode == 0
        assert (tmp_path / name).read_bytes().startswith(b"$ANSIBLE_VAULT;1.1;AES256")
    keys = VaultKeys.of([("default", str(vaulted / "pw"))])
    inventory = load_inventory([tmp_path / "hosts.ini", tmp_path / "hosts.yml"], vault=keys)
    assert (inventory.hosts["w1"].vars["token"], inventory.hosts["d1"].vars["token"]) == (
        "t1",
        "t2",
    )
    assert inventory.hosts["w1"].vars["port_number"] == 8443
    wrong = VaultKeys.of([("default", str(vaulted / "prod-pw"))])
    with pytest.raises(InputError) as caught:
        load_inventory(tmp_path / "hosts.ini", "hosts.ini", vault=wrong)
    assert str(caught.value).startswith("hosts.ini:1: ")
    assert "no vault password given decrypts it" in str(caught.value)
