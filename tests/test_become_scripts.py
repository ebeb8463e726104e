"""The shell scripts `become` runs as root, run here by the local POSIX shell (as the test
user, without sudo): they must read exactly, refuse what they must, and use no GNU-only
option where POSIX has one."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from provision.transport.base import FileState
from provision.transport.ssh import sudo


def _sh(script: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["sh", "-c", script, "sh", *args], capture_output=True, check=False)


def test_reads_give_kinds_modes_and_bytes_exactly(tmp_path: Path) -> None:
    data = b"\x00secret\xff\n" * 100 + b"no newline at the end"
    (tmp_path / "key.pem").write_bytes(data)
    (tmp_path / "key.pem").chmod(0o600)
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "special").write_bytes(b"x")
    (tmp_path / "special").chmod(0o7751)
    (tmp_path / "link").symlink_to("key.pem")
    (tmp_path / "dangling").symlink_to("nowhere")
    (tmp_path / "sub").mkdir(mode=0o751)
    (tmp_path / "sub").chmod(0o1751)
    os.mkfifo(tmp_path / "fifo", 0o640)
    (tmp_path / "name with\nnewline").write_bytes(b"n")
    names = ["key.pem", "empty", "special", "link", "dangling", "sub", "fifo", "nope"]
    names += ["key.pem/x", "name with\nnewline"]
    paths = [str(tmp_path / n) for n in names]
    done = _sh(sudo.READ, *paths)
    assert done.returncode == 0, done.stderr
    states = sudo.parse_reads(done.stdout, paths)
    assert all(isinstance(s, FileState) for s in states), states
    got = [(s.kind, s.mode, s.content) for s in states if isinstance(s, FileState)]
    assert got == [
        ("file", 0o600, data),
        ("file", 0o644 & ~_umask(), b""),
        ("file", 0o7751, b"x"),
        ("symlink", 0o777, None),
        ("symlink", 0o777, None),
        ("directory", 0o1751, None),
        ("other", 0o640, None),
        ("missing", None, None),
        ("missing", None, None),
        ("file", 0o644 & ~_umask(), b"n"),
    ]


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@pytest.mark.parametrize(
    ("field", "kind", "mode"),
    [
        (b"-rw-------", "file", 0o600),
        (b"drwxr-x--x", "directory", 0o751),
        (b"-rwsr-S--T", "file", 0o7740),
        (b"drwxrwsrwt", "directory", 0o3777),
        (b"lrwxrwxrwx", "symlink", 0o777),
        (b"crw-rw-rw-.", "other", 0o666),  # SELinux context mark
        (b"-rw-r--r--+", "file", 0o644),  # ACL mark
    ],
)
def test_ls_modes(field: bytes, kind: str, mode: int) -> None:
    assert sudo.parse_ls_mode(field) == (kind, mode)


def test_an_unexpected_answer_fails_every_path_left() -> None:
    assert sudo.parse_reads(b"missing\n0x81a4\n", ["/a", "/b", "/c"]) == [
        FileState("/a", "missing"),
        "unexpected answer from the host",
        "unexpected answer from the host",
    ]


def test_create_exclusive_never_links_into_a_directory(tmp_path: Path) -> None:
    """The point of link(1) over plain ln: a directory at the name is a refusal (exit 3),
    not a place to put the link in."""
    for existing in ("directory", "file", "dangling symlink"):
        name = tmp_path / f"lock-{existing.replace(' ', '-')}"
        if existing == "directory":
            name.mkdir()
        elif existing == "file":
            name.write_text("other run\n")
        else:
            name.symlink_to(tmp_path / "nowhere")
        staged = tmp_path / f".{name.name}.1234.tmp"
        done = _sh(sudo.CREATE_EXCLUSIVE, str(staged), "644", sudo.encoded(b"me\n"), str(name))
        assert done.returncode == 3, (existing, done.stderr)
        assert not staged.exists()
        if existing == "directory":
            assert list(name.iterdir()) == []
    name = tmp_path / "lock"
    staged = tmp_path / ".lock.1234.tmp"
    done = _sh(sudo.CREATE_EXCLUSIVE, str(staged), "644", sudo.encoded(b"me\n"), str(name))
    assert done.returncode == 0, done.stderr
    assert name.read_text() == "me\n" and not staged.exists()
    assert stat.S_IMODE(name.stat().st_mode) == 0o644


def test_stage_and_commit(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "folder"
    temporary = folder / ".a.key.1234.tmp"
    content = bytes(range(256)) * 40
    done = _sh(sudo.STAGE, str(temporary), "600", sudo.encoded(content))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(temporary.stat().st_mode) == 0o600
    assert temporary.read_bytes() == content
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750
    # A name that is taken (a planted symlink, say) is never written through.
    (folder / ".b.1234.tmp").symlink_to(tmp_path / "elsewhere")
    done = _sh(sudo.STAGE, str(folder / ".b.1234.tmp"), "644", sudo.encoded(b"x"))
    assert done.returncode != 0 and not (tmp_path / "elsewhere").exists()
    (folder / ".b.1234.tmp").unlink()
    target = folder / "a.key"
    for durable in (True, False):
        target.unlink(missing_ok=True)
        staged = folder / ".a.key.x.tmp"
        staged.write_bytes(b"key\n")
        done = _sh(sudo.commit_script(durable), str(staged), str(target))
        assert done.returncode == 0, done.stderr
        assert target.read_bytes() == b"key\n" and not staged.exists()
    target.unlink()
    target.symlink_to(tmp_path / "elsewhere")
    done = _sh(sudo.commit_script(True), str(temporary), str(target))
    assert done.returncode == 3 and b"symlink" in done.stderr
    assert not temporary.exists() and target.is_symlink()


def test_list_and_remove(tmp_path: Path) -> None:
    for name in ("a", ".hidden", "with space", "new\nline"):
        (tmp_path / name).write_text("x")
    done = _sh(sudo.LIST, str(tmp_path))
    assert sorted(done.stdout.split(b"\0")[:-1]) == [b".hidden", b"a", b"new\nline", b"with space"]
    assert _sh(sudo.LIST, str(tmp_path / "missing")).stdout == b""
    done = _sh(sudo.remove_script(True), str(tmp_path / "a"))
    assert done.returncode == 0 and not (tmp_path / "a").exists()
    (tmp_path / "empty").mkdir()
    assert _sh(sudo.REMOVE_DIR, str(tmp_path / "empty")).returncode == 0
    assert not (tmp_path / "empty").exists()
    assert _sh(sudo.REMOVE_DIR, str(tmp_path / "empty")).returncode == 0  # gone is fine


GNU_ONLY = [r"\bstat -c", r"\bln -T", r"\bmv -T", r"readlink -f", r"install -D", r"--preserve"]


def test_no_gnu_only_option_where_posix_has_one() -> None:
    scripts = [
        sudo.READ,
        sudo.STAGE,
        sudo.commit_script(True),
        sudo.commit_script(False),
        sudo.CREATE_EXCLUSIVE,
        sudo.remove_script(True),
        sudo.REMOVE_DIR,
        sudo.LIST,
        sudo.SYNC,
        sudo.RUN,
    ]
    for script in scripts:
        for pattern in GNU_ONLY:
            assert not re.search(pattern, script), (pattern, script)
        # Each `sync` of a file or folder falls back to a POSIX `sync` without operands.
        if "sync --" in script:
            assert re.search(r"sync -- .*\|\| sync", script), script


def test_no_script_goes_through_a_symlinked_folder(tmp_path: Path) -> None:
    """Issue 14: each script refuses (exit 9, the refusal on stderr) when a folder on the
    way to its path is a symlink, and does nothing where the link points."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep me\n")
    (outside / "sub").mkdir()
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "link").symlink_to(outside)
    link = tmp_path / "certs" / "link"
    staged = tmp_path / "certs" / ".x.tmp"
    staged.write_text("staged\n")
    cases = {
        "stage": (sudo.STAGE, str(link / ".victim.1.tmp"), "644", sudo.encoded(b"new\n")),
        "commit": (sudo.commit_script(True), str(staged), str(link / "victim")),
        "create": (
            sudo.CREATE_EXCLUSIVE,
            str(link / ".lock.1.tmp"),
            "644",
            sudo.encoded(b"me\n"),
            str(link / "lock"),
        ),
        "remove": (sudo.remove_script(True), str(link / "victim")),
        "remove-dir": (sudo.REMOVE_DIR, str(link / "sub")),
        "list": (sudo.LIST, str(link)),
        "list-below": (sudo.LIST, str(link / "sub")),
    }
    for case, (script, *args) in cases.items():
        staged.write_text("staged\n")
        done = _sh(script, *args)
        assert done.returncode == 9, (case, done)
        assert f"{link} is a symlink; provision never follows" in done.stderr.decode(), case
        assert done.stdout == b"", case
        assert sorted(p.name for p in outside.iterdir()) == ["sub", "victim"], case
        assert (outside / "victim").read_text() == "keep me\n", case
    paths = [str(link / "victim"), str(tmp_path / "certs" / ".x.tmp")]
    done = _sh(sudo.READ, *paths)
    assert done.returncode == 0, done.stderr
    first, second = sudo.parse_reads(done.stdout, paths)
    assert isinstance(first, str) and f"{link} is a symlink" in first
    assert isinstance(second, FileState) and second.content == b"staged\n"
