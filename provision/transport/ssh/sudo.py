"""``become: true``: the shell scripts that do privileged work through ``sudo -n``.

Each operation is one ``sudo -n -- sh -c SCRIPT sh ARG...`` command; arguments are passed
as positional parameters, never pasted into the script. The scripts use POSIX utilities and
options only where POSIX has them, so they run on any Unix, not only with GNU coreutils:

- a file's type and mode come from ``ls -ld`` (POSIX), not GNU's ``stat -c``;
- a lock is created with ``link`` (POSIX: link(2) itself, which refuses an existing name),
  not GNU's ``ln -T`` (plain ``ln`` would create the link *inside* a directory of that name);
- ``sync FILE`` / ``sync DIR`` (GNU) make one file or folder durable; where ``sync`` takes no
  operand (POSIX), a plain ``sync`` of everything follows its failure;
- ``install -m`` (GNU, BSD and BusyBox alike) copies an upload with its mode from the start,
  and ``base64`` (not in POSIX, which has only ``uuencode -m``, seldom installed) reads a
  file as text.
"""

from __future__ import annotations

import base64
import re
import shlex
import stat
from collections.abc import Sequence

from provision.transport.base import FileKind, FileState, SymlinkInPath

TEMP_ROOT = "/tmp"  # where `become` uploads go, in a private 0700 directory per run
READ_BATCH = 200  # paths per read command, well inside any command-line limit


def command(script: str, *args: str) -> str:
    """``sudo -n`` running ``script`` with ``args`` as its ``$1``, ``$2``, ..."""
    return shlex.join(["sudo", "-n", "--", "sh", "-c", script, "sh", *args])


def problem(err: bytes, status: int) -> str:
    """What a failed sudo command says, in one line (with a hint for a password prompt)."""
    text = err.decode(errors="replace").strip()
    line = text.splitlines()[-1] if text else f"exit status {status}"
    if "sudo:" in line and "password" in line:
        line += " (become needs passwordless sudo for the login user)"
    return line


# Syncing one file or folder ($1 or the folder of $2): GNU's sync takes operands; a sync
# without them (POSIX) flushes everything, slower but as durable.
def _sync(operand: str) -> str:
    return f"{{ sync -- {operand} 2>/dev/null || sync || :; }}"


# A shell function refusing a path when a folder on the way to it is a symlink, prepended to
# each script (``[ -L ]`` of each folder, from the top: not race-free, as no POSIX utility
# opens a path folder by folder; see docs/architecture.md, "Host paths and symlinks").
_REFUSAL = SymlinkInPath("$p").message
NOFOLLOW = f"""\
nofollow() {{
  rest=${{1%/*}}/; p=
  while [ -n "$rest" ]; do
    n=${{rest%%/*}}; rest=${{rest#*/}}
    [ -n "$n" ] || continue
    p=$p/$n
    if [ -L "$p" ]; then echo "{_REFUSAL}" >&2; return 1; fi
    [ -e "$p" ] || return 0
  done
}}
"""

# $1 upload, $2 target folder, $3 mode (octal), $4 temporary name beside the target.
# install(1) creates the copy 0600 and sets the mode before we rename it anywhere; the copy
# lands beside the target, so the final step is a rename within that directory.
STAGE = (
    NOFOLLOW + 'nofollow "$4" || { rm -f -- "$1"; exit 9; }\n'
    "umask 027\n"
    'mkdir -p -- "$2" || exit 1\n'
    'install -m "$3" -- "$1" "$4" || { rm -f -- "$1"; exit 1; }\n'
    'rm -f -- "$1"\n' + _sync('"$4"') + "\n"
)


def commit_script(durable: bool) -> str:
    """$1 staged, $2 target: refuse a symlink (exit 3) or a directory (4), else rename."""
    sync = _sync('"$(dirname -- "$2")"') + "\n" if durable else ""
    return (
        NOFOLLOW + 'nofollow "$2" || { rm -f -- "$1"; exit 9; }\n'
        'if [ -L "$2" ]; then rm -f -- "$1"; echo "symlink" >&2; exit 3; fi\n'
        'if [ -d "$2" ]; then rm -f -- "$1"; echo "is a directory" >&2; exit 4; fi\n'
        'mv -f -- "$1" "$2" || exit 1\n' + sync
    )


# $1 staged, $2 the name: exit 3 when anything (a dangling symlink too) holds the name.
# link(1) is link(2): it fails on an existing name of any kind, directories included.
# Both paths are absolute (they begin with "/"), so neither can be taken for an option.
CREATE_EXCLUSIVE = (
    NOFOLLOW + 'nofollow "$2" || { rm -f -- "$1"; exit 9; }\n'
    'if [ -e "$2" ] || [ -L "$2" ]; then rm -f -- "$1"; exit 3; fi\n'
    'link "$1" "$2" 2>/dev/null; s=$?\n'
    'rm -f -- "$1"\n'
    '[ "$s" -eq 0 ] && exit 0\n'
    'if [ -e "$2" ] || [ -L "$2" ]; then exit 3; fi\n'
    'echo "cannot link" >&2; exit 1\n'
)


