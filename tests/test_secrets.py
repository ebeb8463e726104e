"""Secrets never leak: no private key and no password in anything `provision` prints or saves.

Two fleets are provisioned in temporary copies of the project. Commands run in-process (the
CLI's stdout and stderr captured) except each fleet's first apply, which runs as a process of
its own so that whatever reaches the real stdout or stderr by any route is captured too:

- the internal-CA example (``playbooks/callmanager-https-ca.yml``: an authority key, RSA keys,
  PFX files under ``PFX_PASSWORD``), including a drifted key file and a rotated PFX password;
- a ``provided`` PFX from a third party (made by ``openssl``), under its own password, and the
  same with a wrong password.

Every output, and every file the runs left that is not itself a key file, is then searched for
a PEM private-key block, 40-character slices of the base64 of every key's DER, slices of the
hex and decimal of its private numbers, and the passwords.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import sys
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ROOT, require_tool
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from typer.testing import CliRunner

PFX_PASSWORD = "Pfx-Secret-q7Zx3v"
ROTATED_PFX_PASSWORD = "Rotated-Secret-k2Lw9p"
SUPPLIED_PASSWORD = "Supplied-Secret-m4Rt8n"
WRONG_PASSWORD = "Wrong-Secret-h6Yc1d"
PASSWORDS = (PFX_PASSWORD, ROTATED_PFX_PASSWORD, SUPPLIED_PASSWORD, WRONG_PASSWORD)

CA_PLAYBOOK = "playbooks/callmanager-https-ca.yml"
PROVIDED_PLAYBOOK = "playbooks/provided-pfx.yml"
INVENTORY = "inventory/example.yml"
FQDNS = (
    "cm-pub-01.voice.example.com",
    "cm-sub-01.voice.example.com",
    "cm-sub-02.voice.example.com",
)
KEY_SUFFIXES = (".key", ".pfx", ".p12")

PROVIDED = """\
name: CallManager HTTPS (third-party PFX)
hosts: callmanager
certificates_dir: "{{ certificates_dir }}"
certificates:
  - name: httpscert
    source: {type: provided, certificate: files/supplied.pfx,
             password: {env: SUPPLIED_PFX_PASSWORD}}
    names: ["{{ host.fqdn }}"]
    outputs:
      - {file: httpscert.pem, format: pem, content: fullchain}
      - {file: httpscert.key, format: pem, content: key}
      - {file: httpscert.pfx, format: pkcs12, password: {env: PFX_PASSWORD}}
sites:
  - name: Default Web Site
    server: nginx
    config: "{{ certificates_dir }}/../nginx/default-web-site.conf"
    reload: false
    bindings:
      - {protocol: https, port: 443, certificate: httpscert}
