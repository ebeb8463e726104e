"""`provision cert show|export|check` through typer, files made by openssl, a real nginx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from certfixtures import PFX_PASSWORD, Pki, openssl, openssl_dates, shared_pki
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from ports import free_port
from trustkit import running_nginx
from typer.testing import CliRunner, Result

from provision.cli.cert import app
from provision.probe import fetch_chain

root_app = typer.Typer()
root_app.add_typer(app, name="cert")

LEAF_SUBJECT = 'C=US, ST=Oregon, L=Portland, O="Example, Inc.", CN=www.example.test'
INTER_SUBJECT = "C=US, O=Example Trust, OU=Issuing, CN=Example Issuing CA 1"
ROOT_SUBJECT = "C=US, O=Example Trust, CN=Example Root CA"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return shared_pki(tmp_path_factory)


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(root_app, ["cert", *map(str, args)], env=env)


def assert_error(result: Result, *fragments: str) -> str:
    """Exit 1, exactly one line on stderr naming the problem, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def thumbprint(path: Path, inform: str = "PEM") -> str:
    out = openssl("x509", "-in", path, "-inform", inform, "-noout", "-fingerprint", "-sha1")
    return out.decode().strip().split("=", 1)[1].replace(":", "")


# --- show ---------------------------------------------------------------------------------


def test_show_text_lists_every_certificate(pki: Pki) -> None:
    result = run("show", pki.fullchain)
    assert result.exit_code == 0, result.output
    blocks = result.stdout.rstrip("\n").split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [
        f"Certificate 1 of 2: {LEAF_SUBJECT}",
        f"Certificate 2 of 2: {INTER_SUBJECT}",
    ]
    assert "  Subject alt names:    DNS:www.example.test" in blocks[0]


def test_show_json_of_p7b(pki: Pki) -> None:
    result = run("show", pki.p7b_der, "--format", "json", "--view", "v1")
    assert result.exit_code == 0, result.output
    certificates = json.loads(result.stdout)["certificates"]
    assert [c["subject"]["openssl"] for c in certificates] == [LEAF_SUBJECT, INTER_SUBJECT]


def test_show_properties_text_keeps_subject_heading(pki: Pki) -> None:
    result = run("show", pki.leaf, "--view", "properties")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[:2] == [
        f"Certificate 1 of 1: {LEAF_SUBJECT}",
        "  Thumbprint algorithm: sha1",
    ]
    assert f"sha1: {thumbprint(pki.leaf)}" in result.stdout


def test_show_pfx_with_password_env(pki: Pki) -> None:
    result = run("show", pki.pfx, "--password-env", "PFX_PW", "--view", "properties",
                 env={"PFX_PW": PFX_PASSWORD})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Certificate 2 of 2" in result.stdout
    assert PFX_PASSWORD not in result.output


