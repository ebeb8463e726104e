"""The one chain verifier: is there a valid path from a leaf to a trusted root, and if not, why.

Every place that judges a chain asks this module: supplied files at load time (purpose
``server``), ``provision cert check/show --ca`` (any purpose), ``provision verify`` (the served
chain against the written root) and planning (``signature_problem``: does a host's leaf verify
against its issuer).

The verdict is cryptography's ``x509.verification`` (web PKI rules: signatures, validity, CA
constraints, path length, permitted algorithms), with two policies of ours on top for the server
purpose, as ``openssl verify -purpose sslserver`` has them: the leaf's key usage, when present,
must allow a TLS server key (digital signature, key encipherment or key agreement), and its
extended key usage, when present, must hold serverAuth (no EKU means any usage, as clients
treat it). A root is trusted for being given as one, not for its self-signature, which is never
checked (old roots signed with SHA-1 are still fine; cryptography does the same).

cryptography says *that* a chain failed ("candidates exhausted: signature does not match") but
not which certificate broke which rule. So when it refuses, ``_explain`` walks the path by
issuer name and names the first certificate and rule that fail; only when that finds nothing
(a web PKI rule it does not know, such as a malformed extension) is cryptography's own reason
shown. The walk explains, it never accepts: a chain is valid only when cryptography says so.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from provision.crypto.decode import der_items
from provision.crypto.details import (
    PublicKeyInfo,
    check_names,
    check_validity,
    public_key_info,
    signature_algorithm_name,
    unreadable_extensions,
)
from provision.errors import CryptoError

if TYPE_CHECKING:
    from cryptography.x509.verification import ExtensionPolicy, Policy

_T = TypeVar("_T", bound=x509.ExtensionType)
_E = TypeVar("_E", x509.ExtendedKeyUsage, x509.KeyUsage)

Purpose = Literal["any", "server"]
Rule = Literal[
    "no-issuer",  # no certificate names the issuer: a missing intermediate or root
    "untrusted-root",  # the path ends at a self-signed certificate that is not a given root
    "validity",  # expired or not yet valid
    "not-a-ca",  # an issuer without CA:TRUE
    "ca-key-usage",  # an issuer whose key usage lacks keyCertSign
    "path-length",  # more CAs below an issuer than its pathlen allows
    "key-usage",  # the leaf's key usage does not allow the purpose
    "extended-key-usage",  # the leaf's EKU does not allow the purpose
    "signature",  # a signature does not verify with the issuer's key
    "sha1",  # signed with SHA-1
    "algorithm",  # a signature or CA key algorithm the web PKI rules do not allow
    "name",  # a name the client uses is not covered
    "other",  # cryptography's reason, as it gave it
]


@dataclass(frozen=True)
class Problem:
    """Why a chain is refused: the certificate at fault, the rule, and one line for a person
    (without the certificate file's name, which only the caller knows)."""

    rule: Rule
    certificate: x509.Certificate
    text: str


class ChainError(CryptoError):
    """No valid path; ``problem`` says which certificate broke which rule."""

    def __init__(self, problem: Problem) -> None:
        hint = " (missing intermediate?)" if problem.rule == "no-issuer" else ""
        super().__init__(f"chain does not verify: {problem.text}{hint}")
        self.problem = problem


def verify(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: dt.datetime,
    *,
    names: Sequence[str] = (),
    purpose: Purpose = "any",
) -> list[x509.Certificate]:
    """The validated path, leaf first and root last, or ``ChainError``.

    ``at`` naive means UTC. ``names`` (DNS names or IP addresses a client will use) must each
    be covered by the leaf's SANs, by browser rules (``details.check_names``).
    """
    moment = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
    path = _verified_path(leaf, list(intermediates), list(roots), moment, purpose)
    uncovered = check_names(leaf, names)
    if uncovered:
        raise ChainError(Problem("name", leaf, "; ".join(uncovered)))
    return path


def signature_problem(certificate: x509.Certificate, issuer: x509.Certificate) -> str | None:
    """Why ``issuer``'s key did not sign ``certificate`` (None: it did), for planning.

    Planning recognises an issuer by name and key identifier (``compare.issued_by``), which a
    damaged or forged certificate copies; this is the proof. It is asked once per host per
    run; ``issued_by``'s own fallback just before it is answered from a small memo.
    """
    if _signature_verifies(certificate, issuer):
        return None
    return f"the signature on {subject_of(certificate)} does not verify with the key of " + (
        "its own (self-signed) certificate" if certificate == issuer else subject_of(issuer)
    )


def other_issuer(certificate: x509.Certificate, issuer: x509.Certificate) -> str | None:
    """Whether another CA than ``issuer`` signed ``certificate``, in words (None: by name and
    key identifier it is ``issuer``'s; the chain verifier judges the rest). ``issuer`` is the
    certificate itself when it should be self-signed.

    Asked before the chain is verified: with another CA's leaf and the expected root, the
    verifier finds no certificate for the leaf's issuer, which reads like a missing
    intermediate when the truth is a certificate from elsewhere."""
    named = certificate.issuer.rfc4514_string() or "(empty issuer)"
    if certificate == issuer:
        if certificate.issuer == certificate.subject:
            return None
        return f"signed by another CA: its issuer is {named}, where a self-signed one is expected"
    if certificate.issuer != issuer.subject:
        return (
            f"signed by another CA: its issuer is {named}, where {subject_of(issuer)} is expected"
        )
    used = _extension(certificate, x509.AuthorityKeyIdentifier)
    own = _extension(issuer, x509.SubjectKeyIdentifier)
    if used is not None and own is not None and used.key_identifier not in (None, own.digest):
        assert used.key_identifier is not None
        return (
            f"signed by another CA of the same name {subject_of(issuer)}: its authority key "
            f"identifier {used.key_identifier.hex(':').upper()} is not that CA's key "
            f"({own.digest.hex(':').upper()}), so the CA was re-keyed or made anew"
        )
    return None


# The last few answers, keyed by the certificates themselves (equal by their DER): planning
# asks twice in a row for a self-signed leaf (``compare.issued_by``, then the proof), and a
# few entries keep no host's certificates alive for the run. A memo of digests was tried
# first; computing two SHA-256 fingerprints per host cost half of what it saved.
@functools.lru_cache(maxsize=8)
def _signature_verifies(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def subject_of(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string() or "(empty subject)"


# --- the verdict: cryptography -------------------------------------------------------------


def _verified_path(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    roots: list[x509.Certificate],
    moment: dt.datetime,
    purpose: Purpose,
) -> list[x509.Certificate]:
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    if leaf in roots:
        # A self-signed leaf given as its own root (a self-signed certificate is what clients
        # install to trust it). cryptography would take it from the store unseen, so its
        # self-signature and its own rules are checked here: it is a leaf, not a CA's root.
        problem = _explained(leaf, [], roots, moment, purpose, self_root=True)
        if problem is not None:
            raise ChainError(problem)
        return [leaf]
    if not roots:
        raise ChainError(
            _explained(leaf, intermediates, roots, moment, purpose)
            or Problem("no-issuer", leaf, "no root certificate was given to verify against")
        )
    ca_policy, ee_policy = _policies(purpose)
    verifier = (
        PolicyBuilder()
        .store(Store(roots))
        .time(moment)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        return list(verifier.verify(leaf, intermediates).chain)
    except VerificationError as exc:
        reason = _reason(str(exc))
    raise ChainError(
        _explained(leaf, intermediates, roots, moment, purpose)
        or Problem("other", leaf, f"refused by the web PKI rules: {reason}")
    )


def _policies(purpose: Purpose) -> tuple[ExtensionPolicy, ExtensionPolicy]:
    """(CA policy, end-entity policy): web PKI defaults, with the purpose's usage rules.

    Always a *client* verifier: a server verifier would also match one name against the SANs,
    which ``check_names`` does for every name with clearer words; the purpose is carried by
    the EKU and key usage validators below instead of cryptography's fixed clientAuth.
    """
    from cryptography.x509.verification import Criticality, ExtensionPolicy

    ca = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _validator(_ca_eku_problem, purpose)
    )
    ee = (
        ExtensionPolicy.webpki_defaults_ee()
        # Names are check_names's job; a leaf without SANs is refused there when it matters.
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
        .may_be_present(
            x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _validator(_ee_eku_problem, purpose)
        )
        .may_be_present(
            x509.KeyUsage, Criticality.AGNOSTIC, _validator(_ee_key_usage_problem, purpose)
        )
    )
    return ca, ee


def _validator(
    rule: Callable[[x509.Certificate, _E | None, Purpose], str | None], purpose: Purpose
) -> Callable[[Policy, x509.Certificate, _E | None], None]:
    """One of the rules below, as cryptography's extension validators are called."""

    def validate(_policy: Policy, cert: x509.Certificate, extension: _E | None) -> None:
        problem = rule(cert, extension, purpose)
        if problem:
            raise ValueError(problem)

    return validate


def _reason(message: str) -> str:
    """cryptography's reason without its prefixes and the debug structures it appends: a
    Python repr (``(encountered processing <Certificate(...)>)``) or a Rust one
    (``Forbidden public key algorithm: AlgorithmIdentifier { oid: ... }``)."""
    text = " ".join(message.split())
    for prefix in ("validation failed: ", "candidates exhausted: "):
        text = text.removeprefix(prefix)
    return re.split(r" \(encountered processing <|: [A-Z]\w* \{| <[A-Z]\w*\(", text, maxsplit=1)[0]


# --- the rules, in words ----------------------------------------------------------------------

_SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
_ANY_EKU = x509.ObjectIdentifier("2.5.29.37.0")


def _ee_eku_problem(
    cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None, purpose: Purpose
) -> str | None:
    if purpose != "server" or eku is None or _SERVER_AUTH in eku:
        return None  # no EKU means any usage
    return (
        f"the certificate {subject_of(cert)} lacks serverAuth (TLS Web Server "
        "Authentication) in its extended key usage"
    )


def _ca_eku_problem(
    cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None, purpose: Purpose
) -> str | None:
    # An issuer's EKU, when it has one, limits what it may issue for (as openssl and browsers
    # read it); anyExtendedKeyUsage allows everything.
    if purpose != "server" or eku is None or _SERVER_AUTH in eku or _ANY_EKU in eku:
        return None
    return (
        f"the issuer {subject_of(cert)} may not issue server certificates: its extended key "
        "usage lacks serverAuth"
    )


def _ee_key_usage_problem(
    cert: x509.Certificate, usage: x509.KeyUsage | None, purpose: Purpose
) -> str | None:
    if usage is None:
        return None
    if usage.key_cert_sign:
        return (
            f"the certificate {subject_of(cert)} is a leaf but its key usage allows "
            "signing certificates (keyCertSign)"
        )
    if purpose == "server" and not (
        usage.digital_signature or usage.key_encipherment or usage.key_agreement
    ):
        return (
            f"the key usage of {subject_of(cert)} ({_usages(usage)}) does not allow a TLS "
            "server key: it needs Digital Signature, Key Encipherment or Key Agreement"
        )
    return None


def _usages(usage: x509.KeyUsage) -> str:
    names = {
        "digital_signature": "Digital Signature",
        "content_commitment": "Non Repudiation",
        "key_encipherment": "Key Encipherment",
        "data_encipherment": "Data Encipherment",
        "key_agreement": "Key Agreement",
        "key_cert_sign": "Certificate Sign",
        "crl_sign": "CRL Sign",
    }
    return ", ".join(words for field, words in names.items() if getattr(usage, field)) or "none"


# The web PKI's algorithms (CA/Browser Forum Baseline Requirements 7.1.3), as cryptography's
# verifier holds them: the exact DER of each permitted AlgorithmIdentifier, which it compares
# byte for byte (so RSA-PSS must have MGF1 with the same hash and a salt as long as the hash).
# It checks the signature algorithm of each certificate an issuer signed, and the key
# algorithm of each issuer (a leaf's own key is not judged).
_WEB_PKI_SIGNATURES = frozenset(
    bytes.fromhex(value)
    for value in (
        "300d06092a864886f70d01010b0500",  # sha256WithRSAEncryption
        "300d06092a864886f70d01010c0500",  # sha384WithRSAEncryption
        "300d06092a864886f70d01010d0500",  # sha512WithRSAEncryption
        "304106092a864886f70d01010a3034a00f300d06096086480165030402010500a11c301a06092a86"
        "4886f70d010108300d06096086480165030402010500a203020120",  # RSA-PSS, SHA-256
        "304106092a864886f70d01010a3034a00f300d06096086480165030402020500a11c301a06092a86"
        "4886f70d010108300d06096086480165030402020500a203020130",  # RSA-PSS, SHA-384
        "304106092a864886f70d01010a3034a00f300d06096086480165030402030500a11c301a06092a86"
        "4886f70d010108300d06096086480165030402030500a203020140",  # RSA-PSS, SHA-512
        "300a06082a8648ce3d040302",  # ecdsa-with-SHA256
        "300a06082a8648ce3d040303",  # ecdsa-with-SHA384
        "300a06082a8648ce3d040304",  # ecdsa-with-SHA512
    )
)
_WEB_PKI_KEYS = frozenset(
    bytes.fromhex(value)
    for value in (
        "300d06092a864886f70d0101010500",  # RSA
        "301306072a8648ce3d020106082a8648ce3d030107",  # EC P-256
        "301006072a8648ce3d020106052b81040022",  # EC P-384
        "301006072a8648ce3d020106052b81040023",  # EC P-521
    )
)
# cryptography counts the bytes of the modulus as a DER INTEGER (bits // 8 + 1, sign byte
# included) and wants at least 2048 bits of them: moduli of 2040 bits and more pass.
_WEB_PKI_RSA_BITS = 2040


def _signature_algorithm_problem(cert: x509.Certificate) -> str | None:
    # Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    (outer,) = der_items(cert.public_bytes(serialization.Encoding.DER))
    algorithm = der_items(outer[2])[1][1]
    if algorithm in _WEB_PKI_SIGNATURES:
        return None
    name = signature_algorithm_name(cert)
    if name == "rsassaPss":
        return (
            f"{subject_of(cert)} is signed with RSA-PSS with parameters the web PKI rules do "
            "not allow (SHA-256, SHA-384 or SHA-512 for both the hash and MGF1, and a salt as "
            "long as the hash)"
        )
    return (
        f"{subject_of(cert)} is signed with {name}, an algorithm the web PKI rules do not "
        "allow (they allow RSA and ECDSA signatures with SHA-256, SHA-384 or SHA-512)"
    )


def _issuer_key_problem(issuer: x509.Certificate, child: x509.Certificate) -> str | None:
    # TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
    # validity, subject, subjectPublicKeyInfo { algorithm, subjectPublicKey }, ... }
    fields = der_items(der_items(issuer.tbs_certificate_bytes)[0][2])
    spki = fields[6 if fields[0][0] == 0xA0 else 5]
    algorithm = der_items(spki[2])[0][1]
    try:
        key = public_key_info(issuer)
    except UnsupportedAlgorithm:  # a key type cryptography cannot load is no web PKI key
        key = PublicKeyInfo(issuer.public_key_algorithm_oid.dotted_string, 0, None)
    if algorithm in _WEB_PKI_KEYS and not (key.type == "RSA" and key.size < _WEB_PKI_RSA_BITS):
        return None
    if key.curve:
        described = f"{key.type} {key.curve}"
    elif key.size and key.type not in ("Ed25519", "Ed448"):
        described = f"{key.type} of {key.size} bits"
    else:
        described = key.type
    return (
        f"the key of {subject_of(issuer)}, which issued {subject_of(child)}, is {described}, "
        "which the web PKI rules do not allow for a CA (they allow RSA of 2048 bits or more "
        "and EC P-256, P-384 or P-521)"
    )


def _extension(cert: x509.Certificate, kind: type[_T]) -> _T | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _explained(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    roots: list[x509.Certificate],
    moment: dt.datetime,
    purpose: Purpose,
    *,
    self_root: bool = False,
) -> Problem | None:
    try:
        return _explain(leaf, intermediates, roots, moment, purpose, self_root=self_root)
    except (ValueError, x509.DuplicateExtension) as exc:
        # An extension cryptography cannot parse (duplicated, malformed) is a refusal too,
        # also for a self-signed leaf, which no verifier has read.
        return Problem(
            "other",
            leaf,
            f"a certificate on the path of {subject_of(leaf)} has extensions that cannot "
            f"be read: {unreadable_extensions(exc)}",
        )


def _explain(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    roots: list[x509.Certificate],
    moment: dt.datetime,
    purpose: Purpose,
    *,
    self_root: bool = False,
) -> Problem | None:
    """The first certificate on the path (leaf upwards) that breaks a rule, and the rule.

    Issuers are found by name; among several with the name, the one whose key verifies the
    signature is followed (cross-signed and re-keyed CAs share names).
    """
    pool = [*intermediates, *roots]
    current = leaf
    for depth in range(len(pool) + 2):
        validity = check_validity(current, moment)
        if validity:
            return Problem("validity", current, f"certificate {subject_of(current)} {validity[0]}")
        if depth == 0:
            usage_problem = _ee_key_usage_problem(
                current, _extension(current, x509.KeyUsage), purpose
            )
            if usage_problem:
                return Problem("key-usage", current, usage_problem)
            eku_problem = _ee_eku_problem(
                current, _extension(current, x509.ExtendedKeyUsage), purpose
            )
            if eku_problem:
                return Problem("extended-key-usage", current, eku_problem)
        else:
            eku_problem = _ca_eku_problem(
                current, _extension(current, x509.ExtendedKeyUsage), purpose
            )
            if eku_problem:
                return Problem("extended-key-usage", current, eku_problem)
        if current in roots and not (self_root and depth == 0):
            return None  # trusted as given: its self-signature is not judged
        if current.subject == current.issuer:
            if self_root:
                problem = signature_problem(current, current)
                return Problem("signature", current, problem) if problem else None
            return Problem(
                "untrusted-root",
                current,
                f"the chain ends at the self-signed {subject_of(current)}, which is not "
                "among the trusted roots",
            )
        named = [c for c in pool if c.subject == current.issuer and c != current]
        if not named:
            return Problem(
                "no-issuer",
                current,
                f"no certificate for the issuer {current.issuer.rfc4514_string()} "
                f"of {subject_of(current)}",
            )
        if isinstance(current.signature_hash_algorithm, hashes.SHA1):
            return Problem(
                "sha1",
                current,
                f"{subject_of(current)} is signed with SHA-1, which clients no longer "
                "accept; ask the CA for a SHA-256 certificate",
            )
        algorithm_problem = _signature_algorithm_problem(current)
        if algorithm_problem:
            return Problem("algorithm", current, algorithm_problem)
        verified = [c for c in named if _signature_verifies(current, c)]
        if not verified:
            return Problem(
                "signature",
                current,
                f"the signature on {subject_of(current)} does not verify with the key of "
                f"{subject_of(named[0])}",
            )
        issuer = verified[0]
        constraints = _extension(issuer, x509.BasicConstraints)
        if constraints is None or not constraints.ca:
            state = "CA:FALSE" if constraints is not None else "no basic constraints"
            return Problem(
                "not-a-ca",
                issuer,
                f"{subject_of(issuer)} issued {subject_of(current)} but is not a CA "
                f"({state}; an issuer needs CA:TRUE)",
            )
        if constraints.path_length is not None and depth > constraints.path_length:
            # ``depth`` CA certificates stand between this issuer and the leaf.
            return Problem(
                "path-length",
                issuer,
                f"{subject_of(issuer)} allows at most {constraints.path_length} CA "
                f"certificate(s) between it and the leaf (pathlen:{constraints.path_length}), "
                f"and this chain has {depth} ({subject_of(current)} issued by it)",
            )
        usage = _extension(issuer, x509.KeyUsage)
        if usage is not None and not usage.key_cert_sign:
            return Problem(
                "ca-key-usage",
                issuer,
                f"{subject_of(issuer)} issued {subject_of(current)} but its key usage "
                f"({_usages(usage)}) does not allow signing certificates (keyCertSign)",
            )
        key_problem = _issuer_key_problem(issuer, current)
        if key_problem:
            return Problem("algorithm", issuer, key_problem)
        current = issuer
    return Problem("no-issuer", leaf, "the chain loops without reaching a root")


__all__ = [
    "ChainError",
    "Problem",
    "Purpose",
    "other_issuer",
    "signature_problem",
    "subject_of",
    "verify",
]
