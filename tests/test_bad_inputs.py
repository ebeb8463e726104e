"""The corpus of hostile and broken inputs in tests/bad_inputs/, each run through the CLI.

Every case is a folder: ``playbook.yml`` (unless a setup below generates it), an optional
``inventory.yml`` (else ``default-inventory.yml``), optional ``templates/``, an optional ``env``
(``NAME=value`` lines for the run) and ``expected.txt``: regular expressions, one a line, each
of which must match the output. The case is copied with the repository's templates into a
temporary folder and run as a person would type it::

    provision apply playbook.yml -i inventory.yml

and must end with exit status 1, no traceback, the expected message (naming file and line), and
the folder exactly as it was: every file, directory and symlink, with content, mode and mtime.
The one write allowed is the retry file a failed apply leaves beside the playbook
(``playbook.retry``, naming the failed hosts); a case expecting one says what it must hold in
``retry.txt``. A case that shows a bug elsewhere has ``xfail.txt`` (the reason, then optionally
``raises: DiskChanged`` when only the unchanged-disk check fails).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT, require_tool
from typer.testing import CliRunner

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
DEFAULT_INVENTORY = CORPUS / "default-inventory.yml"
PFX_PASSWORD = "right-password-0c4e"
ELSEWHERE_CONTENT = b"not provision's file: must never be written through a symlink\n"


class DiskChanged(AssertionError):
    """The run changed the case's folder (or a file outside it)."""


