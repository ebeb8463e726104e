"""The converged record: answer a run that would change nothing without evaluating it again.

A host's plan is a pure function of the run's inputs (every controller file its loading read
or looked for: the run's manifest, provision/inputs/manifest.py; provision itself), of the
files read from the host, and of the clock. When a ``plan`` or ``apply`` finds every selected
host converged, it records a digest of those inputs (by content), the signature of each host
file (by ``lstat``: type and mode, device and inode, size, modification and change times, as
git's index keeps them), and the moment the clock alone would change a decision (the first
renewal window to open). The next run of the same command (same folder, playbook, inventory
and ``--limit``) checks all of them before anything else, a few per cent of the cost of
evaluating the playbook for every host, rendering its site and parsing its certificates. When
everything matches, the plan *is* the recorded empty plan, and the run prints it as a full run
would. When anything differs (a byte of an input, a file that appears where loading looked for
one, any write, rename or ``chmod`` of a host file, which the kernel stamps with a new change
time no tool can set back), the run is evaluated in full, as if there were no record. A file
whose change time falls inside the run (or just before it) is never recorded: it may differ
from what the run read.

Only runs that can be checked this way are recorded: every host local (an SSH host's files
cost a network round trip however they are compared), no password read by the run (a digest
of a password would be worth guessing against), no site with ``verify:`` (an apply proves over
the network what is served, every time), no ``--limit @file``, and no input changed after the
run started (the record must hold what the run read). A run that writes to hosts forgets every
record before it writes anything (so a run killed half-way leaves none that could hide what it
left), and a ``plan`` record never answers an ``apply``. ``--full`` skips the record; deleting
the records (``PROVISION_CACHE_DIR``, by default ``~/.cache/provision``) is always safe.

The api's run entry points (provision/runs.py) look records up and make them; nothing else
does. Modules: ``stamps`` (digests, stamps, the rule for files changed during a run),
``document`` (what a record holds, recording it, forgetting them all), ``lookup`` (the check
before a run). None imports anything heavy: on a hit, cryptography, jinja2 and pydantic are
never loaded.
"""
