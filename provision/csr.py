"""The CSR workflow: keys made on the hosts, requests collected on the controller.

For each host and each `provided` certificate without a `key:`, the key is kept if the host
already has a usable one at the certificate's key output (else made and written there, 0600),
and a PEM CSR with the playbook's subject and every name is written to the output folder as
``<host>-<certificate>.csr``. When the signed certificate later appears at the `provided`
path, `apply` installs it against that key.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from provision import fsutil
from provision.api import Loaded, close_all
from provision.apply.keymaker import KeyMaker
from provision.crypto import build, encode, keys
from provision.crypto.build import LeafRequest, SubjectFields
from provision.crypto.decode import load_private_key
from provision.errors import CryptoError, ProvisionError
from provision.inputs.targets import Target
from provision.model.playbook import Certificate, ProvidedSource


@dataclass(frozen=True)
class CsrResult:
    host: str
    certificate: str
    csr_file: str | None
    key: str  # "kept" | "created"
    error: str | None = None


def wants_csr(certificate: Certificate) -> bool:
    return isinstance(certificate.source, ProvidedSource) and certificate.source.key is None


async def _one(
    target: Target, certificate: Certificate, out: Path, keymaker: KeyMaker
) -> CsrResult:
    name = target.host.name
    key_output = next(o for o in certificate.outputs if o.is_key_file)
    path = target.output_path(key_output)
    try:
        state = await target.transport.read(path)
        key = None
        if state.kind == "symlink":
            raise ProvisionError(f"{path} is a symlink; refusing to write through it")
        if state.content is not None:
            try:
                key = load_private_key(state.content, source=path)
            except CryptoError:
                key = None  # unreadable: make a new one (the old file is replaced)
        action = "kept"
        if key is None or keys.label(key) != certificate.key.label:
            key = await keymaker.generate(certificate.key)
            data = (
                encode.private_key_der(key)
                if key_output.format == "der"
                else encode.private_key_pem(key)
            )
            await target.transport.write(path, data, 0o600)
            action = "created"
        subject = (
            SubjectFields(**certificate.subject.model_dump())
            if certificate.subject
            else SubjectFields()
        )
        request = build.csr(LeafRequest(subject, tuple(certificate.names), 1), key)
        csr_file = out / f"{name}-{certificate.name}.csr"
        fsutil.write_atomic(str(csr_file), request.public_bytes(serialization.Encoding.PEM), 0o644)
        return CsrResult(name, certificate.name, str(csr_file), action)
    except ProvisionError as exc:
        return CsrResult(name, certificate.name, None, "failed", exc.message)


async def make_csrs(loaded: Loaded, out: Path) -> list[CsrResult]:
    from provision.converged.document import forget_all

    forget_all()  # keys may be made on the hosts: no converged record may outlive a write
    keymaker = KeyMaker()
    try:
        jobs = [
            _one(target, certificate, out, keymaker)
            for target in loaded.targets
            for certificate in target.playbook.certificates
            if wants_csr(certificate)
        ]
        return list(await asyncio.gather(*jobs))
    finally:
        keymaker.close()
        await close_all(loaded)