# --- PKI made with the openssl command line, once per session ---------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)}: {result.stderr.decode()}")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A supplied leaf (key, certificate, CSR, PFX, a truncated copy) and a CA with a stray key."""
    require_tool("openssl")
    folder = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.crt",
        "-days",
        "365",
        "-subj",
        "/CN=web-01.example.com",
        "-addext",
        "subjectAltName=DNS:web-01.example.com,IP:10.0.0.1",
        "-addext",
        "extendedKeyUsage=serverAuth",
        cwd=folder,
    )
    _openssl(
        "req",
        "-new",
        "-key",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=web-01.example.com",
        cwd=folder,
    )
    _openssl(
        "pkcs12",
        "-export",
        "-in",
        "leaf.crt",
        "-inkey",
        "leaf.key",
        "-out",
        "leaf.pfx",
        "-passout",
        f"pass:{PFX_PASSWORD}",
        cwd=folder,
    )
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "365",
        "-subj",
        "/CN=Voice Root",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        cwd=folder,
    )
    _openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "other.key",
        cwd=folder,
    )
    pem = (folder / "leaf.crt").read_bytes()
    (folder / "truncated.crt").write_bytes(pem[: len(pem) // 2])
    return folder


# --- what some cases need before the run ------------------------------------------------------

Setup = Callable[[Path, "Needs"], None]


class Needs:
    """What a setup may ask for: the PKI (made on first use) and a folder outside the case."""

    def __init__(self, request: pytest.FixtureRequest, elsewhere: Path) -> None:
        self._request = request
        self.elsewhere = elsewhere

    @property
    def pki(self) -> Path:
        folder: Path = self._request.getfixturevalue("pki")
        return folder


def _supply(*names: str) -> Setup:
    def setup(case: Path, needs: Needs) -> None:
        (case / "pki").mkdir()
        for name in names:
            shutil.copy(needs.pki / name, case / "pki" / name)

    return setup


def _huge_playbook(case: Path, needs: Needs) -> None:
    # Valid YAML, just too much of it: a comment of 4 MiB after a small playbook.
    text = "name: huge\nhosts: all\ncertificates_dir: out\n# " + "x" * (4 * 1024 * 1024) + "\n"
    (case / "playbook.yml").write_text(text)


def _mismatched_authority(case: Path, needs: Needs) -> None:
    folder = case / "pki" / "voice-root"
    folder.mkdir(parents=True)
    shutil.copy(needs.pki / "ca.crt", folder / "ca.crt")
    shutil.copy(needs.pki / "other.key", folder / "ca.key")  # a key, but not the CA's
    (folder / "ca.key").chmod(0o600)


def _symlinked_output(case: Path, needs: Needs) -> None:
    target = needs.elsewhere / "precious.pem"
    target.write_bytes(ELSEWHERE_CONTENT)
    folder = case / "out" / "web-01" / "certs"
    folder.mkdir(parents=True)
    (folder / "httpscert.pem").symlink_to(target)


def _fifo(case: Path, needs: Needs) -> None:
    (case / "pki").mkdir()
    os.mkfifo(case / "pki" / "leaf.fifo")


def _existing_certificates_dir(case: Path, needs: Needs) -> None:
    (case / "out" / "web-01" / "certs").mkdir(parents=True)


SETUPS: dict[str, Setup] = {
    "yaml-huge-file": _huge_playbook,
    "provided-truncated-pem": _supply("truncated.crt", "leaf.key"),
    "provided-csr-as-certificate": _supply("leaf.csr", "leaf.key"),
    "provided-key-as-certificate": _supply("leaf.key"),
    "provided-certificate-as-key": _supply("leaf.crt"),
    "provided-pfx-wrong-password": _supply("leaf.pfx"),
    "authority-key-mismatch": _mismatched_authority,
    "provided-file-is-a-fifo": _fifo,
    "symlink-in-certificates-dir": _symlinked_output,
    "site-template-sandbox": _existing_certificates_dir,
    "site-template-runtime-error": _existing_certificates_dir,
}


# --- the whole state of a folder --------------------------------------------------------------

Entry = tuple[object, ...]


def tree(folder: Path) -> dict[str, Entry]:
    """Every entry below ``folder``, symlinks not followed: kind, mode, content or link target,
    and the mtime of files (a directory's mtime moves with a lock file taken and released)."""
    result: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            info = path.lstat()
            relative = str(path.relative_to(folder))
            if path.is_symlink():
                result[relative] = ("symlink", os.readlink(path))
            elif path.is_dir():
                result[relative] = ("dir", info.st_mode)
            elif not stat.S_ISREG(info.st_mode):  # a FIFO: never read it
                result[relative] = ("special", info.st_mode, info.st_mtime_ns)
            else:
                result[relative] = ("file", info.st_mode, info.st_mtime_ns, path.read_bytes())
    return result


def describe_changes(before: dict[str, Entry], after: dict[str, Entry]) -> str:
    lines = [f"  new: {p}" for p in sorted(after.keys() - before.keys())]
    lines += [f"  gone: {p}" for p in sorted(before.keys() - after.keys())]
    lines += [
        f"  changed: {p}" for p in sorted(before.keys() & after.keys()) if before[p] != after[p]
    ]
    return "\n".join(lines)


# --- the cases --------------------------------------------------------------------------------


def _case_names() -> list[str]:
    return sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def _param(name: str) -> object:
    xfail = CORPUS / name / "xfail.txt"
    if not xfail.exists():
        return name
    reason, *options = xfail.read_text().splitlines()
    raises = DiskChanged if "raises: DiskChanged" in options else None
    return pytest.param(name, marks=pytest.mark.xfail(reason=reason, raises=raises, strict=True))


def _expectations(case: Path) -> list[str]:
    lines = (case / "expected.txt").read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def _env(case: Path) -> dict[str, str | None]:
    """The case's ``env`` on top of ours, with no PROVISION_TEST_* variable of ours leaking in."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PROVISION_TEST_")}
    env.update(COLUMNS="200", NO_COLOR="1")
    extra = case / "env"
    if extra.exists():
        for line in extra.read_text().splitlines():
            name, _, value = line.partition("=")
            env[name] = value
    return env


def run_cli(case: Path, env: dict[str, str | None], command: str = "apply") -> tuple[int, str]:
    """``provision COMMAND playbook.yml -i inventory.yml`` in ``case``: in-process for speed
    (the corpus has dozens of cases), with any exception that escapes the CLI turned into the
    traceback a person would have seen. ``test_real_command_line`` runs the real program."""
    from provision.cli import _mount_subcommands, app

    _mount_subcommands()
    old = Path.cwd()
    os.chdir(case)
    try:
        result = CliRunner().invoke(
            app, [command, "playbook.yml", "-i", "inventory.yml"], env=env, catch_exceptions=True
        )
    finally:
        os.chdir(old)
    output = result.stdout + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert result.exc_info is not None
        output += "".join(traceback.format_exception(*result.exc_info))
    return result.exit_code, output


def prepare(name: str, folder: Path, needs: Needs) -> Path:
    """The case copied into ``folder`` with the repository's templates beside its own."""
    source = CORPUS / name
    shutil.copytree(ROOT / "templates", folder / "templates")
    shutil.copytree(
        source,
        folder,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("expected.txt", "xfail.txt", "retry.txt", "env"),
    )
    if not (folder / "inventory.yml").exists():
        shutil.copy(DEFAULT_INVENTORY, folder / "inventory.yml")
    if name in SETUPS:
        SETUPS[name](folder, needs)
    return folder


def test_the_corpus_is_complete() -> None:
    names = _case_names()
    assert len(names) >= 25
    assert set(SETUPS) <= set(names), "a setup for a case that does not exist"
    for name in names:
        case = CORPUS / name
        assert (case / "expected.txt").exists(), f"{name}: no expected.txt"
        assert _expectations(case), f"{name}: expected.txt holds no expectation"
        for pattern in _expectations(case):
            re.compile(pattern)
        assert (case / "playbook.yml").exists() or name in SETUPS, f"{name}: no playbook"


@pytest.mark.parametrize("name", [_param(n) for n in _case_names()])
def test_bad_input_is_refused(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    case = prepare(name, tmp_path / "case", Needs(request, elsewhere))
    before, outside = tree(case), tree(elsewhere)

    exit_code, output = run_cli(case, _env(CORPUS / name))

    assert "Traceback" not in output, output
    assert exit_code == 1, output
    for pattern in _expectations(CORPUS / name):
        assert re.search(pattern, output, re.MULTILINE), f"{pattern!r} not in:\n{output}"

    after = tree(case)
    retry = CORPUS / name / "retry.txt"
    if retry.exists():
        written = after.pop("playbook.retry", None)
        assert written is not None and written[-1] == retry.read_bytes(), written
    if after != before:
        raise DiskChanged(f"the run changed the case's folder:\n{describe_changes(before, after)}")
    if tree(elsewhere) != outside:
        raise DiskChanged(
            "the run changed a file outside the case's folder "
            f"(through a symlink?):\n{describe_changes(outside, tree(elsewhere))}"
        )


def test_the_symlink_target_stays_untouched(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Beyond the folder snapshot: the link still points where it did, and what it points to
    was neither written nor replaced, also when the run is repeated and for `plan`."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    case = prepare("symlink-in-certificates-dir", tmp_path / "case", Needs(request, elsewhere))
    target = elsewhere / "precious.pem"
    stat_before = target.stat()
    for command in ("apply", "plan", "apply"):
        exit_code, output = run_cli(case, _env(case), command)
        assert exit_code == 1 and "is a symlink; refusing" in output, output
    link = case / "out" / "web-01" / "certs" / "httpscert.pem"
    assert link.is_symlink() and Path(os.readlink(link)) == target
    assert target.read_bytes() == ELSEWHERE_CONTENT
    assert (target.stat().st_ino, target.stat().st_mtime_ns) == (
        stat_before.st_ino,
        stat_before.st_mtime_ns,
    )
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious.pem"]
    assert sorted(p.name for p in link.parent.iterdir()) == ["httpscert.pem"]


@pytest.mark.parametrize(
    "name", ["yaml-billion-laughs", "template-python-subclasses", "site-template-sandbox"]
)
def test_real_command_line(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A few cases through the installed program itself, in a process of its own."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    case = prepare(name, tmp_path / "case", Needs(request, elsewhere))
    before = tree(case)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_TEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "provision", "apply", "playbook.yml", "-i", "inventory.yml"],
        cwd=case,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert "Traceback" not in output, output
    assert result.returncode == 1, output
    for pattern in _expectations(CORPUS / name):
        assert re.search(pattern, output, re.MULTILINE), f"{pattern!r} not in:\n{output}"
    after = tree(case)
    after.pop("playbook.retry", None)
    assert after == before, describe_changes(before, after)
