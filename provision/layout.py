"""The files `provision` keeps on a host, beside the outputs in its certificates directory.

Every name is defined here once: the planner reads some of them (state, reload marker,
journal), the executor and the lock write them, and the hostile-input rules (a record read
from a host is validated against the paths the playbook manages) need the whole list.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket

# Folders provision makes on a host (the certificates directory, an output's sub-folder) may
# hold keys: not world-readable, never world-writable. umask 027 makes the same.
FOLDER_MODE = 0o750

# The outputs an apply wrote, so a later run can remove the ones a playbook drops.
STATE_FILE = ".provision-state.json"
# Written before files that need a reload are replaced, removed once the reload succeeded: a
# run that dies in between leaves it, and the next run reloads even if the files match.
RELOAD_MARKER = ".provision-reload-pending"
# Which staged file goes where: lets the next run finish a replacement a killed run left.
JOURNAL_FILE = ".provision-journal.json"
# One run per host at a time; a takeover of a stale lock is serialised by a guard beside it.
LOCK_FILE = ".provision.lock"
TAKEOVER_SUFFIX = ".takeover"


def lock_content(now: dt.datetime) -> bytes:
    """What a lock says: who holds it (pid, controller host name, start time)."""
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return json.dumps(holder).encode() + b"\n"


# Timestamped folders of replaced files, each with a manifest, for `rollback`.
BACKUP_DIR = ".backup"
BACKUP_MANIFEST = "manifest.json"
# A backup folder still being filled (hidden, renamed when complete).
PARTIAL_SUFFIX = ".partial"
# A staged file beside its target: ``.NAME.RANDOM.tmp``.
TEMPORARY_SUFFIX = ".tmp"
# A key `provision csr` made to replace a live key of another type: it waits beside the key
# output until its signed certificate is supplied, so the served certificate keeps working.
PENDING_SUFFIX = ".provision-pending"


def pending_key(key_path: str) -> str:
    """Where a key made by `provision csr` waits beside the key output it will replace."""
    return key_path + PENDING_SUFFIX


# HTTP-01: the folder in the certificates directory whose files the sites that bind an
# ACME certificate serve at ACME_CHALLENGE_PATH (tokens live there only during an order).
ACME_CHALLENGE_DIR = ".acme-challenge"
ACME_CHALLENGE_PATH = "/.well-known/acme-challenge/"
# The folder is read by the web server's workers, and holds nothing secret.
ACME_CHALLENGE_MODE = 0o755
ACME_TOKEN_MODE = 0o644

# Which roots provision added to each trust store of the host (provision/trust/record.py):
# only those are ever removed from a store.
TRUST_RECORD = ".provision-trust.json"
