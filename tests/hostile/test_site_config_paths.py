"""A site's `config:` turned against the host (issue 14): pointing at one of provision's own
files is refused at validation with file:line; pointing at an existing private key fails the
host, the key never printed (not in a diff, not anywhere) and never overwritten."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot

PLAYBOOK = "playbooks/callmanager-https.yml"
INVENTORY = "inventory/example.yml"
CONFIG_LINE = 'config: "{{ certificates_dir }}/../nginx/default-web-site.conf"'


def _with_config(project: Path, config: str) -> str:
    text = (project / PLAYBOOK).read_text()
    assert CONFIG_LINE in text
    path = project / "playbooks" / "hostile.yml"
    path.write_text(text.replace(CONFIG_LINE, f'config: "{config}"'))
    return "playbooks/hostile.yml"


def _refused(result: Any, *fragments: str) -> str:
    output = (result.stdout + result.stderr).strip()
    assert result.exit_code == 1, output
    assert "Traceback" not in output
    assert "\n\n" not in output, output
    for fragment in fragments:
        assert fragment in output, output
    return output


@pytest.mark.parametrize(
    "name",
    [
        ".provision.lock",
        ".provision-journal.json",
        ".provision-state.json",
        ".provision-reload-pending",
        ".provision.lock.takeover",
        ".backup/20260101T000000000000Z/manifest.json",
        "httpscert.key.provision-pending",
    ],
)
@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
def test_a_config_on_provisions_own_files_is_refused_at_validation(
    project: Path, cli: Any, name: str, command: str
) -> None:
    playbook = _with_config(project, "{{ certificates_dir }}/" + name)
    before = snapshot(project)
    output = _refused(cli(command, playbook, "-i", INVENTORY))
    assert output.startswith("error: playbooks/hostile.yml:22: sites[0].config: ")
    assert "a file provision keeps for itself" in output
    assert snapshot(project) == before


@pytest.mark.parametrize("encoding", ["pem", "der"])
def test_a_config_on_an_existing_private_key_fails_the_host_and_shows_nothing(
    project: Path, cli: Any, encoding: str
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    secret = project / "secret"
    secret.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    form = serialization.Encoding.PEM if encoding == "pem" else serialization.Encoding.DER
    data = key.private_bytes(form, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (secret / "other.key").write_bytes(data)
    (secret / "other.key").chmod(0o600)
    playbook = _with_config(project, str(secret / "other.key"))
    before = snapshot(secret)
    for command in ("plan", "apply"):
        result = cli(command, playbook, "-i", INVENTORY, "-l", "cm-pub-01", "--format", "json")
        output = result.stdout + result.stderr
        assert result.exit_code == 1, output
        assert "holds a private key; refusing to show it in a diff" in output
        assert "PRIVATE KEY" not in output
        printable = data.decode("latin-1")
        assert printable[40:80] not in output
    assert snapshot(secret) == before
