"""What ``-i`` names, read into YAML-inventory data: a YAML or INI file, the JSON
``ansible-inventory --list`` prints, an executable inventory script, or a directory of them.

Each becomes one or more ``Document`` of the YAML inventory's shape, so that one resolver
(provision.inputs.inventory) merges them all as Ansible does.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from dataclasses import dataclass, field
from pathlib import Path

from provision.errors import InputError, Location
from provision.inputs.dynamic_inventory import from_json, is_listing, run_script
from provision.inputs.files import IsDirectory, UnreadableFile, read_regular
from provision.inputs.ini_inventory import looks_like_ini, parse_ini
from provision.inputs.manifest import Manifest, read
from provision.inputs.vault import is_vault
from provision.inputs.vault_secrets import VaultKeys
from provision.inputs.yaml_lines import MAX_FILE_BYTES, Document, load_bytes, load_text

# The names Ansible skips in an inventory directory (hidden files, its vars folders, and its
# default INVENTORY_IGNORE_EXTS): an editor's backup beside the inventory is not a source.
_IGNORED = re.compile(
    r"^\.|^(host_vars|group_vars|vars_plugins)$"
    r"|(\.pyc|\.pyo|\.swp|\.bak|~|\.rpm|\.md|\.txt|\.rst|\.orig|\.cfg|\.retry|\.ini\.example)$"
)
# A directory of inventories nested deeper than this is a link loop, not a layout.
_MAX_DEPTH = 8


@dataclass
class Sources:
    """The documents of one ``-i``, and the folder whose group_vars/ and host_vars/ apply."""

    documents: list[Document] = field(default_factory=list)
    base: Path = Path(".")


def read_sources(
    path: Path, display: str, reads: Manifest | None, vault: VaultKeys | None = None
) -> Sources:
    """``vault`` opens a vault-encrypted inventory file, as Ansible's INI and YAML plugins do."""
    keys = vault if vault is not None else VaultKeys.of(reads=reads)
    read(reads, path)
    if path.is_dir():
        found = Sources(base=path)
        _read_folder(path, display, reads, found, 0, keys)
        if not found.documents:
            raise InputError(Location(display), "is a directory with no inventory in it")
        return found
    return Sources([_read_file(path, display, reads, keys)], path.parent)


def _read_folder(
    folder: Path, display: str, reads: Manifest | None, into: Sources, depth: int, vault: VaultKeys
) -> None:
    if depth > _MAX_DEPTH:
        raise InputError(Location(display), f"inventory folders nest deeper than {_MAX_DEPTH}")
    if reads is not None:
        reads.listed(folder)
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise InputError(Location(display), f"cannot list: {exc.strerror or exc}") from None
    for name in names:
        if _IGNORED.search(name):
            continue
        entry = folder / name
        shown = os.path.join(display, name)
        read(reads, entry)
        if entry.is_dir():
            _read_folder(entry, shown, reads, into, depth + 1, vault)
        else:
            into.documents.append(_read_file(entry, shown, reads, vault))


def _read_file(path: Path, display: str, reads: Manifest | None, vault: VaultKeys) -> Document:
    if _is_executable(path):
        if reads is not None:
            reads.volatile(f"ran the inventory script {display}")
        return run_script(path, display)
    try:
        raw = read_regular(path, MAX_FILE_BYTES)
    except IsDirectory:
        raise InputError(Location(display), "is a directory, expected an inventory") from None
    except UnreadableFile as exc:
        raise InputError(Location(display), str(exc)) from None
    if is_vault(raw):  # ansible-vault encrypt hosts.ini
        raw = vault.open(raw, Location(display, 1))
    suffix = path.suffix.lower()
    if suffix in (".yml", ".yaml", ".json"):
        return _yaml_or_listing(load_bytes(raw, display))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(Location(display, line), "is not valid UTF-8 text") from None
    if suffix == ".ini" or looks_like_ini(text):
        return parse_ini(text, display)
    try:
        doc = load_text(text, display)
    except InputError as yaml_error:
        problem: InputError | None = yaml_error
    else:
        if doc.data is None or isinstance(doc.data, dict):
            return _yaml_or_listing(doc)
        problem = None
    # Not a YAML mapping (``host:2222`` alone reads as a YAML string): Ansible's INI plugin
    # reads what its YAML plugin cannot, and so do we; the YAML error if INI fails too.
    try:
        return parse_ini(text, display)
    except InputError:
        if problem is not None:
            raise problem from None
        raise


def _yaml_or_listing(doc: Document) -> Document:
    _refuse_plugin_config(doc)
    return from_json(doc.data, doc.file) if is_listing(doc.data) else doc


def _refuse_plugin_config(doc: Document) -> None:
    """An inventory plugin's configuration (``plugin: amazon.aws.aws_ec2``) is Ansible code
    to run, not an inventory: say how to have Ansible run it rather than read its keys as
    groups. (A group named ``plugin`` has a mapping or nothing, never a name, as its value.)"""
    if not isinstance(doc.data, dict) or not isinstance(doc.data.get("plugin"), str):
        return
    raise InputError(
        Location(doc.file, doc.line_of(("plugin",))),
        f"is the configuration of the Ansible inventory plugin {doc.data['plugin']}, which "
        "provision does not run (it runs no Ansible code). Have Ansible run it and give "
        f"provision its answer: `ansible-inventory -i {shlex.quote(doc.file)} --list > "
        "inv.json` (with any other -i the plugin builds on), then `provision ... -i "
        "inv.json`, which reads the hosts, groups and variables the plugin found "
        "(docs/inventory.md, Feeding a dynamic inventory)",
    )


def _is_executable(path: Path) -> bool:
    # As Ansible's script plugin: an executable regular file is run, whatever its name.
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and os.access(path, os.X_OK)


__all__ = ["Sources", "read_sources"]