def remove_script(durable: bool) -> str:
    sync = " && " + _sync('"$(dirname -- "$1")"') if durable else ""
    return NOFOLLOW + 'nofollow "$1" || exit 9\nrm -f -- "$1"' + sync


REMOVE_DIR = (
    NOFOLLOW + 'nofollow "$1" || exit 9\n[ -e "$1" ] || [ -L "$1" ] || exit 0\nrmdir -- "$1"'
)

# $1 a folder, $2 its mode (octal): never through a symlink, nor of one.
SET_FOLDER_MODE = NOFOLLOW + 'nofollow "$1/." || exit 9\nchmod -- "$2" "$1"'

LIST = (
    NOFOLLOW + 'nofollow "$1/." || exit 9\n'
    '[ -d "$1" ] || exit 0\n'
    'cd -- "$1" || exit 1\n'
    "for f in * .*; do\n"
    "  case $f in .|..) continue;; esac\n"
    '  [ -e "$f" ] || [ -L "$f" ] || continue\n'
    "  printf '%s\\0' \"$f\"\n"
    "done\n"
)


def sync_command(folders: Sequence[str], become: bool) -> str:
    """``sync`` of the folders (their entries made durable); through sudo under become,
    since the folders may be readable by root alone. A failure of ``sync`` itself is
    ignored: syncing a folder is best effort on filesystems that do not support it."""
    sync = shlex.join(["sync", "--", *folders]) + " 2>/dev/null"
    if become:
        return shlex.join(["sudo", "-n", "--", "sh", "-c", sync + " || sync || :"])
    return sync + " || sync"


# For each path: "missing", or "!problem", or its `ls -ld` type and permissions
# ("-rw-------"); then, for a regular file, its content in base64 (whose alphabet has no
# "."), and a "." line to close the record. LC_ALL=C: ls prints the same letters anywhere.
READ = (
    NOFOLLOW
    + """\
LC_ALL=C; export LC_ALL
for path in "$@"; do
  m=$(nofollow "$path" 2>&1) || { echo "!$m"; continue; }
  p=$path
  if [ ! -e "$p" ] && [ ! -L "$p" ]; then echo missing; continue; fi
  m=$(ls -ld -- "$p" 2>/dev/null) || { echo '!cannot stat it'; continue; }
  echo "${m%%[ ]*}"
  if [ -f "$p" ] && [ ! -L "$p" ]; then
    base64 -- "$p" 2>/dev/null || { echo '!cannot read it'; continue; }
  fi
  echo .
done
"""
)

_LS_MODE = re.compile(rb"^([-dlcbps])([-r][-w][-xsS][-r][-w][-xsS][-r][-w][-xtT])")
_PERMISSIONS = (
    *(stat.S_IRUSR, stat.S_IWUSR, stat.S_IXUSR),
    *(stat.S_IRGRP, stat.S_IWGRP, stat.S_IXGRP),
    *(stat.S_IROTH, stat.S_IWOTH, stat.S_IXOTH),
)
_TYPES: dict[bytes, FileKind] = {b"-": "file", b"d": "directory", b"l": "symlink"}


def parse_ls_mode(field: bytes) -> tuple[FileKind, int] | None:
    """``-rwsr-x--T`` (and a trailing ACL/SELinux mark) as a kind and a permission mode."""
    match = _LS_MODE.match(field)
    if match is None:
        return None
    kind = _TYPES.get(match.group(1), "other")
    letters = match.group(2).decode()
    mode = 0
    for index, bit in enumerate(_PERMISSIONS):
        if letters[index] in "rwxst":
            mode |= bit
    special = {2: (stat.S_ISUID, "sS"), 5: (stat.S_ISGID, "sS"), 8: (stat.S_ISVTX, "tT")}
    for index, (bit, marks) in special.items():
        if letters[index] in marks:
            mode |= bit
    return kind, mode


def parse_reads(out: bytes, paths: Sequence[str]) -> list[FileState | str]:
    """The states ``READ`` printed, in order; a string for a path it could not read."""
    lines = iter(out.split(b"\n"))
    results: list[FileState | str] = []
    for path in paths:
        head = next(lines, None)
        if head is None:
            results.append("no answer from the host")
            continue
        if head == b"missing":
            results.append(FileState(path, "missing"))
            continue
        if head.startswith(b"!"):
            results.append(head[1:].decode(errors="replace"))
            continue
        parsed = parse_ls_mode(head)
        if parsed is None:
            results.extend(["unexpected answer from the host"] * (len(paths) - len(results)))
            return results
        kind, mode = parsed
        body: list[bytes] = []
        failure = None
        for line in lines:
            if line == b".":
                break
            if line.startswith(b"!"):
                failure = line[1:].decode(errors="replace")
                break
            body.append(line)
        if failure is not None:
            results.append(failure)
        elif kind != "file":
            results.append(FileState(path, kind, mode=mode))
        else:
            try:
                content = base64.b64decode(b"".join(body), validate=True)
            except ValueError:
                results.append("unexpected answer from the host")
                continue
            results.append(FileState(path, "file", content, mode))
    return results
