"""The POSIX shell scripts of the host's one shell: ``become``'s privileged work, and commands.

Under ``become`` every file operation is a request to the host's root shell
(``sudo -n -- sh -s``, ``shell.py``): a script from here with its arguments as ``$1``,
``$2``, ..., never pasted into it. The scripts use POSIX utilities and options only where
POSIX has them, so they run on any Unix, not only with GNU coreutils:

- a file's type and mode come from ``ls -ld`` (POSIX), not GNU's ``stat -c``;
- a lock is created with ``link`` (POSIX: link(2) itself, which refuses an existing name),
  not GNU's ``ln -T`` (plain ``ln`` would create the link *inside* a directory of that name);
- ``sync FILE`` / ``sync DIR`` (GNU) make one file or folder durable; where ``sync`` takes no
  operand (POSIX), a plain ``sync`` of everything follows its failure;
- a new file is created with ``set -C`` (``O_EXCL``) under ``umask 077``, its content sent
  in base64 and decoded by ``base64 -d``, and its mode set before it is renamed anywhere;
  ``base64`` (not in POSIX, which has only ``uuencode -m``, seldom installed) also reads a
  file as text. GNU, BSD and BusyBox all have it.
"""

from __future__ import annotations

import base64
import re
import stat
from collections.abc import Sequence

from provision.transport.base import FileKind, FileState, SymlinkInPath

READ_BATCH = 200  # paths per read request


def encoded(data: bytes) -> str:
    """File content as a script argument (base64: no quote, no newline, no NUL)."""
    return base64.b64encode(data).decode()


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

# A new file $1 (a temporary name beside its target) holding the base64 content $3 with the
# mode $2: created O_EXCL (set -C) and 0600 (umask 077), its mode set before anything can
# rename it; missing folders made 0750 (umask 027). Used by STAGE and CREATE_EXCLUSIVE.
_CREATE = """\
( umask 027 && mkdir -p -- "${1%/*}" ) || exit 1
umask 077
if [ -e "$1" ] || [ -L "$1" ]; then echo "$1 exists" >&2; exit 1; fi
( set -C && : > "$1" ) || exit 1
printf '%s' "$3" | base64 -d >> "$1" && chmod -- "$2" "$1" || { rm -f -- "$1"; exit 1; }
"""

# $1 temporary name beside the target, $2 mode (octal), $3 content (base64): fsynced.
STAGE = NOFOLLOW + 'nofollow "$1" || exit 9\n' + _CREATE + _sync('"$1"') + "\n"


def commit_script(durable: bool) -> str:
    """$1 staged, $2 target: refuse a symlink (exit 3) or a directory (4), else rename."""
    sync = _sync('"$(dirname -- "$2")"') + "\n" if durable else ""
    return (
        NOFOLLOW + 'nofollow "$2" || { rm -f -- "$1"; exit 9; }\n'
        'if [ -L "$2" ]; then rm -f -- "$1"; echo "symlink" >&2; exit 3; fi\n'
        'if [ -d "$2" ]; then rm -f -- "$1"; echo "is a directory" >&2; exit 4; fi\n'
        'mv -f -- "$1" "$2" || exit 1\n' + sync
    )


# $1 temporary name, $2 mode, $3 content (base64), $4 the name: the file is made beside the
# name, then linked onto it; exit 3 when anything (a dangling symlink too) holds the name.
# link(1) is link(2): it fails on an existing name of any kind, directories included. Both
# paths are absolute (they begin with "/"), so neither can be taken for an option. Not synced:
# a lock may as well be gone after a crash.
CREATE_EXCLUSIVE = (
    NOFOLLOW + 'nofollow "$4" || exit 9\n'
    'if [ -e "$4" ] || [ -L "$4" ]; then exit 3; fi\n'
    + _CREATE
    + 'link "$1" "$4" 2>/dev/null; s=$?\n'
    'rm -f -- "$1"\n'
    '[ "$s" -eq 0 ] && exit 0\n'
    'if [ -e "$4" ] || [ -L "$4" ]; then exit 3; fi\n'
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


# The folders "$@" made durable (their entries): as root under become, since the folders may
# be root's alone. A failure of ``sync`` itself is ignored: syncing a folder is best effort on
# filesystems that do not support it.
SYNC = 'sync -- "$@" 2>/dev/null || sync || :\n'

# A command ($2), run by sh in the folder $1.
RUN = 'cd -- "$1" || exit 1\nexec sh -c "$2"\n'

# $1 staged, $2 target, for servers without posix-rename@openssh.com.
MOVE = 'mv -f -- "$1" "$2"\n'


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