def _openssl_friendly_names(pfx: Path, password: str) -> list[str | None]:
    """Each certificate's friendlyName bag attribute, as `openssl pkcs12` prints them: the
    BMPString a character a byte (Latin-1), which is exact for these names."""
    printed = openssl("pkcs12", "-in", pfx, "-nokeys", "-passin", f"pass:{password}")
    names: list[str | None] = []
    name = None
    for line in printed.decode("latin-1").splitlines():
        if line.strip().startswith("friendlyName:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("subject="):
            names.append(name)
            name = None
    return names


def test_show_pfx_friendly_names(pki: Pki, tmp_path: Path) -> None:
    pfx = tmp_path / "named.pfx"
    openssl("pkcs12", "-export", "-inkey", pki.leaf_key, "-in", pki.leaf, "-certfile", pki.inter,
            "-name", "Zertifikat für Sprache", "-caname", "Example Issuing CA 1",
            "-out", pfx, "-passout", "pass:pw")  # fmt: skip
    expected = _openssl_friendly_names(pfx, "pw")
    assert expected == ["Zertifikat für Sprache", "Example Issuing CA 1"]
    result = run("show", pfx, "--password-env", "PW", "--view", "properties",
                 "--format", "json", env={"PW": "pw"})  # fmt: skip
    assert result.exit_code == 0, result.output
    certificates = json.loads(result.stdout)["certificates"]
    assert [c["friendly_name"] for c in certificates] == expected
    # The fixture's PFX names only the leaf (-name www); PEM files name nothing.
    text = run("show", pki.pfx, "--password-env", "PW", env={"PW": PFX_PASSWORD}).stdout
    assert _openssl_friendly_names(pki.pfx, PFX_PASSWORD) == ["www", None]
    assert [line for line in text.splitlines() if "Friendly name" in line] == [
        "  Friendly name:        www",
        "  Friendly name:        (none)",
    ]
    (record,) = json.loads(run("show", pki.leaf, "--format", "json").stdout)["certificates"]
    assert record["friendly_name"] is None


def test_show_pfx_wrong_password(pki: Pki) -> None:
    result = run("show", pki.pfx, "--password-env", "PFX_PW", env={"PFX_PW": "nope"})
    line = assert_error(result, str(pki.pfx), "wrong password for PKCS#12")
    assert "nope" not in line


def test_show_password_env_not_set(pki: Pki) -> None:
    result = run("show", pki.pfx, "--password-env", "SURELY_UNSET_VAR_X")
    assert_error(result, "environment variable SURELY_UNSET_VAR_X is not set")


def test_show_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    line = assert_error(run("show", missing))
    assert line == f"error: {missing}: cannot read: No such file or directory"


def test_show_wrong_kind_of_file(pki: Pki) -> None:
    assert_error(run("show", pki.csr), str(pki.csr), "holds a CERTIFICATE REQUEST")


def test_show_key_only_file(pki: Pki) -> None:
    assert_error(run("show", pki.leaf_key), f"{pki.leaf_key}: holds no certificate")


def test_show_url_options_need_a_url(pki: Pki) -> None:
    assert_error(run("show", pki.leaf, "--connect", "127.0.0.1"), "only apply to https://")


def test_show_plain_http_is_refused() -> None:
    assert_error(run("show", "http://example.test/"), "only https:// URLs")


def test_show_connection_refused_is_one_line() -> None:
    port = free_port()
    assert_error(
        run("show", f"https://127.0.0.1:{port}"),
        f"https://127.0.0.1:{port}: cannot fetch certificates from 127.0.0.1:{port}",
    )


def test_show_with_ca_reports_the_verified_chain(pki: Pki) -> None:
    result = run("show", pki.fullchain, "--ca", pki.root, "--format", "json")
    assert result.exit_code == 0, result.output
    verification = json.loads(result.stdout)["verification"]
    assert verification == {
        "verified": True,
        "chain": [LEAF_SUBJECT, INTER_SUBJECT, ROOT_SUBJECT],
        "problem": None,
    }
    text = run("show", pki.leaf, "--ca", pki.root, "--view", "properties").stdout
    assert "Chain: NOT verified: chain does not verify: no certificate for the issuer " in text


def _openssl_subject(path: Path, nameopt: str) -> str:
    out = openssl("x509", "-in", path, "-noout", "-subject", "-nameopt", nameopt).decode()
    return out.strip().removeprefix("subject=")


def test_show_dn_order_windows(pki: Pki) -> None:
    # Windows' certificate dialog lists a name least significant first: openssl's dn_rev.
    windows = "oneline,-space_eq,dn_rev"
    leaf, inter, root = (_openssl_subject(p, windows) for p in (pki.leaf, pki.inter, pki.root))
    assert leaf == 'CN=www.example.test, O="Example, Inc.", L=Portland, ST=Oregon, C=US'
    result = run("show", pki.fullchain, "--view", "v1", "--dn-order", "windows", "--ca", pki.root)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith("Certificate ")] == [
        f"Certificate 1 of 2: {leaf}",
        f"Certificate 2 of 2: {inter}",
    ]
    assert f"  Subject:              {leaf}" in lines
    assert f"  Issuer:               {inter}" in lines
    assert f"  Subject:              {inter}" in lines
    assert f"  Issuer:               {root}" in lines
    assert lines[-1] == f"Chain: verified: {leaf} -> {inter} -> {root}"
    # openssl's order stays the default.
    default = run("show", pki.leaf, "--view", "v1").stdout
    assert f"  Subject:              {_openssl_subject(pki.leaf, 'oneline,-space_eq')}" in default
    assert run("show", pki.leaf, "--dn-order", "ldap").exit_code == 2  # a usage error


def _provision(*args: str | Path, tz: str) -> subprocess.CompletedProcess[str]:
    # A process of its own: the C library reads TZ when Python starts.
    return subprocess.run([sys.executable, "-m", "provision", *map(str, args)],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "TZ": tz})  # fmt: skip


