"""The CSR workflow: keys made on the hosts, requests collected on the controller.

For each host and each `provided` certificate without a `key:`, the host's key is kept when it
has the playbook's key type (else a new one is made) and a PEM CSR with the playbook's subject
and every name is written to the output folder as ``<host>-<certificate>.csr``. When the signed
certificate later appears at the `provided` path, `apply` installs it against that key.

A new key never replaces a live key that a certificate on the host is served with (a key type
changed in the playbook): it waits beside the key output (``layout.pending_key``) and the
served certificate keeps working until the certificate signed for the new key is supplied;
`apply` then installs both, backing up the old ones. Every key is written as apply writes:
under the host's lock, staged, backed up and renamed under the journal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from provision import fsutil
from provision.api import Loaded, close_all, finish_interrupted
from provision.apply.executor import write_files
from provision.apply.keymaker import KeyMaker
from provision.apply.lock import HostLock
from provision.crypto import build, keys
from provision.crypto.build import LeafRequest, SubjectFields
from provision.crypto.types import PrivateKey
from provision.errors import ProvisionError
from provision.facts import gather
from provision.inputs.targets import Target
from provision.layout import pending_key
from provision.model.playbook import Certificate, Output
from provision.plan.certificate import key_file_bytes, key_output, read_current
from provision.sources.base import Current
from provision.sources.provided import wants_csr


@dataclass(frozen=True)
class CsrResult:
    host: str
    certificate: str
    csr_file: str | None
    key: str  # "kept", "created", "pending" (made beside a live key), or "failed"
    error: str | None = None


@dataclass(frozen=True)
class _KeyChoice:
    key: PrivateKey
    action: str  # as CsrResult.key
    write_to: str | None  # the path a new key goes to; None: kept as it is


async def _choose_key(
    target: Target, certificate: Certificate, current: Current, keymaker: KeyMaker
) -> _KeyChoice:
    wanted = certificate.key.label
    if current.key is not None and keys.label(current.key) == wanted:
        return _KeyChoice(current.key, "kept", None)
    if current.pending_key is not None and keys.label(current.pending_key) == wanted:
        return _KeyChoice(current.pending_key, "kept", None)
    path = target.output_path(_key_output_of(certificate))
    key = await keymaker.generate(certificate.key)
    served = (
        current.key is not None
        and current.leaf is not None
        and keys.matches(current.key, current.leaf.public_key())  # type: ignore[arg-type]
    )
    if served:
        return _KeyChoice(key, "pending", pending_key(path))
    return _KeyChoice(key, "created", path)


def _key_output_of(certificate: Certificate) -> Output:
    output = key_output(certificate)
    assert output is not None  # the model requires a key output of a CSR certificate
    return output


async def _host(
    loaded: Loaded, target: Target, out: Path, keymaker: KeyMaker, now: dt.datetime
) -> list[CsrResult]:
    name = target.host.name
    certificates = [c for c in target.playbook.certificates if wants_csr(c)]
    if not certificates:
        return []
    try:
        await target.transport.start()  # before any path: an SSH host's home is its own
        lock = HostLock(target.transport, target.certificates_dir)
        await lock.acquire(loaded.lock_timeout, now)
        try:
            await finish_interrupted(target)
            facts = await gather(target.transport, target.paths_of_interest())
            passwords = loaded.passwords.get(name, {})
            choices: list[tuple[Certificate, _KeyChoice]] = []
            for certificate in certificates:
                paths = target.output_paths(certificate)
                for path in paths.values():
                    if facts.file(path).kind == "symlink":
                        raise ProvisionError(f"{path} is a symlink; refusing to write through it")
                current = read_current(certificate, paths, facts, passwords)
                choices.append(
                    (certificate, await _choose_key(target, certificate, current, keymaker))
                )
            files = [
                (choice.write_to, key_file_bytes(_key_output_of(certificate), choice.key), 0o600)
                for certificate, choice in choices
                if choice.write_to is not None
            ]
            if files:
                await write_files(target, facts, files, now, "csr")
        finally:
            await lock.release()
    except ProvisionError as exc:
        return [CsrResult(name, c.name, None, "failed", exc.message) for c in certificates]
    # The requests are written only once their keys are on the host: never a CSR for a key
    # that was lost.
    return [
        CsrResult(
            name, certificate.name, _write_csr(out, name, certificate, choice.key), choice.action
        )
        for certificate, choice in choices
    ]


def _write_csr(out: Path, host: str, certificate: Certificate, key: PrivateKey) -> str:
    subject = (
        SubjectFields(**certificate.subject.model_dump())
        if certificate.subject
        else SubjectFields()
    )
    request = build.csr(LeafRequest(subject, tuple(certificate.names), 1), key)
    csr_file = out / f"{host}-{certificate.name}.csr"
    fsutil.write_atomic(str(csr_file), request.public_bytes(serialization.Encoding.PEM), 0o644)
    return str(csr_file)


async def make_csrs(loaded: Loaded, out: Path, now: dt.datetime | None = None) -> list[CsrResult]:
    from provision.converged.document import forget_all

    forget_all()  # keys may be made on the hosts: no converged record may outlive a write
    moment = now or dt.datetime.now(dt.UTC)
    keymaker = KeyMaker()
    try:
        per_host = await asyncio.gather(
            *(_host(loaded, target, out, keymaker, moment) for target in loaded.targets)
        )
        return [result for results in per_host for result in results]
    finally:
        keymaker.close()
        await close_all(loaded)
