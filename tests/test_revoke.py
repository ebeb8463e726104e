"""`provision revoke` for the sources that cannot revoke here: one paragraph each, exit 1.

(ACME revocation against a real Pebble is in test_acme.py.)"""

from __future__ import annotations

from conftest import Cli


def test_internal_ca_certificates_are_sent_to_ca_revoke(cli: Cli) -> None:
    args = ("playbooks/callmanager-https-ca.yml", "-i", "inventory/example.yml")
    env = {"PFX_PASSWORD": "revoke-test-pfx"}
    assert cli("apply", *args, env=env).exit_code == 0
    result = cli("revoke", *args, "--limit", "cm-pub-01", env=env)
    assert result.exit_code == 1
    assert "nothing was revoked here; revoke it with `provision ca revoke" in result.stderr
    assert "which puts it on the authority's CRL" in result.stderr
    assert result.stderr.count("error:") == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_self_signed_certificate_cannot_be_revoked(cli: Cli) -> None:
    args = ("playbooks/callmanager-https.yml", "-i", "inventory/example.yml")
    assert cli("apply", *args).exit_code == 0
    result = cli("revoke", *args, "--limit", "cm-pub-01", "--reason", "superseded")
    assert result.exit_code == 1
    assert "a self-signed certificate cannot be revoked by provision" in result.stderr
