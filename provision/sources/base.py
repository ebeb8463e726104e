"""What every certificate source answers, whatever issues the certificate.

A source (the playbook's ``source: {type: ...}``) says three things, as certbot's
authenticators and community.crypto's provider backends do:

- ``expected``: what a host is expected to hold (an authority's material, a supplied file, or
  nothing to compare with for a self-signed certificate);
- ``decide``: whether the certificate the host holds must be (re)issued, and why, in the words
  a plan prints (the table in docs/regeneration.md);
- ``issue``: how to make new material at apply time.

Planning calls the first two and is pure; only the executor calls ``issue``. Adding a source
is one module here, registered in ``sources/registry.py``, plus its model in model/playbook.py.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from cryptography import x509

from provision.crypto.types import PrivateKey
from provision.errors import ProvisionError
from provision.model.playbook import Certificate, KeySpec, Playbook
from provision.plan.material import Above, Material
from provision.plan.model import Action

if TYPE_CHECKING:
    from provision.inputs.manifest import Manifest
    from provision.sources.authority_store import AuthorityStore
    from provision.sources.supplied import Supplied


@dataclass(frozen=True)
class Current:
    """What the host's output files say about a certificate."""

    leaf: x509.Certificate | None
    key: PrivateKey | None
    chain: tuple[x509.Certificate, ...]
    unreadable: tuple[str, ...]  # "httpscert.pem: truncated PEM ..."
    # A key `provision csr` made for a new key type, waiting beside the key output until its
    # signed certificate arrives (layout.pending_key); None when there is none.
    pending_key: PrivateKey | None = None


@dataclass(frozen=True)
class Expected:
    """What the playbook's source says the certificate must be.

    self-signed: nothing set. ca: ``authority`` (its material), or only ``authority_subject``
    while the authority is still to be created. provided: ``supplied``, or nothing while the
    signed file has not arrived (``waiting_for`` names it).
    """

    authority: Material | None = None
    authority_subject: str | None = None
    # The authority's certificate file on the controller, named when it cannot issue.
    authority_file: str | None = None
    supplied: Supplied | None = None
    waiting_for: str | None = None
    # acme with http-01: the account key's JWK thumbprint (RFC 7638, public), which an
    # HAProxy site answers challenges with (servers/haproxy.py).
    http01_thumbprint: str | None = None
    # acme: the CA's renewal information (ARI) as last recorded: (serial it is about, the
    # moment it suggests renewing from).
    renew_at: tuple[int, dt.datetime] | None = None
    # ca, while its authority rotates (phase 2 on): the old CA, whose leaves are reissued,
    # and the words that say why.
    previous_authority: x509.Certificate | None = None
    rotating: str | None = None


@dataclass(frozen=True)
class Decision:
    action: Action | None
    reason: str
    new_key: bool = False
    # For a decision to leave the certificate alone: the moment the clock alone would change
    # it (the renewal window opens). None: the clock cannot change it.
    until: dt.datetime | None = None
    # The new key is the one `provision csr` left pending: installed, and its file removed.
    key_from_pending: bool = False


class HostRefusal(ProvisionError):
    """The certificate cannot be installed on this host as things stand."""


class Controller(Protocol):
    """What the controller holds for sources, checked at load time (``inputs.load.Loaded``)."""

    @property
    def authorities(self) -> Mapping[str, AuthorityStore]: ...

    @property
    def supplied(self) -> Mapping[tuple[str, str], Supplied | None]: ...

    @property
    def folder(self) -> Path: ...

    @property
    def reads(self) -> Manifest: ...


@dataclass(frozen=True)
class IssueRequest:
    """Everything ``issue`` may use: the certificate, what the host holds, the plan's word on
    the key, and the run's clock, key maker and authorities."""

    spec: Certificate
    current: Current
    new_key: bool
    expected: Expected
    now: dt.datetime
    generate_key: Callable[[KeySpec], Awaitable[PrivateKey]]
    authorities: Mapping[str, AuthorityStore]
    host: str = ""  # whose certificate: a replaced leaf is revoked once that host finished
    # The playbook's folder on the controller: what a source keeps there (an ACME account)
    # and the files the playbook names relative to it.
    folder: Path = Path()
    # Where HTTP-01 key authorisations go on the host (apply/challenges.py); None when the
    # host serves none.
    challenges: ChallengeFiles | None = None

    async def key(self) -> PrivateKey:
        """The key to certify: the host's own, unless the plan asked for a new one."""
        if self.new_key or self.current.key is None:
            return await self.generate_key(self.spec.key)
        return self.current.key


class ChallengeFiles(Protocol):
    """The host's challenge folder, as a source writing HTTP-01 answers sees it: blocking
    calls (an ACME order runs in a thread), each a write or removal over the host's
    transport."""

    def put(self, token: str, content: bytes) -> None: ...

    def remove(self, token: str) -> None: ...


class CertificateSource(ABC):
    """One kind of certificate source; see the module docstring."""

    type: ClassVar[str]  # the model's ``type`` tag
    # A self-signed certificate is its own root: an output of content `root` carries the leaf,
    # and its PEM certificate is its full chain.
    leaf_is_root: ClassVar[bool] = False

    def expected(self, spec: Certificate, host: str, controller: Controller) -> Expected:
        return Expected()

    @abstractmethod
    def decide(
        self, spec: Certificate, current: Current, now: dt.datetime, expected: Expected
    ) -> Decision:
        """Whether to (re)issue, and why (pure: no clock, no I/O)."""

    def check(
        self, spec: Certificate, playbook: Playbook
    ) -> tuple[tuple[str | int, ...], str] | None:
        """A problem with the certificate that only the whole playbook shows (a reference to
        something it does not define), as (key path within the certificate, message)."""
        return None

    def waiting_for(self, spec: Certificate, expected: Expected) -> str | None:
        """The file this certificate waits for before anything can be installed (CSR
        workflow); None when the source can issue now."""
        return None

    def above(self, spec: Certificate, expected: Expected) -> Above | None:
        """The chain and root a certificate issued now will have, when the source knows them
        before issuing; None when they come with the new leaf (self-signed: it is its root)."""
        return None

    def material(self, spec: Certificate, current: Current, expected: Expected) -> Material:
        """The material of a certificate the host already holds (chain and root from the
        source)."""
        assert current.leaf is not None and current.key is not None
        return Material(current.key, current.leaf)

    def http01_port(self, spec: Certificate) -> int | None:
        """The port a CA fetches HTTP-01 challenges from, when the sites that bind this
        certificate must serve them (servers/challenge.py); None: it proves names otherwise."""
        return None

    @abstractmethod
    async def issue(self, request: IssueRequest) -> Material:
        """New material for the certificate (apply time only)."""

    async def revoke(
        self, spec: Certificate, leaf: x509.Certificate, reason: int, folder: Path
    ) -> str:
        """Revoke ``leaf`` with the RFC 5280 ``reason`` code; what was done, in a few words.
        Raises ``ProvisionError`` when it cannot be (the default: nobody here can)."""
        raise ProvisionError(
            f"a {self.type} certificate cannot be revoked by provision; ask whoever issued it"
        )


# A key whose public half matches its certificate but whose signatures do not verify.
DAMAGED_KEY = "key is damaged: a signature made with it does not verify"


def when(moment: dt.datetime) -> str:
    """A date as plans print it: never "in N days", so an unchanged plan reads the same
    tomorrow."""
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def days(count: float) -> str:
    whole = int(count)
    return "1 day" if whole == 1 else f"{whole} days"
