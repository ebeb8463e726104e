"""One ACME order, from account to certificate chain, through certbot's ``acme`` package.

Everything here is blocking (``acme`` uses requests): the source runs it in a thread. Every
failure becomes one ``AcmeError`` paragraph carrying the CA's own problem document (type and
detail), never a traceback; nothing of the account key or the EAB HMAC key is in any message.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from provision.acmeclient import dns, orders, renewal
from provision.acmeclient.account import account_key
from provision.acmeclient.network import Network, RetryLater
from provision.crypto.types import PrivateKey
from provision.errors import ProvisionError
from provision.model.playbook import AcmeSource
from provision.sources.base import ChallengeFiles

T = TypeVar("T")

# Bad nonces, rate limits and Retry-After are retried request by request (network.py).
_ORDER_DEADLINE = dt.timedelta(seconds=180)


class AcmeError(ProvisionError):
    pass


@dataclass(frozen=True)
class OrderInput:
    source: AcmeSource
    names: tuple[str, ...]
    key: PrivateKey
    base: Path  # the playbook's folder: the account folder and relative paths
    eab_hmac: str | None
    # http-01: the host's challenge folder, which the sites binding the certificate serve.
    challenges: ChallengeFiles | None = None
    # Whose certificate ("HOST/CERTIFICATE"): names the order a stopped run left behind.
    label: str = ""


def order_certificate(order: OrderInput) -> list[x509.Certificate]:
    """The leaf and its chain (leaf first), as the CA issued them for ``order.key``."""
    return _contained(order.source, lambda: _order(order))


def revoke_certificate(source: AcmeSource, base: Path, leaf: x509.Certificate, reason: int) -> None:
    """Revoke ``leaf``, signed by the account that ordered it (RFC 8555 7.6)."""

    def revoke() -> None:
        acme, _ = _client(source, base)
        existing = messages.NewRegistration.from_data(only_return_existing=True)
        try:
            acme.new_account(existing)
        except errors.ConflictError as found:
            acme.net.account = messages.RegistrationResource(
                uri=found.location, body=messages.Registration()
            )
        acme.revoke(leaf, reason)

    _contained(source, revoke)


def _contained(source: AcmeSource, call: Callable[[], T]) -> T:
    """``call``, with every failure one ``AcmeError`` paragraph in the CA's own words."""
    try:
        return call()
    except AcmeError:
        raise
    except RetryLater as later:
        when = f" after {later.when.strftime('%Y-%m-%d %H:%M:%S UTC')}" if later.when else " later"
        raise AcmeError(
            f"the ACME CA {source.directory} asks to be asked again{when} "
            f"({_one_line(later.problem)}); nothing was changed, apply again then"
        ) from None
    except errors.ValidationError as exc:
        raise AcmeError(_validation_words(exc, source.directory)) from None
    except messages.Error as exc:
        raise AcmeError(f"the ACME CA {source.directory} refused: {_problem(exc)}") from None
    except errors.TimeoutError:
        raise AcmeError(
            f"the order at {source.directory} was not finished within "
            f"{int(_ORDER_DEADLINE.total_seconds())} s"
        ) from None
    except requests.RequestException as exc:
        raise AcmeError(
            f"the ACME directory {source.directory} cannot be reached: {_one_line(exc)}"
        ) from None
    except (errors.Error, ValueError, jose.errors.Error) as exc:
        raise AcmeError(
            f"the ACME CA {source.directory} answered something unusable: {_one_line(exc)}"
        ) from None


def _client(source: AcmeSource, base: Path) -> tuple[client.ClientV2, JWKEC]:
    jwk = JWKEC(key=account_key(source, base))
    net = Network(
        jwk,
        alg=ES256,
        user_agent="provision",
        verify_ssl=_verify(source, base),
    )
    directory = client.ClientV2.get_directory(source.directory, net)
    return client.ClientV2(directory, net), jwk


def _order(order: OrderInput) -> list[x509.Certificate]:
    acme, jwk = _client(order.source, order.base)
    _register(acme, jwk, order)
    csr = _csr(order)
    deadline = dt.datetime.now() + _ORDER_DEADLINE
    chains = order.source.preferred_chain is not None
    done = None
    resumed = orders.resume(acme, order.source, order.base, order.label, csr)
    if resumed is not None:
        # Validated by an earlier run that did not finish: finalised (or downloaded) now.
        done = acme.poll_finalization(resumed, deadline, fetch_alternative_chains=chains)
        if not _for_key(done, order):
            done = None  # issued for a key that run made and lost: order again
    if done is None:
        validated = validated_order(acme, jwk, order, csr, deadline)
        done = acme.finalize_order(validated, deadline, fetch_alternative_chains=chains)
    orders.forget(order.source, order.base, order.label)
    chain = _chosen_chain(done, order.source)
    renewal.fetch_and_record(acme, order.source, order.base, order.label, chain[0])
    return chain


