"""The planner: the changes one host needs, given what was read from it. Pure.

Nothing here reads a clock, a host or the controller's files, and nothing imports the
executor: the same inputs give the same plan, which is what saved plans and the converged
record rely on.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from provision import reloads
from provision.coverage import plan_warnings
from provision.facts import HostFacts
from provision.inputs.load import Loaded
from provision.inputs.targets import Target
from provision.layout import FOLDER_MODE
from provision.plan.certificate import plan_certificate
from provision.plan.model import Change, HostPlan, Unchanged
from provision.plan.state import State, check_owner, inherited, parse
from provision.plan.trust import plan_crl_copies, plan_trust, trust_roots
from provision.servers.commands import site_commands
from provision.servers.site import plan_site
from provision.sources.base import HostRefusal
from provision.sources.registry import source_of
from provision.transport.base import SymlinkInPath


def build_host_plan(loaded: Loaded, target: Target, facts: HostFacts, now: dt.datetime) -> HostPlan:
    """Pure: the changes one host needs, given what was read from it."""
    changes: list[Change] = []
    unchanged: list[Unchanged] = []
    waiting: list[str] = []
    passwords = loaded.passwords.get(target.host.name, {})
    expected = loaded.expected(target)
    deadlines: list[dt.datetime] = []
    for certificate in target.playbook.certificates:
        paths = target.output_paths(certificate)
        for path in paths.values():
            if facts.file(path).kind == "symlink":
                return HostPlan(
                    target.host.name,
                    facts_digest=facts.digest(),
                    error=f"{path} is a symlink; refusing to write through it",
                )
        try:
            c, u, until = plan_certificate(
                certificate, paths, facts, passwords, now, expected[certificate.name]
            )
        except HostRefusal as refusal:
            return HostPlan(target.host.name, facts_digest=facts.digest(), error=refusal.message)
        if source_of(certificate).waiting_for(certificate, expected[certificate.name]):
            waiting.append(certificate.name)
        changes.extend(c)
        unchanged.extend(u)
        if until is not None:
            deadlines.append(until)
    folder = folder_mode(target, facts)
    if isinstance(folder, str):
        return HostPlan(target.host.name, facts_digest=facts.digest(), error=folder)
    changes.extend(folder)
    t_changes, t_unchanged, trust_error = plan_trust(
        target.playbook.trust,
        facts,
        trust_roots(loaded, target),
        target.trust_record_path,
        target.paths,
        passwords,
    )
    if trust_error is not None:
        return HostPlan(target.host.name, facts_digest=facts.digest(), error=trust_error)
    changes.extend(t_changes)
    unchanged.extend(t_unchanged)
    c_changes, c_unchanged, crl_error = plan_crl_copies(target, facts, loaded.crls)
    if crl_error is not None:
        return HostPlan(target.host.name, facts_digest=facts.digest(), error=crl_error)
    changes.extend(c_changes)
    unchanged.extend(c_unchanged)
    changes.extend(stale_outputs(target, facts))
    changes.extend(reloads_owed(target, facts, changes))
    issuing = {c.issue.certificate for c in changes if c.issue is not None}
    thumbprints = {n: e.http01_thumbprint for n, e in expected.items() if e.http01_thumbprint}
    for site in target.playbook.sites:
        # The file name, not the path as typed: running from another folder must not change
        # every rendered config (and reload every server).
        for result in plan_site(
            target,
            site,
            facts,
            loaded.renderer,
            Path(loaded.playbook.file).name,
            issuing,
            thumbprints,
        ):
            if isinstance(result, Change):
                changes.append(result)
            else:
                unchanged.append(result)
    return HostPlan(
        target.host.name,
        tuple(changes),
        tuple(unchanged),
        facts.digest(),
        waiting=tuple(waiting),
        warnings=plan_warnings(loaded.playbook, target, loaded.supplied),
        stable_until=min(deadlines, default=None),
        read_paths=tuple(sorted(facts.files)),
        missing_paths=tuple(sorted(p for p, state in facts.files.items() if not state.exists)),
    )


def folder_mode(target: Target, facts: HostFacts) -> list[Change] | str:
    """The certificates directory's mode brought back (or set, on one made with another than
    the default 0750); a refusal when it is no folder at all."""
    path, want = target.certificates_dir, target.playbook.certificates_dir_mode
    state = facts.file(path)
    if state.kind == "symlink":
        return SymlinkInPath(path).message
    if state.kind == "missing":
        if want == FOLDER_MODE:
            return []  # made so with the first file staged in it
        reason = f"made {FOLDER_MODE:04o}, want {want:04o}"  # (as a saved plan finds it)
        return [Change(f"folder {path}", "update", reason, path=path, mode=want)]
    if state.kind != "directory":
        return f"{path} is {state.described}, not a folder"
    if state.mode == want:
        return []
    reason = f"mode {state.mode or 0:04o}, want {want:04o}"
    return [Change(f"folder {path}", "update", reason, path=path, mode=want)]


def reloads_owed(target: Target, facts: HostFacts, changes: list[Change]) -> list[Change]:
    """A reload an earlier run owes (its marker is on the host) for sites this plan does not
    touch already; one that could not run on the host only once its command changed."""
    marker = reloads.parse(facts.file(target.marker_path).content)
    touched = {c.site for c in changes if c.site}
    owed = []
    for site in target.playbook.sites:
        if site.name in touched or not site.reload:
            continue
        if site.name in marker.owed:
            reason = (
                "reload owed: an earlier run did not finish it, or the server did not serve "
                "what was written"
            )
        elif site.name in marker.cannot_run:
            now = site_commands(target, site)[1]
            if now is None or now == marker.cannot_run[site.name]:
                continue  # it cannot run here as it is: not retried on every run
            reason = (
                f"reload owed: `{marker.cannot_run[site.name]}` could not run on this host, "
                f"and the site's reload command is now `{now}`"
            )
        else:
            continue
        owed.append(Change(f"site {site.name}", "update", reason, site=site.name))
    return owed


def dropped_outputs(target: Target, facts: HostFacts) -> dict[str, str]:
    """Outputs this playbook recorded at an earlier apply and no longer lists: name -> path.
    Another owner's outputs are never among them; a damaged state file is an error."""
    state = read_state(target, facts)
    recorded = inherited(state, target.playbook)
    wanted = {o.file for c in target.playbook.certificates for o in c.outputs}
    dropped = {}
    for name in sorted(recorded - wanted):
        path = target.paths.normpath(target.paths.join(target.certificates_dir, name))
        # A tampered state file must not make us delete anything outside our folder.
        if (
            target.paths.is_inside(path, target.certificates_dir)
            and path != target.certificates_dir
            and "\0" not in path
        ):
            dropped[name] = path
    return dropped


def read_state(target: Target, facts: HostFacts) -> State:
    """The host's state file, checked: parsed, and owned by this playbook (or shared)."""
    state = parse(facts.file(target.state_path).content, target.state_path)
    check_owner(state, target.playbook, target.certificates_dir)
    return state


def stale_outputs(target: Target, facts: HostFacts) -> list[Change]:
    """Files an earlier apply wrote that the playbook no longer lists: to delete (backed up).
    ``facts`` must include the paths ``dropped_outputs`` names."""
    return [
        Change(f"file {name}", "delete", "no longer in the playbook", path=path)
        for name, path in dropped_outputs(target, facts).items()
        if facts.file(path).kind == "file"
    ]