@pytest.fixture(scope="module")
def dated(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Valid from a winter to a summer day (northern hemisphere), signed by `openssl ca`."""
    d = tmp_path_factory.mktemp("dated")
    (d / "index.txt").touch()
    (d / "serial").write_text("01\n")
    config = d / "ca.cnf"
    config.write_text(f"""[ca]
default_ca = here
[here]
database = {d}/index.txt
new_certs_dir = {d}
serial = {d}/serial
default_md = sha256
policy = anything
unique_subject = no
[anything]
commonName = supplied
""")
    out = d / "dated.pem"
    openssl("ca", "-batch", "-config", config, "-cert", pki.root, "-keyfile", pki.root_key,
            "-in", pki.csr, "-out", out, "-notext",
            "-startdate", "20260115120000Z", "-enddate", "20260715120000Z")  # fmt: skip
    return out


def _local(moment: datetime, tz: str) -> str:
    """`date`'s ISO 8601 of a UTC moment in the time zone TZ says."""
    epoch = int(moment.replace(tzinfo=UTC).timestamp())
    return subprocess.run(["date", "-d", f"@{epoch}", "+%Y-%m-%dT%H:%M:%S%:z"],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "TZ": tz}).stdout.strip()  # fmt: skip


@pytest.mark.parametrize(
    "tz",
    [
        "EST5EDT,M3.2.0,M11.1.0",  # a POSIX rule: summer time without any zoneinfo file
        "Asia/Kathmandu",  # +05:45
        "UTC",
    ],
)
def test_show_local_time(dated: Path, tz: str) -> None:
    start, end = openssl_dates(dated)
    assert (start, end) == (datetime(2026, 1, 15, 12), datetime(2026, 7, 15, 12))
    result = _provision("cert", "show", dated, "--local-time", "--format", "json", tz=tz)
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(result.stdout)["certificates"]
    assert (record["valid_from"], record["valid_to"]) == (_local(start, tz), _local(end, tz))
    if tz.startswith("EST5EDT"):
        # The offset of each moment, not of today: winter and summer time.
        assert (record["valid_from"], record["valid_to"]) == (
            "2026-01-15T07:00:00-05:00",
            "2026-07-15T08:00:00-04:00",
        )
    text = _provision("cert", "show", dated, "--local-time", "--view", "v1", tz=tz).stdout
    assert f"  Valid to:             {_local(end, tz)}" in text.splitlines()
    # Without the option the dates stay UTC, whatever TZ says.
    utc = _provision("cert", "show", dated, "--format", "json", tz=tz)
    (record,) = json.loads(utc.stdout)["certificates"]
    assert record["valid_to"] == "2026-07-15T12:00:00Z"


def test_show_unknown_view_is_a_usage_error(pki: Pki) -> None:
    assert run("show", pki.leaf, "--view", "nope").exit_code == 2


