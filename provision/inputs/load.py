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

from cryptography import x509
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
from provision.trust import rotation
from provision.trust.revocation import published


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
    forks: int = 20
    lock_timeout: float = 30.0
    # Every controller path loading (and rendering, as the run goes on) read or looked for.
    reads: Manifest = field(default_factory=Manifest)
    # The certificates of each supplied trust root file, by the path as the playbook names it.
    trust_files: Mapping[str, list[x509.Certificate]] = field(default_factory=dict)
    # Each authority's CRL as published on the controller (DER, PEM), for `crl.host_dir`.
    crls: Mapping[str, tuple[bytes, bytes] | None] = field(default_factory=dict)
    # The self-signed certificates of other hosts of the run that trust roots name, filled
    # by the fleet before any host is planned (provision/trust/peers.py); None: waits.
    peer_roots: dict[str, list[x509.Certificate] | None] = field(default_factory=dict)

    def expected(self, target: Target) -> dict[str, Expected]:
        """For each certificate of a host, what its source says it must be."""
        name = target.host.name
        return {c.name: source_of(c).expected(c, name, self) for c in target.playbook.certificates}


# What ``-i`` named: one source, or several (``-i a -i b``), merged in this order.
InventorySources = str | Path | Sequence[str | Path]


def inventory_sources(inventory: InventorySources) -> tuple[str, ...]:
    """The ``-i`` sources as the paths given, in order."""
    if isinstance(inventory, (str, Path)):
        return (str(inventory),)
    if not inventory:
        raise InputError(Location("-i"), "no inventory given")
    return tuple(str(source) for source in inventory)


def load(
    playbook: str | Path,
    inventory: InventorySources,
    limit: str | None = None,
    forks: int = 20,
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
    sources = inventory_sources(inventory)
    inv = load_inventory([Path(s) for s in sources], sources, reads, VaultKeys.of(vault, reads))
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
    trust_files = _trust_inputs(doc, targets, folder, reader, passwords, reads, controller_files)
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
        trust_files,
        {
            name: published(store, reads)
            for name, store in authorities.items()
            if store.spec.crl is not None and store.spec.crl.host_dir is not None
        },
    )


def _trust_inputs(
    doc: Document,
    targets: list[Target],
    folder: Path,
    reader: PasswordReader,
    passwords: dict[str, dict[str, bytes]],
    reads: Manifest,
    controller_files: bool,
) -> dict[str, list[x509.Certificate]]:
    """The trust roots supplied as files (read once), and each Java store's password."""
    from provision.trust.roots import root_files
    from provision.trust.stores import password_key

    if not controller_files:
        return {}
    found: dict[str, list[x509.Certificate]] = {}
    for target in targets:
        for path, certificates in root_files(target.playbook, folder, doc.locate, reads).items():
            found.setdefault(path, certificates)
        for t, trust in enumerate(target.playbook.trust):
            for s, store in enumerate(trust.stores):
                if store.type != "java" or store.password is None:
                    continue
                where = doc.locate(("trust", t, "stores", s, "password"))
                password = reader.read(store.password, where)
                if not password:
                    raise InputError(where, "is empty; a Java truststore needs a password")
                passwords.setdefault(target.host.name, {})[password_key(store.path)] = password
    return found


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
    # During a rotation the store that issues is the phase's (trust/rotation.py).
    return {
        spec.name: rotation.arrange(
            open_authority(spec, folder, doc.locate(("authorities", index)), reads),
            doc.locate(("authorities", index)),
            reads,
        )
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
        store = loaded.authorities[name]
        material = store.material
        h.update(name.encode() + b"\0")
        h.update(material.leaf.fingerprint(hashes.SHA256()) if material else b"pending")
        # A rotation's phase changes what is trusted and issued without changing the CA.
        h.update(f"phase {store.phase}".encode())
        for root in store.roots:
            h.update(root.fingerprint(hashes.SHA256()))
    for path, roots in sorted(loaded.trust_files.items()):
        h.update(f"trust-file {path}".encode() + b"\0")
        h.update(b"".join(root.fingerprint(hashes.SHA256()) for root in roots))
    for (host, certificate), supplied in sorted(loaded.supplied.items()):
        h.update(f"{host}/{certificate}".encode() + b"\0")
        h.update(supplied.leaf.fingerprint(hashes.SHA256()) if supplied else b"waiting")
    return h.hexdigest()


def check_saved(loaded: Loaded, saved: SavedPlan) -> None:
    """Refuse the whole plan when its inputs changed since it was made."""
    checks = [
        ("playbook", planfile.file_digest(Path(loaded.playbook.file)), loaded.playbook.file),
        *(
            (f"inventory:{index}", planfile.inventory_digest(Path(source)), source)
            for index, source in enumerate(loaded.inventory.sources)
        ),
        ("controller", controller_digest(loaded), "the authorities or supplied certificates"),
    ]
    for key, digest, what in checks:
        if saved.digests.get(key) != digest:
            raise ProvisionError(
                f"{what} changed since the plan was made; nothing was applied. "
                "Make a new plan and review it."
            )


def save_plan(loaded: Loaded, plan: Plan, limit: str | None) -> str:
    return planfile.dumps(
        plan,
        limit=limit,
        playbook_digest=planfile.file_digest(Path(loaded.playbook.file)),
        inventory_digests=tuple(
            planfile.inventory_digest(Path(source)) for source in loaded.inventory.sources
        ),
        controller_digest=controller_digest(loaded),
    )


def load_saved(
    path: str,
    forks: int = 20,
    connect: ConnectOptions | None = None,
    lock_timeout: float = 30.0,
    vault: Sequence[tuple[str, str]] = (),
) -> tuple[Loaded, SavedPlan]:
    """Reload a saved plan's inputs (every -i source it was made with, in its order),
    refusing if they changed, limited to its hosts."""
    saved = planfile.loads(path)
    names = [h.host for h in saved.plan.hosts]
    loaded = load(
        saved.plan.playbook,
        saved.plan.inventory,
        ",".join(names),
        forks=forks,
        connect=connect,
        lock_timeout=lock_timeout,
        vault=vault,
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
