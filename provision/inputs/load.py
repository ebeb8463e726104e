"""Load a run's inputs: playbook and inventory into per-host targets, plus what the
controller holds (authorities, supplied certificates, passwords), all checked before any host
is read. Also the digests a saved plan records of those inputs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes

from provision.errors import InputError, Location, ProvisionError
from provision.inputs.inventory import Inventory, limit_hosts, load_inventory
from provision.inputs.manifest import Manifest
from provision.inputs.passwords import PasswordReader
from provision.inputs.targets import Target, evaluate_playbook, host_view, playbook_hosts_pattern
from provision.inputs.vault_secrets import VaultKeys
from provision.inputs.yaml_lines import Document, load_file
from provision.layout import PENDING_SUFFIX
from provision.model.playbook import ProvidedSource
from provision.plan import saved as planfile
from provision.plan.model import Plan
from provision.plan.saved import SavedPlan
from provision.servers.render import Renderer
from provision.sources.authority_store import AuthorityStore, open_authority
from provision.sources.base import Expected
from provision.sources.registry import source_of
from provision.sources.supplied import FileCache, Supplied, load_supplied
from provision.transport.factory import ConnectOptions, make_transport


@dataclass(frozen=True)
class Loaded:
    playbook: Document
    inventory: Inventory
    targets: tuple[Target, ...]
    passwords: Mapping[str, Mapping[str, bytes]]
    renderer: Renderer
    authorities: Mapping[str, AuthorityStore]
    supplied: Mapping[tuple[str, str], Supplied | None]  # (host, certificate) -> file
    folder: Path
    forks: int = 50
    lock_timeout: float = 30.0
    # Every controller path loading (and rendering, as the run goes on) read or looked for.
    reads: Manifest = field(default_factory=Manifest)

    def expected(self, target: Target) -> dict[str, Expected]:
        """For each certificate of a host, what its source says it must be."""
        name = target.host.name
        return {c.name: source_of(c).expected(c, name, self) for c in target.playbook.certificates}


def load(
    playbook: str | Path,
    inventory: str | Path,
    limit: str | None = None,
    forks: int = 50,
    now: dt.datetime | None = None,
    connect: ConnectOptions | None = None,
    lock_timeout: float = 30.0,
    controller_files: bool = True,
    vault: Sequence[tuple[str, str]] = (),
) -> Loaded:
    """Parse and validate everything for every selected host; raises before any host is read.

    Files on the controller (authorities, supplied certificates) are read and checked here too,
    so a bad one stops the run before anything is written anywhere. ``controller_files=False``
    leaves them and every password unread, for `provision render`, which writes only site
    configs (a reviewer rendering them needs no secret).
    """
    moment = now or dt.datetime.now(dt.UTC)
    reads = Manifest()
    doc = load_file(Path(playbook), str(playbook), reads)
    if not isinstance(doc.data, dict):
        raise InputError(Location(doc.file, 1), "a playbook must be a mapping of keys")
    # ``vault``: (label, password file) sources for Ansible's vaulted values, read on need.
    inv = load_inventory(Path(inventory), str(inventory), reads, VaultKeys.of(vault, reads))
    hosts = limit_hosts(inv, playbook_hosts_pattern(doc), limit, reads)
    folder = Path(doc.file).resolve().parent
    targets = []
    passwords: dict[str, dict[str, bytes]] = {}
    reader = PasswordReader(folder, reads)
    for host in hosts:
        book = evaluate_playbook(doc, host)
        transport = make_transport(host, connect)
        targets.append(Target(host, host_view(host), book, transport))
        for c_index, certificate in enumerate(book.certificates):
            for o_index, output in enumerate(certificate.outputs):
                if output.password is None or not controller_files:
                    continue
                where = doc.locate(("certificates", c_index, "outputs", o_index, "password"))
                password = reader.read(output.password, where)
                if not password:
                    # OpenSSL and Windows read an empty PFX password in two incompatible ways
                    # (no MAC at all, or a MAC over an empty string): refused, not guessed.
                    raise InputError(where, "is empty; a PKCS#12 output needs a password")
                passwords.setdefault(host.name, {})[output.file] = password
    for target in targets:
        _refuse_shared_paths(doc, target)
    renderer = Renderer([folder / "templates", folder.parent / "templates"], reads)
    authorities = _open_authorities(doc, targets, folder, reads) if controller_files else {}
    supplied = (
        _load_supplied(doc, targets, folder, reader, moment, reads) if controller_files else {}
    )
    return Loaded(
        doc,
        inv,
        tuple(targets),
        passwords,
        renderer,
        authorities,
        supplied,
        folder,
        forks,
        lock_timeout,
        reads,
    )


def _refuse_shared_paths(doc: Document, target: Target) -> None:
    """Two outputs, or an output and a site's config, writing one file would overwrite each
    other on every run and never converge."""
    seen: dict[str, str] = {}

    def claim(path: str, where: tuple[str | int, ...], what: str) -> None:
        # Windows file names ignore case: C:\Certs\a.pem and c:\certs\A.PEM are one file.
        key = path.lower() if target.paths.family == "windows" else path
        if key in seen:
            raise InputError(
                doc.locate(where),
                f"{what} writes {path}, which {seen[key]} writes too (for host {target.host.name})",
            )
        seen[key] = what

    for c, certificate in enumerate(target.playbook.certificates):
        for o, output in enumerate(certificate.outputs):
            claim(
                target.output_path(output),
                ("certificates", c, "outputs", o, "file"),
                f"certificate {certificate.name!r}",
            )
    own = set(target.own_files())
    for s, site in enumerate(target.playbook.sites):
        for path in target.site_paths(site):
            if (
                path in own
                or path.startswith(target.backup_dir + "/")
                or path.endswith(PENDING_SUFFIX)
            ):
                # Its lock, journal or backups overwritten by a config would be deleted or
                # misread at the end of every apply.
                raise InputError(
                    doc.locate(("sites", s, "config")),
                    f"site {site.name!r} writes {path}, a file provision keeps for itself "
                    f"(for host {target.host.name})",
                )
            claim(path, ("sites", s, "config"), f"site {site.name!r}")


def _open_authorities(
    doc: Document, targets: list[Target], folder: Path, reads: Manifest
) -> dict[str, AuthorityStore]:
    """Authorities live on the controller: opened once, and the same for every host."""
    if not targets:
        return {}
    first = targets[0].playbook.authorities
    for target in targets[1:]:
        if target.playbook.authorities != first:
            raise InputError(
                doc.locate(("authorities",)),
                "authorities must be the same for "
                f"every host (host {target.host.name} sees them differently from "
                f"{targets[0].host.name}); do not use host variables in them",
            )
    return {
        spec.name: open_authority(spec, folder, doc.locate(("authorities", index)), reads)
        for index, spec in enumerate(targets[0].playbook.authorities)
    }


def _load_supplied(
    doc: Document,
    targets: list[Target],
    folder: Path,
    reader: PasswordReader,
    now: dt.datetime,
    reads: Manifest,
) -> dict[tuple[str, str], Supplied | None]:
    cache = FileCache(reads=reads)
    result: dict[tuple[str, str], Supplied | None] = {}
    for target in targets:
        for index, certificate in enumerate(target.playbook.certificates):
            source = certificate.source
            if not isinstance(source, ProvidedSource):
                continue
            base = ("certificates", index, "source")
            where = {
                key: doc.locate((*base, key))
                for key in ("certificate", "key", "chain", "root", "password")
            }
            password = (
                reader.read(source.password, where["password"])
                if source.password is not None
                else None
            )
            result[(target.host.name, certificate.name)] = load_supplied(
                certificate,
                source,
                base=folder,
                password=password,
                now=now,
                cache=cache,
                where=where,
            )
    return result


def controller_digest(loaded: Loaded) -> str:
    """What the controller contributes besides playbook and inventory: authorities and
    supplied certificates (by fingerprint), so a saved plan notices when they change."""
    h = hashlib.sha256()
    for name in sorted(loaded.authorities):
        material = loaded.authorities[name].material
        h.update(name.encode() + b"\0")
        h.update(material.leaf.fingerprint(hashes.SHA256()) if material else b"pending")
    for (host, certificate), supplied in sorted(loaded.supplied.items()):
        h.update(f"{host}/{certificate}".encode() + b"\0")
        h.update(supplied.leaf.fingerprint(hashes.SHA256()) if supplied else b"waiting")
    return h.hexdigest()


def check_saved(loaded: Loaded, saved: SavedPlan) -> None:
    """Refuse the whole plan when its inputs changed since it was made."""
    checks = [
        ("playbook", planfile.file_digest(Path(loaded.playbook.file)), loaded.playbook.file),
        (
            "inventory",
            planfile.inventory_digest(Path(loaded.inventory.file)),
            loaded.inventory.file,
        ),
        ("controller", controller_digest(loaded), "the authorities or supplied certificates"),
    ]
    for key, digest, what in checks:
        if saved.digests[key] != digest:
            raise ProvisionError(
                f"{what} changed since the plan was made; nothing was applied. "
                "Make a new plan and review it."
            )


def save_plan(loaded: Loaded, plan: Plan, limit: str | None) -> str:
    return planfile.dumps(
        plan,
        limit=limit,
        playbook_digest=planfile.file_digest(Path(loaded.playbook.file)),
        inventory_digest=planfile.inventory_digest(Path(loaded.inventory.file)),
        controller_digest=controller_digest(loaded),
    )


def load_saved(
    path: str, forks: int = 50, connect: ConnectOptions | None = None, lock_timeout: float = 30.0
) -> tuple[Loaded, SavedPlan]:
    """Reload a saved plan's inputs, refusing if they changed, limited to its hosts."""
    saved = planfile.loads(path)
    names = [h.host for h in saved.plan.hosts]
    loaded = load(
        saved.plan.playbook,
        saved.plan.inventory,
        ",".join(names),
        forks=forks,
        connect=connect,
        lock_timeout=lock_timeout,
    )
    check_saved(loaded, saved)
    known = {t.host.name for t in loaded.targets}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InputError(
            Location(path),
            f"the plan names hosts the inventory does not select: "
            f"{', '.join(unknown)}; make a new plan",
        )
    return loaded, saved