def test_module_import_stays_light() -> None:
    # `provision --help` imports the CLI modules: cryptography must not come with it.
    code = (
        "import sys, provision.cli.cert; print('cryptography' in sys.modules, 'ssl' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parent.parent)  # fmt: skip
    assert out.stdout.split() == ["False", "False"]


# --- export ---------------------------------------------------------------------------------


def test_export_der_is_the_leaf_only(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "leaf.cer"
    result = run("export", pki.fullchain, "--to", "der", "--out", out)
    assert result.exit_code == 0, result.output
    assert thumbprint(out, "DER") == thumbprint(pki.leaf)
    assert out.read_bytes() == pki.leaf_der.read_bytes()


def test_export_der_from_pfx(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "from-pfx.cer"
    result = run("export", pki.pfx, "--to", "der", "--out", out, "--password-env", "PW",
                 env={"PW": PFX_PASSWORD})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == pki.leaf_der.read_bytes()
    assert b"PRIVATE" not in out.read_bytes()


def test_export_pem(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "leaf.pem"
    assert run("export", pki.leaf_der, "--to", "pem", "--out", out).exit_code == 0
    assert out.read_bytes() == pki.leaf.read_bytes()
    assert thumbprint(out) == thumbprint(pki.leaf)
    with_chain = tmp_path / "chain.pem"
    result = run("export", pki.leaf, "--to", "pem", "--chain", pki.inter, "--out", with_chain)
    assert result.exit_code == 0
    assert with_chain.read_bytes() == pki.fullchain.read_bytes()


def test_export_pkcs7_keeps_chain_order(pki: Pki, tmp_path: Path) -> None:
    chain = tmp_path / "inter-root.pem"
    chain.write_bytes(pki.inter.read_bytes() + pki.root.read_bytes())
    out = tmp_path / "chain.p7b"
    result = run("export", pki.leaf, "--to", "pkcs7", "--chain", chain, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {out} (pkcs7, 3 certificates)"
    printed = openssl("pkcs7", "-inform", "DER", "-in", out, "-print_certs", "-noout").decode()
    subjects = [
        line.split("=", 1)[1].replace(" = ", "=")
        for line in printed.splitlines()
        if line.startswith("subject")
    ]
    assert subjects == [LEAF_SUBJECT, INTER_SUBJECT, ROOT_SUBJECT]
    # Same bytes as openssl's own .p7b writer for the same order.
    expected = openssl("crl2pkcs7", "-nocrl", "-certfile", pki.leaf, "-certfile", pki.inter,
                       "-certfile", pki.root, "-outform", "DER")  # fmt: skip
    assert out.read_bytes() == expected


def _p7b_subjects(path: Path) -> list[str]:
    printed = openssl("pkcs7", "-inform", "DER", "-in", path, "-print_certs", "-noout").decode()
    return [
        line.split("=", 1)[1].replace(" = ", "=")
        for line in printed.splitlines()
        if line.startswith("subject")
    ]


def test_export_chain_repeats_in_the_order_given(pki: Pki, tmp_path: Path) -> None:
    # Windows' "include all certificates in the certification path": leaf, inter, root.
    out = tmp_path / "path.p7b"
    result = run("export", pki.leaf, "--to", "pkcs7", "--chain", pki.inter, "--chain", pki.root,
                 "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {out} (pkcs7, 3 certificates)"
    assert _p7b_subjects(out) == [LEAF_SUBJECT, INTER_SUBJECT, ROOT_SUBJECT]
    expected = openssl("crl2pkcs7", "-nocrl", "-certfile", pki.leaf, "-certfile", pki.inter,
                       "-certfile", pki.root, "-outform", "DER")  # fmt: skip
    assert out.read_bytes() == expected
    pem = tmp_path / "path.pem"
    result = run("export", pki.leaf_der, "--to", "pem", "--chain", pki.root, "--chain", pki.inter,
                 "--out", pem)  # fmt: skip
    assert result.exit_code == 0, result.output
    # In the order given, not sorted: the operator's order is the file's.
    assert pem.read_bytes() == b"".join(p.read_bytes() for p in (pki.leaf, pki.root, pki.inter))


def test_export_second_chain_unreadable_is_named(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    result = run("export", pki.leaf, "--to", "pem", "--chain", pki.inter, "--chain", missing,
                 "--out", tmp_path / "x.pem")  # fmt: skip
    line = assert_error(result)
    assert line == f"error: {missing}: cannot read: No such file or directory"
    assert not (tmp_path / "x.pem").exists()


def test_export_url_options_need_a_url(pki: Pki, tmp_path: Path) -> None:
    result = run("export", pki.leaf, "--to", "pem", "--out", tmp_path / "x.pem",
                 "--connect", "127.0.0.1")  # fmt: skip
    assert_error(result, "only apply to https://")


def test_export_connection_refused_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "x.pem"
    result = run("export", f"https://127.0.0.1:{port}", "--to", "pem", "--out", out)
    assert_error(
        result, f"https://127.0.0.1:{port}: cannot fetch certificates from 127.0.0.1:{port}"
    )
    assert not out.exists()


def test_export_pkcs7_drops_duplicates(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "dup.p7b"
    result = run("export", pki.fullchain, "--to", "pkcs7", "--chain", pki.inter, "--out", out)
    assert result.exit_code == 0
    printed = openssl("pkcs7", "-inform", "DER", "-in", out, "-print_certs", "-noout").decode()
    assert printed.count("subject=") == 2


def test_export_der_refuses_a_chain(pki: Pki, tmp_path: Path) -> None:
    result = run("export", pki.leaf, "--to", "der", "--chain", pki.inter, "--out",
                 tmp_path / "x.der")  # fmt: skip
    assert_error(result, "DER holds one certificate")
    assert not (tmp_path / "x.der").exists()


def test_export_is_atomic_and_replaces(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "out.pem"
    out.write_text("old content\n")
    assert run("export", pki.leaf, "--to", "pem", "--out", out).exit_code == 0
    assert out.read_bytes() == pki.leaf.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pem"]  # no temp file left
    assert out.stat().st_mode & 0o777 == 0o644


def test_export_into_missing_directory(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "missing" / "out.pem"
    line = assert_error(run("export", pki.leaf, "--to", "pem", "--out", out))
    assert line == f"error: {out}: cannot write: No such file or directory"


# --- check ----------------------------------------------------------------------------------


def test_check_covered_names(pki: Pki) -> None:
    result = run("check", pki.leaf, "--name", "www.example.test", "--name", "api.example.test",
                 "--name", "127.0.0.1", "--name", "2001:db8::1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{pki.leaf}: OK, valid at ")


def test_check_missing_names_one_line_each(pki: Pki) -> None:
    result = run("check", pki.leaf, "--name", "example.test", "--name", "a.b.example.test",
                 "--name", "www.example.test")  # fmt: skip
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{pki.leaf}: example.test: not covered by the DNS SANs (www.example.test, *.example.test)",
        f"{pki.leaf}: a.b.example.test: not covered by the DNS SANs "
        "(www.example.test, *.example.test)",
    ]


def test_check_ip_only_via_ip_san(pki: Pki) -> None:
    result = run("check", pki.ip_cn, "--name", "192.0.2.10")
    assert result.exit_code == 1
    assert "192.0.2.10: not covered (no IP Address SAN 192.0.2.10)" in result.stdout
    assert run("check", pki.ec, "--name", "192.0.2.7").exit_code == 0


def test_check_never_uses_the_common_name(pki: Pki) -> None:
    assert run("check", pki.no_san, "--name", "nosan.example.test").exit_code == 1


def test_check_at_before_and_after_validity(pki: Pki) -> None:
    start, end = openssl_dates(pki.leaf)
    before = (start - timedelta(days=1)).isoformat()  # naive: UTC
    result = run("check", pki.leaf, "--name", "www.example.test", "--at", before)
    assert result.exit_code == 1
    assert result.stdout.strip() == (
        f"{pki.leaf}: not valid before {start:%Y-%m-%dT%H:%M:%SZ} "
        f"(checked at {start - timedelta(days=1):%Y-%m-%dT%H:%M:%SZ})"
    )
    after = (end + timedelta(days=1)).date().isoformat()  # a bare date
    result = run("check", pki.leaf, "--name", "www.example.test", "--at", after)
    assert result.exit_code == 1
    assert f"expired on {end:%Y-%m-%dT%H:%M:%SZ}" in result.stdout
    inside = (start + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    assert run("check", pki.leaf, "--name", "www.example.test", "--at", inside).exit_code == 0


def test_check_bad_date(pki: Pki) -> None:
    result = run("check", pki.leaf, "--name", "www.example.test", "--at", "next tuesday")
    assert_error(result, "--at: 'next tuesday' is not an ISO 8601 date")


def test_check_with_ca(pki: Pki) -> None:
    ok = run("check", pki.fullchain, "--name", "www.example.test", "--ca", pki.root)
    assert ok.exit_code == 0, ok.output
    p7b = run("check", pki.p7b_der, "--name", "www.example.test", "--ca", pki.root)
    assert p7b.exit_code == 0, p7b.output
    missing = run("check", pki.leaf, "--name", "www.example.test", "--ca", pki.root)
    assert missing.exit_code == 1
    assert "missing intermediate" in missing.stdout
    wrong_root = run("check", pki.fullchain, "--name", "www.example.test", "--ca", pki.pss)
    assert wrong_root.exit_code == 1
    assert f"{pki.fullchain}: chain does not verify" in wrong_root.stdout


def test_check_needs_a_name(pki: Pki) -> None:
    assert run("check", pki.leaf).exit_code == 2


def test_check_unreadable_ca(pki: Pki, tmp_path: Path) -> None:
    result = run("check", pki.leaf, "--name", "www.example.test", "--ca", tmp_path / "no.pem")
    assert_error(result, "no.pem: cannot read")


def test_check_ca_without_a_certificate(pki: Pki) -> None:
    result = run("check", pki.leaf, "--name", "www.example.test", "--ca", pki.leaf_key)
    line = assert_error(result)
    assert line == f"error: {pki.leaf_key}: holds no certificate (--ca needs the root certificates)"


# --- refusals are sentences, never a library's debug structures -----------------------------


@dataclass(frozen=True)
class Issued:
    leaf: Path
    root: Path


def _ca(d: Path, name: str, *newkey: str) -> tuple[Path, Path]:
    key, pem = d / f"{name}.key", d / f"{name}.pem"
    openssl("req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", pem, "-days", "30",
            "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    return pem, key


def _issue(d: Path, name: str, pki: Pki, ca: tuple[Path, Path], *options: str,
           extensions: str = "") -> Path:  # fmt: skip
    ext = d / f"{name}.ext"
    ext.write_text("subjectAltName=DNS:req.test\n" + extensions)
    out = d / f"{name}.pem"
    openssl("x509", "-req", "-in", pki.csr, "-CA", ca[0], "-CAkey", ca[1], "-days", "10",
            "-extfile", ext, *options, "-out", out)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def odd(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Issued]:
    """Chains cryptography's web PKI verifier refuses with a Rust debug structure
    ("Forbidden signature algorithm: AlgorithmIdentifier { oid: DefinedByMarker(...) }"),
    or whose extensions it cannot parse, all made by openssl."""
    d = tmp_path_factory.mktemp("odd")
    rsa_root = (pki.root, pki.root_key)
    ed_root = _ca(d, "Ed25519 Root", "-newkey", "ed25519")
    k1_root = _ca(d, "secp256k1 Root", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1")
    weak_root = _ca(d, "Weak Root", "-newkey", "rsa:1024")
    pss_sha512_salt_20 = ("-sha512", "-sigopt", "rsa_padding_mode:pss", "-sigopt",
                          "rsa_pss_saltlen:20")  # fmt: skip
    return {
        "ed25519-signature": Issued(_issue(d, "by-ed", pki, ed_root), ed_root[0]),
        "pss-parameters": Issued(_issue(d, "pss", pki, rsa_root, *pss_sha512_salt_20), pki.root),
        "md5-signature": Issued(_issue(d, "md5", pki, rsa_root, "-md5"), pki.root),
        "secp256k1-ca": Issued(_issue(d, "by-k1", pki, k1_root), k1_root[0]),
        "weak-rsa-ca": Issued(_issue(d, "by-weak", pki, weak_root), weak_root[0]),
        # A BOOLEAN whose content byte is 02 (DER allows only 00 and FF).
        "malformed-extension": Issued(
            _issue(d, "malformed", pki, rsa_root, extensions="2.5.29.19=critical,DER:3003010102"),
            pki.root,
        ),
    }


def _openssl_text(path: Path) -> str:
    return openssl("x509", "-in", path, "-noout", "-text").decode()


@pytest.mark.parametrize(
    ("case", "openssl_says", "words"),
    [
        ("ed25519-signature", "Signature Algorithm: ED25519",
         "CN=req.test is signed with ED25519, an algorithm the web PKI rules do not allow "
         "(they allow RSA and ECDSA signatures with SHA-256, SHA-384 or SHA-512)"),
        ("pss-parameters", "Salt Length: 0x14",
         "CN=req.test is signed with RSA-PSS with parameters the web PKI rules do not allow "
         "(SHA-256, SHA-384 or SHA-512 for both the hash and MGF1, and a salt as long as the "
         "hash)"),
        ("md5-signature", "Signature Algorithm: md5WithRSAEncryption",
         "CN=req.test is signed with md5WithRSAEncryption, an algorithm the web PKI rules do "
         "not allow (they allow RSA and ECDSA signatures with SHA-256, SHA-384 or SHA-512)"),
        ("secp256k1-ca", "ASN1 OID: secp256k1",
         "the key of CN=secp256k1 Root, which issued CN=req.test, is EC secp256k1, which the "
         "web PKI rules do not allow for a CA (they allow RSA of 2048 bits or more and EC "
         "P-256, P-384 or P-521)"),
        ("weak-rsa-ca", "Public-Key: (1024 bit)",
         "the key of CN=Weak Root, which issued CN=req.test, is RSA of 1024 bits, which the "
         "web PKI rules do not allow for a CA (they allow RSA of 2048 bits or more and EC "
         "P-256, P-384 or P-521)"),
    ],
)  # fmt: skip
def test_check_ca_refusal_names_the_algorithm(
    odd: dict[str, Issued], case: str, openssl_says: str, words: str
) -> None:
    issued = odd[case]
    # What the message names is what openssl reads in the certificate at fault.
    at_fault = issued.root if case.endswith("-ca") else issued.leaf
    assert openssl_says in _openssl_text(at_fault)
    result = run("check", issued.leaf, "--name", "req.test", "--ca", issued.root)
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [f"{issued.leaf}: chain does not verify: {words}"]
    shown = run("show", issued.leaf, "--ca", issued.root, "--format", "json")
    assert json.loads(shown.stdout)["verification"]["problem"] == f"chain does not verify: {words}"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("ed25519-signature", "Forbidden public key algorithm"),  # the root's key, first
        ("pss-parameters", "Forbidden signature algorithm"),
        ("secp256k1-ca", "Forbidden public key algorithm"),
        ("weak-rsa-ca", "RSA key is too weak"),
    ],
)
def test_cryptographys_own_reason_is_cut_before_its_debug_structures(
    odd: dict[str, Issued], case: str, reason: str
) -> None:
    # The last resort, when no rule of ours names the problem: cryptography's reason, with
    # its prefixes and the Rust or Python structures it appends taken off.
    from datetime import UTC, datetime

    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    from provision.crypto import chains

    issued = odd[case]
    leaf = x509.load_pem_x509_certificate(issued.leaf.read_bytes())
    root = x509.load_pem_x509_certificate(issued.root.read_bytes())
    verifier = PolicyBuilder().store(Store([root])).time(datetime.now(UTC)).build_client_verifier()
    with pytest.raises(VerificationError) as refused:
        verifier.verify(leaf, [])
    assert chains._reason(str(refused.value)) == reason


def test_unreadable_extensions_are_one_line(odd: dict[str, Issued], tmp_path: Path) -> None:
    malformed = odd["malformed-extension"].leaf
    assert "X509v3 Basic Constraints: critical" in _openssl_text(malformed)
    expected = (
        f"error: {malformed}: certificate 1 (CN=req.test): an extension is malformed "
        "(its value is not what its type requires)"
    )
    assert assert_error(run("show", malformed)) == expected
    assert assert_error(run("check", malformed, "--name", "req.test")) == expected
    # As a root given to --ca, named as that file.
    ok = odd["md5-signature"]
    result = run("check", ok.leaf, "--name", "req.test", "--ca", malformed)
    assert assert_error(result) == expected


def test_a_duplicated_extension_is_named(pki: Pki, tmp_path: Path) -> None:
    # openssl merges a repeated extension when it signs, so the copy is made here: a second
    # extension 1.2.3.4 renamed to Basic Constraints inside the signed part, then signed again.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    leaf = x509.load_pem_x509_certificate(pki.leaf.read_bytes())
    root_key = serialization.load_pem_private_key(pki.root_key.read_bytes(), None)
    assert isinstance(root_key, rsa.RSAPrivateKey)
    placeholder = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"), b"\x30\x00")
    builder = (
        x509.CertificateBuilder()
        .subject_name(leaf.subject)
        .issuer_name(leaf.issuer)
        .public_key(leaf.public_key())
        .serial_number(99)
        .not_valid_before(leaf.not_valid_before_utc)
        .not_valid_after(leaf.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(placeholder, critical=False)
    )
    tbs = builder.sign(root_key, hashes.SHA256()).tbs_certificate_bytes
    tbs = tbs.replace(bytes.fromhex("06032a0304"), bytes.fromhex("0603551d13"))

    def tlv(tag: int, body: bytes) -> bytes:
        size = len(body).to_bytes((len(body).bit_length() + 7) // 8 or 1, "big")
        return (
            bytes([tag]) + (size if len(body) < 0x80 else bytes([0x80 | len(size)]) + size) + body
        )

    signature = root_key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    sha256_rsa = bytes.fromhex("300d06092a864886f70d01010b0500")
    der = tlv(0x30, tbs + sha256_rsa + tlv(0x03, b"\x00" + signature))
    path = tmp_path / "twice.cer"
    path.write_bytes(der)
    text = openssl("x509", "-in", path, "-inform", "DER", "-noout", "-text").decode()
    assert text.count("X509v3 Basic Constraints") == 2  # openssl reads both
    line = assert_error(run("show", path))
    assert line == (
        f"error: {path}: certificate 1 ({LEAF_SUBJECT}): the extension X509v3 Basic "
        "Constraints (2.5.29.19) appears twice"
    )


# --- URL mode against a real nginx ---------------------------------------------------------


@dataclass(frozen=True)
class Nginx:
    port: int


@pytest.fixture(scope="module")
def nginx(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    prefix = tmp_path_factory.mktemp("nginx")
    port = free_port()
    servers = f"""    # Without SNI (or an unknown name) clients get the EC certificate.
    server {{
        listen 127.0.0.1:{port} ssl default_server;
        ssl_certificate {pki.ec};
        ssl_certificate_key {pki.ec_key};
        return 404;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name www.example.test localhost;
        ssl_certificate {pki.fullchain};
        ssl_certificate_key {pki.leaf_key};
        return 200 "ok\\n";
    }}
"""
    with running_nginx(prefix, servers, [port]):
        yield Nginx(port)


def _subjects(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [c["subject"]["openssl"] for c in json.loads(result.stdout)["certificates"]]


@pytest.mark.integration
def test_url_show_fetches_the_whole_chain(nginx: Nginx, pki: Pki) -> None:
    result = run("show", f"https://localhost:{nginx.port}", "--connect", "127.0.0.1",
                 "--format", "json")  # fmt: skip
    assert _subjects(result) == [LEAF_SUBJECT, INTER_SUBJECT]
    served = json.loads(result.stdout)["certificates"]
    assert [c["thumbprints"]["sha1"] for c in served] == [
        thumbprint(pki.leaf),
        thumbprint(pki.inter),
    ]


@pytest.mark.integration
def test_url_check_with_ca(nginx: Nginx, pki: Pki) -> None:
    url = f"https://www.example.test:{nginx.port}"
    ok = run("check", url, "--connect", "127.0.0.1", "--name", "www.example.test",
             "--ca", pki.root)  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith(f"{url}: OK, valid at ")
    wrong = run("check", url, "--connect", "127.0.0.1", "--name", "other.example.org",
                "--ca", pki.root)  # fmt: skip
    assert wrong.exit_code == 1
    assert wrong.stdout.splitlines() == [
        f"{url}: other.example.org: not covered by the DNS SANs (www.example.test, *.example.test)"
    ]


@pytest.mark.integration
def test_url_sni(nginx: Nginx) -> None:
    # An IP address in the URL sends no SNI: nginx answers with its default server.
    assert _subjects(run("show", f"https://127.0.0.1:{nginx.port}", "--format", "json")) == [
        "CN=ec.example.test"
    ]
    named = run("show", f"https://127.0.0.1:{nginx.port}", "--servername", "www.example.test",
                "--format", "json")  # fmt: skip
    assert _subjects(named) == [LEAF_SUBJECT, INTER_SUBJECT]


@pytest.mark.integration
def test_url_export_writes_the_served_chain(nginx: Nginx, pki: Pki, tmp_path: Path) -> None:
    url = f"https://www.example.test:{nginx.port}"
    pem = tmp_path / "served.pem"
    result = run("export", url, "--connect", "127.0.0.1", "--to", "pem", "--out", pem)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {pem} (pem, 2 certificates)"
    assert pem.read_bytes() == pki.fullchain.read_bytes()  # what nginx was given to serve
    # The served chain and the root beside it: the whole path in one .p7b, as Windows writes.
    p7b = tmp_path / "served.p7b"
    result = run("export", url, "--connect", "127.0.0.1", "--to", "pkcs7", "--chain", pki.root,
                 "--out", p7b)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _p7b_subjects(p7b) == [LEAF_SUBJECT, INTER_SUBJECT, ROOT_SUBJECT]
    der = tmp_path / "served.cer"
    sni = run("export", f"https://127.0.0.1:{nginx.port}", "--servername", "www.example.test",
              "--to", "der", "--out", der)  # fmt: skip
    assert sni.exit_code == 0, sni.output
    assert der.read_bytes() == pki.leaf_der.read_bytes()


@pytest.mark.integration
def test_url_openssl_fallback_gives_the_same_chain(nginx: Nginx) -> None:
    def der(certs: list[x509.Certificate]) -> list[bytes]:
        return [c.public_bytes(serialization.Encoding.DER) for c in certs]

    via_ssl = fetch_chain("www.example.test", nginx.port, connect="127.0.0.1", method="ssl")
    via_openssl = fetch_chain("www.example.test", nginx.port, connect="127.0.0.1",
                              method="openssl")  # fmt: skip
    assert len(via_ssl) == 2
    assert der(via_ssl) == der(via_openssl)