"""

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass
class Fleet:
    """A provisioned copy of the project and everything the runs printed, by label."""

    folder: Path
    printed: dict[str, str] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)

    def run(
        self, label: str, *args: str, env: dict[str, str] | None = None, process: bool = False
    ) -> str:
        """``provision ARGS`` in the fleet's folder: in-process (fast), or as a process of its
        own with ``process`` (everything that reaches the real stdout and stderr)."""
        environment: dict[str, str | None] = {
            "PFX_PASSWORD": None,
            "SUPPLIED_PFX_PASSWORD": None,
            "COLUMNS": "200",
        }
        environment.update(env or {})
        if process:
            full = {k: v for k, v in {**os.environ, **environment}.items() if v is not None}
            result = subprocess.run(
                [sys.executable, "-m", "provision", *args],
                cwd=self.folder,
                env=full,
                capture_output=True,
                timeout=300,
                check=False,
            )
            code, text = result.returncode, (result.stdout + result.stderr).decode(errors="replace")
        else:
            code, text = self._in_process(args, environment)
        self.printed[label] = text
        self.exit_codes[label] = code
        return text

    def _in_process(self, args: tuple[str, ...], env: dict[str, str | None]) -> tuple[int, str]:
        from provision.cli import _mount_subcommands, app

        _mount_subcommands()
        old = Path.cwd()
        os.chdir(self.folder)
        try:
            result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=True)
        finally:
            os.chdir(old)
        text = result.stdout + result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            assert result.exc_info is not None
            text += "".join(traceback.format_exception(*result.exc_info))
        return result.exit_code, text

    def run_all(self, commands: dict[str, tuple[tuple[str, ...], dict[str, str]]]) -> None:
        for label, (args, env) in commands.items():
            self.run(label, *args, env=env)

    def files(self) -> Iterator[Path]:
        for path in sorted(self.folder.rglob("*")):
            if path.is_file() and not path.is_symlink() and "templates" not in path.parts:
                yield path


def _copy_project(folder: Path) -> Path:
    for name in ("playbooks", "inventory", "templates"):
        shutil.copytree(ROOT / name, folder / name)
    shutil.rmtree(folder / "playbooks" / "pki", ignore_errors=True)  # made by the first apply
    return folder


@pytest.fixture(scope="module")
def internal_ca(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    fleet = Fleet(_copy_project(tmp_path_factory.mktemp("internal-ca")))
    env = {"PFX_PASSWORD": PFX_PASSWORD}
    base = (CA_PLAYBOOK, "-i", INVENTORY)
    fleet.run_all(
        {
            "plan": (("plan", *base), env),
            "plan --format json": (("plan", *base, "--format", "json"), env),
            "plan --format markdown": (("plan", *base, "--format", "markdown"), env),
            "plan --out PLAN.json": (("plan", *base, "--out", "PLAN.json"), env),
        }
    )
    fleet.run("apply --format json", "apply", *base, "--format", "json", env=env, process=True)
    fleet.run("apply (again)", "apply", *base, env=env)
    certificates = fleet.folder / ".provision" / "fleet" / "cm-pub-01" / "certificates"
    # A key file someone edited: plan and apply must say so without showing either version.
    with (certificates / "httpscert.key").open("a") as key_file:
        key_file.write("# edited by hand\n")
    pfx = str(certificates / "httpscert.pfx")
    fleet.run_all(
        {
            "plan (key edited)": (("plan", *base), env),
            "plan --format json (key edited)": (("plan", *base, "--format", "json"), env),
            "plan --format markdown (key edited)": (("plan", *base, "--format", "markdown"), env),
            "plan --out PLAN-edited.json": (("plan", *base, "--out", "PLAN-edited.json"), env),
            "status": (("status", *base), env),
            "status --format json": (("status", *base, "--format", "json"), env),
            "status --format prometheus": (("status", *base, "--format", "prometheus"), env),
            "report": (("report", *base), env),
            "cert show PFX": (("cert", "show", pfx, "--password-env", "PFX_PASSWORD"), env),
            "cert show PFX --format json": (
                ("cert", "show", pfx, "--password-env", "PFX_PASSWORD", "--format", "json"),
                env,
            ),
            "cert show PFX (wrong password)": (
                ("cert", "show", pfx, "--password-env", "WRONG"),
                {**env, "WRONG": WRONG_PASSWORD},
            ),
            "cert show key": (("cert", "show", str(certificates / "httpscert.key")), env),
            # The PFX password changed in the environment: the PFX on the host no longer opens.
            "plan (PFX password rotated)": (
                ("plan", *base),
                {"PFX_PASSWORD": ROTATED_PFX_PASSWORD},
            ),
        }
    )
    fleet.run("apply (repairs the key)", "apply", *base, env=env)
    fleet.run(
        "apply (PFX password rotated)", "apply", *base, env={"PFX_PASSWORD": ROTATED_PFX_PASSWORD}
    )
    fleet.run(
        "apply PLAN.json (stale plan)",
        "apply",
        "PLAN.json",
        env={"PFX_PASSWORD": ROTATED_PFX_PASSWORD},
    )
    # A rotation of the authority: a second CA key beside the first, a cross-signed root,
    # every leaf reissued by the new key (issue 18, item 3).
    rotated = {"PFX_PASSWORD": ROTATED_PFX_PASSWORD}
    rotate = ("ca", "rotate", CA_PLAYBOOK, "voice-root")
    fleet.run_all(
        {
            "ca rotate --cross-sign": ((*rotate, "--cross-sign"), rotated),
            "ca rotate --cross-sign (again)": ((*rotate, "--cross-sign"), rotated),
            "plan (rotation phase 1)": (("plan", *base), rotated),
            "apply (rotation phase 1)": (("apply", *base), rotated),
            "ca rotate --phase 2": ((*rotate, "--phase", "2"), rotated),
            "plan --format json (rotation phase 2)": (("plan", *base, "--format", "json"), rotated),
            "apply (rotation phase 2)": (("apply", *base), rotated),
            "status (rotation phase 2)": (("status", *base), rotated),
        }
    )
    return fleet


@pytest.fixture(scope="module")
def provided(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    require_tool("openssl")
    fleet = Fleet(_copy_project(tmp_path_factory.mktemp("provided")))
    files = fleet.folder / "playbooks" / "files"
    files.mkdir()
    sans = ",".join(f"DNS:{name}" for name in FQDNS)
    for args in (
        (
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "supplied.key",
            "-out",
            "supplied.crt",
            "-days",
            "365",
            "-subj",
            "/CN=cm-pub-01.voice.example.com",
            "-addext",
            f"subjectAltName={sans}",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ),
        (
            "pkcs12",
            "-export",
            "-in",
            "supplied.crt",
            "-inkey",
            "supplied.key",
            "-out",
            "supplied.pfx",
            "-passout",
            "env:SUPPLIED_PFX_PASSWORD",
        ),
    ):
        subprocess.run(
            ["openssl", *args],
            cwd=files,
            check=True,
            capture_output=True,
            env={**os.environ, "SUPPLIED_PFX_PASSWORD": SUPPLIED_PASSWORD},
        )
    # The third party's key stays only inside its PFX, as it would arrive.
    (files / "supplied-key.pem").write_bytes((files / "supplied.key").read_bytes())
    (files / "supplied.key").unlink()
    (files / "supplied-key.pem").chmod(0o600)
    (fleet.folder / PROVIDED_PLAYBOOK).write_text(PROVIDED)
    env = {"PFX_PASSWORD": PFX_PASSWORD, "SUPPLIED_PFX_PASSWORD": SUPPLIED_PASSWORD}
    wrong = {**env, "SUPPLIED_PFX_PASSWORD": WRONG_PASSWORD}
    base = (PROVIDED_PLAYBOOK, "-i", INVENTORY)
    supplied = str(files / "supplied.pfx")
    fleet.run_all(
        {
            "plan": (("plan", *base), env),
            "plan --format json": (("plan", *base, "--format", "json"), env),
            "plan --format markdown": (("plan", *base, "--format", "markdown"), env),
            "plan --out PLAN.json": (("plan", *base, "--out", "PLAN.json"), env),
            "validate (wrong password)": (("validate", *base), wrong),
            "plan (wrong password)": (("plan", *base), wrong),
            "apply (wrong password)": (("apply", *base), wrong),
            "cert show supplied PFX": (
                ("cert", "show", supplied, "--password-env", "PW"),
                {"PW": SUPPLIED_PASSWORD},
            ),
            "cert show supplied PFX (wrong password)": (
                ("cert", "show", supplied, "--password-env", "PW"),
                {"PW": WRONG_PASSWORD},
            ),
        }
    )
    fleet.run("apply", "apply", *base, env=env, process=True)
    fleet.run("apply --format json", "apply", *base, "--format", "json", env=env)
    fleet.run_all(
        {
            "status": (("status", *base), env),
            "status --format json": (("status", *base, "--format", "json"), env),
            "status --format prometheus": (("status", *base, "--format", "prometheus"), env),
            "report": (("report", *base), env),
            "cert show PFX": (
                (
                    "cert",
                    "show",
                    str(
                        fleet.folder
                        / ".provision"
                        / "fleet"
                        / "cm-pub-01"
                        / "certificates"
                        / "httpscert.pfx"
                    ),
                    "--password-env",
                    "PFX_PASSWORD",
                ),
                env,
            ),
        }
    )
    return fleet


# --- what counts as a leak --------------------------------------------------------------------


def _is_key_file(path: Path) -> bool:
    return path.suffix in KEY_SUFFIXES or path.name == "supplied-key.pem"


def _load_key(path: Path) -> PrivateKey | None:
    data = path.read_bytes()
    if path.suffix in (".pfx", ".p12"):
        for password in PASSWORDS:
            try:
                key, _, _ = pkcs12.load_key_and_certificates(data, password.encode())
            except ValueError:
                continue
            return key  # type: ignore[return-value]
        raise AssertionError(f"{path}: opens with none of the test's passwords")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError:
        return None  # a key file someone edited (see the fixture): its original is elsewhere
    return key  # type: ignore[return-value]


def _slices(text: str, width: int = 40, step: int = 20) -> list[str]:
    return [text[i : i + width] for i in range(0, max(len(text) - width, 0) + 1, step)]


def _private_numbers(key: PrivateKey) -> list[int]:
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        return [numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return [key.private_numbers().private_value]
    return [int.from_bytes(key.private_bytes_raw(), "big")]


def secret_fragments(keys: Iterable[PrivateKey], public: str) -> dict[str, str]:
    """Fragment -> what it is. Slices that also occur in public material (a certificate,
    the public key) are left out: seeing those is no leak."""
    fragments: dict[str, str] = {password: "a password" for password in PASSWORDS}
    for index, key in enumerate(keys):
        for form in (
            serialization.PrivateFormat.PKCS8,
            serialization.PrivateFormat.TraditionalOpenSSL,
        ):
            if (
                isinstance(key, ed25519.Ed25519PrivateKey)
                and form != serialization.PrivateFormat.PKCS8
            ):
                continue
            der = key.private_bytes(serialization.Encoding.DER, form, serialization.NoEncryption())
            for piece in _slices(base64.b64encode(der).decode()):
                fragments.setdefault(piece, f"key {index}: base64 of its {form} DER")
        for number in _private_numbers(key):
            hex_digits = f"{number:x}"
            for piece in _slices(hex_digits):
                fragments.setdefault(piece, f"key {index}: hex of a private number")
            pairs = ":".join(hex_digits[i : i + 2] for i in range(0, len(hex_digits), 2))
            for piece in _slices(pairs, 59, 30):  # openssl's colon-separated form
                fragments.setdefault(piece, f"key {index}: hex of a private number")
            for piece in _slices(str(number)):
                fragments.setdefault(piece, f"key {index}: decimal of a private number")
    return {
        piece: what
        for piece, what in fragments.items()
        if piece.lower() not in public and len(piece) >= 16
    }


def _public_text(fleet: Fleet, keys: Iterable[PrivateKey]) -> str:
    """Everything public, in the forms output could carry it: certificates and public keys."""
    parts = []
    for path in fleet.files():
        if path.suffix in (".pem", ".crt", ".cer", ".p7b"):
            data = path.read_bytes()
            parts.append(base64.b64encode(data).decode())
            parts.append(data.decode(errors="replace").replace("\n", ""))
    for key in keys:
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        parts.append(base64.b64encode(spki).decode())
        parts.append(spki.hex())
    return "\n".join(parts).lower()


def find_leaks(fleet: Fleet) -> list[str]:
    unique: dict[bytes, PrivateKey] = {}
    for path in fleet.files():
        if _is_key_file(path) and (key := _load_key(path)) is not None:
            unique.setdefault(
                key.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
                key,
            )
    keys = list(unique.values())
    assert keys, "the runs made no key: nothing was tested"
    fragments = secret_fragments(keys, _public_text(fleet, keys))
    texts = {f"output of `{label}`": text for label, text in fleet.printed.items()}
    for path in fleet.files():
        if not _is_key_file(path):
            texts[f"file {path.relative_to(fleet.folder)}"] = path.read_bytes().decode(
                errors="replace"
            )
    leaks = []
    for where, text in texts.items():
        flat = "".join(text.split()).lower()
        if "PRIVATE KEY-----" in text:
            leaks.append(f"{where}: a PEM private key block")
        for piece, what in fragments.items():
            if piece in text or piece.lower() in flat:
                leaks.append(f"{where}: {what} ({piece[:12]}...)")
                break
    return leaks


# --- the tests --------------------------------------------------------------------------------


def test_the_runs_did_what_they_should(internal_ca: Fleet, provided: Fleet) -> None:
    """So that the leak tests below search real output, not error messages alone."""
    codes = internal_ca.exit_codes
    assert codes["apply --format json"] == 0, internal_ca.printed["apply --format json"]
    assert codes["apply (repairs the key)"] == 0, internal_ca.printed["apply (repairs the key)"]
    assert codes["status"] == 0 and codes["cert show PFX"] == 0
    assert "Certificate 1 of 2" in internal_ca.printed["cert show PFX"]
    assert "httpscert.key" in internal_ca.printed["plan (key edited)"]
    assert (internal_ca.folder / "PLAN.json").exists()
    assert codes["apply (rotation phase 2)"] == 0, internal_ca.printed["apply (rotation phase 2)"]
    assert "rotating, phase 2" in internal_ca.printed["plan --format json (rotation phase 2)"]
    assert "phase 2 of 3" in internal_ca.printed["status (rotation phase 2)"]
    assert provided.exit_codes["apply"] == 0, provided.printed["apply"]
    assert provided.exit_codes["cert show supplied PFX"] == 0
    for label, text in [*internal_ca.printed.items(), *provided.printed.items()]:
        assert "Traceback" not in text, f"{label}:\n{text}"


def test_nothing_printed_or_saved_holds_a_key_or_password(internal_ca: Fleet) -> None:
    assert find_leaks(internal_ca) == []


def test_a_provided_pfx_leaks_nothing(provided: Fleet) -> None:
    assert find_leaks(provided) == []


@pytest.mark.parametrize(
    "label",
    [
        "validate (wrong password)",
        "plan (wrong password)",
        "apply (wrong password)",
        "cert show supplied PFX (wrong password)",
    ],
)
def test_a_wrong_pfx_password_is_refused_without_echoing_it(provided: Fleet, label: str) -> None:
    text = provided.printed[label]
    assert provided.exit_codes[label] == 1, text
    assert "wrong password" in text, text
    assert WRONG_PASSWORD not in text and SUPPLIED_PASSWORD not in text, text


def test_a_rotated_pfx_password_is_not_echoed(internal_ca: Fleet) -> None:
    for label in (
        "plan (PFX password rotated)",
        "apply (PFX password rotated)",
        "cert show PFX (wrong password)",
    ):
        text = internal_ca.printed[label]
        assert PFX_PASSWORD not in text and ROTATED_PFX_PASSWORD not in text, text
        assert WRONG_PASSWORD not in text, text


@pytest.mark.parametrize("fleet_name", ["internal_ca", "provided"])
def test_key_files_are_private(fleet_name: str, request: pytest.FixtureRequest) -> None:
    fleet: Fleet = request.getfixturevalue(fleet_name)
    checked = 0
    for path in fleet.files():
        holds_key = _is_key_file(path) or b"PRIVATE KEY-----" in path.read_bytes()
        if not holds_key or path.parent.name == "files":
            continue  # the third party's files are the test's, not provision's
        checked += 1
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o600, f"{path} is {mode:o}"
        assert _is_key_file(path), f"{path} holds a private key but is not a key output"
        for folder in (path.parent, *path.parent.parents):
            if folder == fleet.folder:
                break
            folder_mode = stat.S_IMODE(folder.stat().st_mode)
            assert not folder_mode & 0o002, f"{folder} is world-writable ({folder_mode:o})"
    assert checked >= 6, "expected key files for every host"


def test_the_leak_search_finds_leaks(internal_ca: Fleet) -> None:
    """The search itself works: a key's PEM body without its header lines, the hex of its
    private exponent, and a password are each found (so an empty list above means something)."""
    key_file = (
        internal_ca.folder / ".provision" / "fleet" / "cm-sub-01" / "certificates" / "httpscert.key"
    )
    key = _load_key(key_file)
    assert isinstance(key, rsa.RSAPrivateKey)
    body = "".join(line for line in key_file.read_text().splitlines() if "-----" not in line)
    samples = {
        "a PEM body": body[800:1000],  # inside the private numbers (the modulus is public)
        "a private exponent": f"d = {key.private_numbers().d:x}",
        "a password": f"using {PFX_PASSWORD}",
    }
    for what, sample in samples.items():
        probe = Fleet(internal_ca.folder, printed={what: sample})
        assert any(what in leak for leak in find_leaks(probe)), what


def test_a_pfx_from_a_self_signed_supplied_certificate_holds_it_once(provided: Fleet) -> None:
    """A self-signed supplied certificate is its own root: its PFX holds it once, not also as
    an extra certificate (found by this suite; fixed in supplied.py)."""
    pfx = provided.folder / ".provision" / "fleet" / "cm-pub-01" / "certificates" / "httpscert.pfx"
    _, leaf, extras = pkcs12.load_key_and_certificates(pfx.read_bytes(), PFX_PASSWORD.encode())
    assert leaf is not None
    assert leaf not in extras, "the PFX holds its own leaf again among the extra certificates"