def validated_order(
    acme: client.ClientV2,
    jwk: JWKEC,
    order: OrderInput,
    csr: bytes,
    deadline: dt.datetime,
) -> messages.OrderResource:
    """A new order with every name proven: recorded on the controller as soon as it exists,
    so that a run stopped after this point is resumed by the next (``orders.resume``)."""
    orderr = acme.new_order(csr, profile=order.source.profile)
    orders.record(order.source, order.base, order.label, orderr.uri)
    cleanups: list[Callable[[], None]] = []
    try:
        for authz in orderr.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue  # validated by an earlier order of this account: paid for already
            _answer(acme, jwk, authz, order, cleanups)
        return acme.poll_authorizations(orderr, deadline)
    finally:
        for cleanup in cleanups:
            # A record left behind is harmless; the certificate is what matters.
            with contextlib.suppress(ProvisionError):
                cleanup()


def _for_key(done: messages.OrderResource, order: OrderInput) -> bool:
    leaf = x509.load_pem_x509_certificates(done.fullchain_pem.encode())[0]
    return leaf.public_key() == order.key.public_key()


def _chosen_chain(done: messages.OrderResource, source: AcmeSource) -> list[x509.Certificate]:
    """The chain the CA sent first, or the alternate whose topmost certificate's issuer has
    the common name ``preferred_chain`` (certbot's rule); the default when none has."""
    chains = [done.fullchain_pem, *(done.alternative_fullchains_pem or [])]
    parsed = [x509.load_pem_x509_certificates(pem.encode()) for pem in chains]
    if source.preferred_chain is not None:
        for chain in parsed:
            names = chain[-1].issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            if any(n.value == source.preferred_chain for n in names):
                return chain
    return parsed[0]


def _verify(source: AcmeSource, base: Path) -> str | bool:
    """The roots the directory's TLS certificate is checked against."""
    if source.ca_bundle is not None:
        bundle = Path(source.ca_bundle)
        return str(bundle if bundle.is_absolute() else base / bundle)
    for variable in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if os.environ.get(variable):
            return os.environ[variable]
    return True


def _register(acme: client.ClientV2, jwk: JWKEC, order: OrderInput) -> None:
    source = order.source
    eab = None
    if source.eab is not None:
        assert order.eab_hmac is not None  # read by the source from env or file
        eab = messages.ExternalAccountBinding.from_data(
            account_public_key=jwk.public_key(),
            kid=source.eab.kid,
            hmac_key=order.eab_hmac,
            directory=acme.directory,
        )
    registration = messages.NewRegistration.from_data(
        email=source.email,
        terms_of_service_agreed=source.accept_terms,
        external_account_binding=eab,
    )
    try:
        acme.new_account(registration)
    except errors.ConflictError as existing:
        # The key has an account already: the CA says where; use it.
        acme.net.account = messages.RegistrationResource(
            uri=existing.location, body=messages.Registration()
        )


def _csr(order: OrderInput) -> bytes:
    pem = order.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    domains: list[str] = []
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for name in order.names:
        try:
            addresses.append(ipaddress.ip_address(name))
        except ValueError:
            domains.append(name)
    return crypto_util.make_csr(pem, domains, ipaddrs=addresses or None)


def _answer(
    acme: client.ClientV2,
    jwk: JWKEC,
    authz: messages.AuthorizationResource,
    order: OrderInput,
    cleanups: list[Callable[[], None]],
) -> None:
    source = order.source
    domain = authz.body.identifier.value
    kind = challenges.HTTP01 if source.challenge == "http-01" else challenges.DNS01
    for challb in authz.body.challenges:
        if isinstance(challb.chall, kind):
            break
    else:
        raise AcmeError(
            f"the ACME CA {source.directory} offers no {source.challenge} challenge for {domain}"
        )
    if isinstance(challb.chall, challenges.HTTP01):
        _answer_http(acme, jwk, challb, order, cleanups)
        return
    assert source.dns_hook is not None  # the model requires it for dns-01
    response, value = challb.response_and_validation(jwk)
    name = challb.chall.validation_domain_name(domain) + "."
    hook = source.dns_hook
    dns.run_hook("set", hook, domain, name, value, order.base)
    cleanups.append(lambda: dns.run_hook("clear", hook, domain, name, value, order.base))
    if source.propagation_timeout:
        resolvers = [dns.parse_resolver(r) for r in source.resolvers] or dns.system_resolvers()
        dns.wait_visible(name, value, resolvers, source.propagation_timeout)
    acme.answer_challenge(challb, response)


def _answer_http(
    acme: client.ClientV2,
    jwk: JWKEC,
    challb: messages.ChallengeBody,
    order: OrderInput,
    cleanups: list[Callable[[], None]],
) -> None:
    """The key authorisation in the host's challenge folder, then the CA asked to fetch it
    (over the site's http binding); removed again once the order is done."""
    files = order.challenges
    assert files is not None  # the executor gives every host its folder
    response, validation = challb.response_and_validation(jwk)
    token = challb.chall.encode("token")
    files.put(token, validation.encode())
    cleanups.append(lambda: files.remove(token))
    acme.answer_challenge(challb, response)


def _problem(error: messages.Error) -> str:
    words = f"{error.typ}: {error.detail or error.title or ''}".strip()
    return _one_line(words)


def _validation_words(exc: errors.ValidationError, directory: str) -> str:
    parts = []
    for authzr in exc.failed_authzrs:
        for challb in authzr.body.challenges:
            if challb.error is not None:
                parts.append(f"{authzr.body.identifier.value}: {_problem(challb.error)}")
    said = "; ".join(parts) or "no reason given"
    return f"the ACME CA {directory} refused the challenge: {said}"


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:600]
