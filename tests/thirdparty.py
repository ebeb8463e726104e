"""A third-party CA made with the openssl command line, and helpers for the source tests.

Made by ``openssl`` (``req``, ``ca``, ``crl2pkcs7``, ``pkcs12``) rather than by ``provision``
so that what ``provision`` accepts or refuses is judged against an independent
implementation. The files are made once per test session (``shared_corp``):

- ``corp-root.pem`` (EC P-256, self-signed) -> ``corp-inter.pem`` (EC P-256, pathlen 0)
  -> one leaf per example host with the example playbook's names as SANs
  (FQDN, short name, IP address, localhost, 127.0.0.1) and serverAuth;
- every leaf as PEM, DER, a DER PKCS#7 (leaf, intermediate, root) and a PFX (key, leaf,
  intermediate, root; ``SUPPLIED_PFX_PASSWORD``);
- broken variants, all for ``cm-pub-01``: an expired leaf, a not-yet-valid leaf, one that
  expires in 10 days, one with clientAuth only, one missing the short name, one with an
  RSA-1024 key, one issued by an expired intermediate, an intermediate re-signed by an
  impostor root carrying the real root's name, and a chain without the intermediate;
- for the one chain verifier (``provision.crypto.chains``): a leaf issued by an
  intermediate marked ``CA:FALSE``, a leaf whose only key usage is ``cRLSign``, a copy of
  the good ``cm-pub-01`` leaf with one byte of its signature flipped, a leaf signed with
  SHA-1, a root whose own self-signature is SHA-1 issuing a SHA-256 leaf, and a leaf under a
  CA that the ``pathlen:0`` intermediate may not have.

Validity periods are set with ``openssl ca -startdate/-enddate``: the installed OpenSSL 3.0
has no ``x509 -not_before``, and ``-days`` cannot go negative.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

SUPPLIED_PFX_PASSWORD = "corp pfx pass"
PFX_PASSWORD = "output pfx pass"  # the playbooks' {env: PFX_PASSWORD}
ENV = {"PFX_PASSWORD": PFX_PASSWORD}

HOSTS = {
    "cm-pub-01": ("cm-pub-01.voice.example.com", "10.10.0.11"),
    "cm-sub-01": ("cm-sub-01.voice.example.com", "10.10.0.12"),
    "cm-sub-02": ("cm-sub-02.voice.example.com", "10.10.0.13"),
}
ROOT_SUBJECT = "/O=Example Corp/CN=Example Corp Root CA"
INTER_SUBJECT = "/O=Example Corp/CN=Example Corp Issuing CA"
ROOT_RFC4514 = "CN=Example Corp Root CA,O=Example Corp"
INTER_RFC4514 = "CN=Example Corp Issuing CA,O=Example Corp"

CA_EXT = [
    "basicConstraints=critical,CA:TRUE",
    "keyUsage=critical,keyCertSign,cRLSign",
    "subjectKeyIdentifier=hash",
]
INTER_EXT = [
    "basicConstraints=critical,CA:TRUE,pathlen:0",
    "keyUsage=critical,digitalSignature,keyCertSign,cRLSign",
    "subjectKeyIdentifier=hash",
    "authorityKeyIdentifier=keyid:always",
]


def openssl(
    *args: str | Path, input: bytes | None = None, env: dict[str, str] | None = None
) -> bytes:
    """Run openssl; fail the test with its stderr if it fails. ``env`` adds variables."""
    result = subprocess.run(
        ["openssl", *map(str, args)],
        input=input,
        capture_output=True,
        check=False,
        env={**os.environ, **env} if env else None,
    )
    if result.returncode != 0:
        raise AssertionError(f"openssl {args}: {result.stderr.decode(errors='replace')}")
    return result.stdout


def openssl_text(*args: str | Path, env: dict[str, str] | None = None) -> str:
    """Run openssl (which must succeed); its stdout and stderr (where `-info` writes)."""
    result = subprocess.run(
        ["openssl", *map(str, args)],
        capture_output=True,
        check=False,
        env={**os.environ, **env} if env else None,
    )
    text = (result.stdout + result.stderr).decode(errors="replace")
    if result.returncode != 0:
        raise AssertionError(f"openssl {args}: {text}")
    return text


def openssl_ok(*args: str | Path) -> tuple[bool, str]:
    """Run openssl and say whether it succeeded (for checks expected to fail)."""
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, check=False)
    return result.returncode == 0, (result.stdout + result.stderr).decode(errors="replace")


def host_sans(host: str) -> list[str]:
    fqdn, address = HOSTS[host]
    return [f"DNS:{fqdn}", f"DNS:{host}", f"IP:{address}", "DNS:localhost", "IP:127.0.0.1"]


def leaf_ext(sans: list[str], eku: str = "serverAuth") -> list[str]:
    return [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={eku}",
        f"subjectAltName={','.join(sans)}",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid",
    ]


def stamp(moment: dt.datetime) -> str:
    """The UTCTime form `openssl ca -startdate/-enddate` takes."""
    return moment.astimezone(dt.UTC).strftime("%y%m%d%H%M%SZ")


@dataclass
class Leaf:
    pem: Path
    key: Path
    der: Path
    p7b: Path | None = None  # DER PKCS#7: leaf, intermediate, root
    pfx: Path | None = None  # key, leaf, intermediate, root


@dataclass
class Corp:
    dir: Path
    root: Path
    root_key: Path
    root_der: Path
    inter: Path
    inter_key: Path
    chain: Path  # intermediate + root, PEM
    hosts: dict[str, Leaf] = field(default_factory=dict)
    expired: Leaf | None = None
    not_yet_valid: Leaf | None = None
    expiring_soon: Leaf | None = None  # valid, 10 days left
    client_only: Leaf | None = None
    missing_name: Leaf | None = None  # no DNS:cm-pub-01
    rsa1024: Leaf | None = None
    other_key: Path | None = None  # an EC key matching nothing
    expired_inter_leaf: Leaf | None = None
    expired_inter_chain: Path | None = None  # the expired intermediate + root
    impostor_chain: Path | None = None  # intermediate signed by an impostor root + real root
    root_only_chain: Path | None = None  # the root alone: the intermediate is missing
    not_ca_inter_leaf: Leaf | None = None  # issued by an intermediate marked CA:FALSE
    not_ca_inter_chain: Path | None = None  # that intermediate + root
    crl_sign_only: Leaf | None = None  # keyUsage cRLSign alone
    damaged_signature: Path | None = None  # the cm-pub-01 leaf, a signature byte flipped
    sha1_leaf: Leaf | None = None  # signed by the intermediate with SHA-1
    too_deep_leaf: Leaf | None = None  # under a CA the pathlen:0 intermediate may not have
    too_deep_chain: Path | None = None  # that CA + intermediate + root
    sha1_root: Path | None = None  # a root whose self-signature is SHA-1
    sha1_root_leaf: Leaf | None = None  # a SHA-256 leaf issued by that root

    def sign(
        self,
        csr: Path,
        out: Path,
        ext: list[str],
        *,
        days: int = 397,
        issuer: tuple[Path, Path] | None = None,
    ) -> Path:
        """Sign a CSR with the intermediate (or ``issuer``), as the corporate CA would."""
        cert, key = issuer or (self.inter, self.inter_key)
        start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        return _ca_sign(self.dir, csr, out, cert, key, ext, start, start + dt.timedelta(days=days))


def _ec_key(path: Path) -> Path:
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    return path


def _csr(key: Path, out: Path, subject: str) -> Path:
    openssl("req", "-new", "-key", key, "-out", out, "-subj", subject)
    return out


def _ca_config(d: Path) -> Path:
    db = d / "ca-db"
    if not db.exists():
        (db / "new").mkdir(parents=True)
        (db / "index.txt").write_text("")
        (db / "serial").write_text("1000\n")
    config = d / "ca.cnf"
    if not config.exists():
        config.write_text(
            "[ ca ]\ndefault_ca = d\n[ d ]\n"
            f"dir = {db}\ndatabase = $dir/index.txt\nnew_certs_dir = $dir/new\n"
            "serial = $dir/serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n"
            "email_in_dn = no\n[ any ]\ncommonName = supplied\norganizationName = optional\n"
        )
    return config


def _ca_sign(
    d: Path,
    csr: Path,
    out: Path,
    ca_cert: Path,
    ca_key: Path,
    ext: list[str],
    start: dt.datetime,
    end: dt.datetime,
    md: str = "sha256",
) -> Path:
    ext_file = out.with_suffix(".ext")
    ext_file.write_text("\n".join(ext) + "\n")
    openssl(
        "ca",
        "-batch",
        "-config",
        _ca_config(d),
        "-cert",
        ca_cert,
        "-keyfile",
        ca_key,
        "-in",
        csr,
        "-out",
        out,
        "-startdate",
        stamp(start),
        "-enddate",
        stamp(end),
        "-extfile",
        ext_file,
        "-notext",
        "-preserveDN",
        "-md",
        md,
    )
    return out


def _leaf(
    corp: Corp,
    name: str,
    subject: str,
    ext: list[str],
    *,
    start: dt.datetime,
    end: dt.datetime,
    key: Path | None = None,
    issuer: tuple[Path, Path] | None = None,
    md: str = "sha256",
) -> Leaf:
    d = corp.dir
    key = key or _ec_key(d / f"{name}.key")
    csr = _csr(key, d / f"{name}.csr", subject)
    cert, ca_key = issuer or (corp.inter, corp.inter_key)
    pem = _ca_sign(d, csr, d / f"{name}.pem", cert, ca_key, ext, start, end, md)
    der = d / f"{name}.der"
    openssl("x509", "-in", pem, "-outform", "DER", "-out", der)
    return Leaf(pem, key, der)


def _self_signed(
    d: Path,
    key: Path,
    out: Path,
    now: dt.datetime,
    subject: str = ROOT_SUBJECT,
    md: str = "sha256",
) -> Path:
    """A root named ROOT_SUBJECT, valid from a week ago (tests move the clock)."""
    csr = _csr(key, out.with_suffix(".csr"), subject)
    ext_file = out.with_suffix(".ext")
    ext_file.write_text("\n".join(CA_EXT) + "\n")
    openssl(
        "ca",
        "-batch",
        "-config",
        _ca_config(d),
        "-selfsign",
        "-keyfile",
        key,
        "-in",
        csr,
        "-out",
        out,
        "-startdate",
        stamp(now - dt.timedelta(days=7)),
        "-enddate",
        stamp(now + dt.timedelta(days=3650)),
        "-extfile",
        ext_file,
        "-notext",
        "-preserveDN",
        "-md",
        md,
    )
    return out


def make_corp(d: Path) -> Corp:
    now = dt.datetime.now(dt.UTC)
    valid_from, valid_to = now - dt.timedelta(days=1), now + dt.timedelta(days=397)
    root_key = _ec_key(d / "corp-root.key")
    root = _self_signed(d, root_key, d / "corp-root.pem", now)
    root_der = d / "corp-root.der"
    openssl("x509", "-in", root, "-outform", "DER", "-out", root_der)
    inter_key = _ec_key(d / "corp-inter.key")
    inter_csr = _csr(inter_key, d / "corp-inter.csr", INTER_SUBJECT)
    inter = _ca_sign(
        d,
        inter_csr,
        d / "corp-inter.pem",
        root,
        root_key,
        INTER_EXT,
        now - dt.timedelta(days=2),
        now + dt.timedelta(days=1825),
    )
    chain = d / "corp-ca-chain.pem"
    chain.write_bytes(inter.read_bytes() + root.read_bytes())
    corp = Corp(d, root, root_key, root_der, inter, inter_key, chain)

    for host, (fqdn, _) in HOSTS.items():
        leaf = _leaf(
            corp,
            host,
            f"/O=Example Voice Operations/CN={fqdn}",
            leaf_ext(host_sans(host)),
            start=valid_from,
            end=valid_to,
        )
        leaf.p7b = d / f"{host}.p7b"
        openssl(
            "crl2pkcs7",
            "-nocrl",
            "-certfile",
            leaf.pem,
            "-certfile",
            inter,
            "-certfile",
            root,
            "-outform",
            "DER",
            "-out",
            leaf.p7b,
        )
        leaf.pfx = d / f"{host}.pfx"
        openssl(
            "pkcs12",
            "-export",
            "-inkey",
            leaf.key,
            "-in",
            leaf.pem,
            "-certfile",
            chain,
            "-name",
            host,
            "-out",
            leaf.pfx,
            "-passout",
            f"pass:{SUPPLIED_PFX_PASSWORD}",
        )
        corp.hosts[host] = leaf

    pub = "cm-pub-01"
    subject = f"/O=Example Voice Operations/CN={HOSTS[pub][0]}"
    good = leaf_ext(host_sans(pub))
    corp.expired = _leaf(
        corp,
        "expired",
        subject,
        good,
        start=now - dt.timedelta(days=400),
        end=now - dt.timedelta(days=3),
    )
    corp.not_yet_valid = _leaf(
        corp,
        "not-yet-valid",
        subject,
        good,
        start=now + dt.timedelta(days=3),
        end=now + dt.timedelta(days=400),
    )
    corp.expiring_soon = _leaf(
        corp,
        "expiring-soon",
        subject,
        good,
        start=valid_from,
        end=now + dt.timedelta(days=10, hours=12),
    )
    corp.client_only = _leaf(
        corp,
        "client-only",
        subject,
        leaf_ext(host_sans(pub), eku="clientAuth"),
        start=valid_from,
        end=valid_to,
    )
    corp.missing_name = _leaf(
        corp,
        "missing-name",
        subject,
        leaf_ext([s for s in host_sans(pub) if s != f"DNS:{pub}"]),
        start=valid_from,
        end=valid_to,
    )
    rsa_key = d / "rsa1024.key"
    openssl("genrsa", "-out", rsa_key, "1024")
    corp.rsa1024 = _leaf(
        corp, "rsa1024", subject, good, start=valid_from, end=valid_to, key=rsa_key
    )
    corp.other_key = _ec_key(d / "other.key")

    # An intermediate (same name and key as the real one) whose validity ended.
    expired_inter = _ca_sign(
        d,
        inter_csr,
        d / "expired-inter.pem",
        root,
        root_key,
        INTER_EXT,
        now - dt.timedelta(days=800),
        now - dt.timedelta(days=5),
    )
    corp.expired_inter_chain = d / "expired-inter-chain.pem"
    corp.expired_inter_chain.write_bytes(expired_inter.read_bytes() + root.read_bytes())
    corp.expired_inter_leaf = _leaf(
        corp,
        "expired-inter-leaf",
        subject,
        good,
        start=valid_from,
        end=valid_to,
        issuer=(expired_inter, inter_key),
    )

    # An impostor root with the real root's name signs the intermediate: the leaf still
    # verifies with that intermediate, the intermediate does not verify with the real root.
    impostor_key = _ec_key(d / "impostor-root.key")
    impostor = _self_signed(d, impostor_key, d / "impostor-root.pem", now)
    forged_inter = _ca_sign(
        d,
        inter_csr,
        d / "forged-inter.pem",
        impostor,
        impostor_key,
        INTER_EXT,
        now - dt.timedelta(days=2),
        now + dt.timedelta(days=1825),
    )
    corp.impostor_chain = d / "impostor-chain.pem"
    corp.impostor_chain.write_bytes(forged_inter.read_bytes() + root.read_bytes())
    corp.root_only_chain = d / "root-only-chain.pem"
    corp.root_only_chain.write_bytes(root.read_bytes())

    # The intermediate's name and key, re-signed by the root as an end entity (CA:FALSE):
    # every signature verifies, but it may not issue certificates.
    not_ca_inter = _ca_sign(
        d,
        inter_csr,
        d / "not-ca-inter.pem",
        root,
        root_key,
        [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyCertSign",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid:always",
        ],
        now - dt.timedelta(days=2),
        now + dt.timedelta(days=1825),
    )
    corp.not_ca_inter_chain = d / "not-ca-inter-chain.pem"
    corp.not_ca_inter_chain.write_bytes(not_ca_inter.read_bytes() + root.read_bytes())
    corp.not_ca_inter_leaf = _leaf(
        corp,
        "not-ca-inter-leaf",
        subject,
        good,
        start=valid_from,
        end=valid_to,
        issuer=(not_ca_inter, inter_key),
    )
    corp.crl_sign_only = _leaf(
        corp,
        "crl-sign-only",
        subject,
        [e if not e.startswith("keyUsage=") else "keyUsage=critical,cRLSign" for e in good],
        start=valid_from,
        end=valid_to,
    )
    # A CA below the intermediate, whose pathlen:0 allows none: the leaf under it is refused.
    sub_key = _ec_key(d / "sub-inter.key")
    sub_inter = _ca_sign(
        d,
        _csr(sub_key, d / "sub-inter.csr", "/O=Example Corp/CN=Example Corp Sub CA"),
        d / "sub-inter.pem",
        inter,
        inter_key,
        INTER_EXT,
        now - dt.timedelta(days=1),
        now + dt.timedelta(days=1000),
    )
    corp.too_deep_chain = d / "too-deep-chain.pem"
    corp.too_deep_chain.write_bytes(sub_inter.read_bytes() + chain.read_bytes())
    corp.too_deep_leaf = _leaf(
        corp,
        "too-deep-leaf",
        subject,
        good,
        start=valid_from,
        end=valid_to,
        issuer=(sub_inter, sub_key),
    )
    corp.sha1_leaf = _leaf(
        corp, "sha1-leaf", subject, good, start=valid_from, end=valid_to, md="sha1"
    )
    # A legacy root that signed itself with SHA-1 (trusted for being a root: its own
    # signature is not judged), issuing a SHA-256 leaf directly.
    sha1_root_key = _ec_key(d / "sha1-root.key")
    corp.sha1_root = _self_signed(
        d,
        sha1_root_key,
        d / "sha1-root.pem",
        now,
        "/O=Example Corp/CN=Example Corp Legacy Root",
        "sha1",
    )
    corp.sha1_root_leaf = _leaf(
        corp,
        "sha1-root-leaf",
        subject,
        good,
        start=valid_from,
        end=valid_to,
        issuer=(corp.sha1_root, sha1_root_key),
    )
    corp.damaged_signature = damage_signature(corp.hosts[pub].pem, d / "damaged-signature.pem")
    return corp


def damage_signature(source: Path, out: Path) -> Path:
    """A copy of a PEM certificate with the last byte of its DER flipped: the last byte of
    the signature, so the file still parses (openssl and cryptography read it) and only the
    signature no longer verifies."""
    der = bytearray(openssl("x509", "-in", source, "-outform", "DER"))
    der[-1] ^= 0x01
    out.write_bytes(openssl("x509", "-inform", "DER", "-outform", "PEM", input=bytes(der)))
    return out


_shared: dict[str, Corp] = {}


def shared_corp(tmp_path_factory: pytest.TempPathFactory) -> Corp:
    """One set of files per test session, whichever module asks first."""
    if "corp" not in _shared:
        _shared["corp"] = make_corp(tmp_path_factory.mktemp("corp"))
    return _shared["corp"]


# --- the temporary project ------------------------------------------------------------------

SELF_SIGNED = "playbooks/callmanager-https.yml"


def back_to_self_signed(project: Path) -> str:
    """The self-signed example, taking its folders back from the CA example that took them
    over (a folder has one owner: plan/state.py)."""
    back = project / "playbooks" / "back-to-self-signed.yml"
    text = (project / SELF_SIGNED).read_text()
    hosts = "hosts: callmanager\n"
    back.write_text(text.replace(hosts, hosts + "takes_over: [CallManager HTTPS (internal CA)]\n"))
    return str(back.relative_to(project))


CA_PLAYBOOK = "playbooks/callmanager-https-ca.yml"
INVENTORY = "inventory/example.yml"


def fresh(project: Path) -> Path:
    """The project without a CA folder someone's earlier apply left in the source tree
    (the `project` fixture copies playbooks/ whole, and playbooks/pki/ is git-ignored)."""
    shutil.rmtree(project / "playbooks" / "pki", ignore_errors=True)
    return project


def certs_dir(project: Path, host: str = "cm-pub-01") -> Path:
    return project / ".provision" / "fleet" / host / "certificates"


def supply(project: Path, source: Path, name: str) -> Path:
    """Copy a file into project/playbooks/files/ (where the playbooks' `files/...` point)."""
    target = project / "playbooks" / "files" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def example(project: Path, name: str = "callmanager-https-ca.yml") -> dict[str, Any]:
    data = yaml.safe_load((project / "playbooks" / name).read_text())
    assert isinstance(data, dict)
    return data


def write_playbook(project: Path, name: str, data: dict[str, Any]) -> str:
    """Write a playbook into project/playbooks/; returns its path relative to the project."""
    (project / "playbooks" / name).write_text(yaml.safe_dump(data, sort_keys=False))
    return f"playbooks/{name}"


def provided_playbook(
    project: Path,
    source: dict[str, Any],
    *,
    name: str = "provided.yml",
    outputs: list[dict[str, Any]] | None = None,
    sites: bool = True,
    **certificate: Any,
) -> str:
    """The CA example with its certificate supplied by a third party instead."""
    data = example(project)
    del data["authorities"]
    if not sites:
        del data["sites"]
    cert = data["certificates"][0]
    cert["source"] = {"type": "provided", **source}
    for unused in ("validity_days",):
        cert.pop(unused, None)
    if outputs is not None:
        cert["outputs"] = outputs
    cert.update(certificate)
    return write_playbook(project, name, data)


def plan_json(
    cli: Any, playbook: str, *args: str, env: dict[str, str] | None = None, expect: int = 0
) -> dict[str, Any]:
    result = cli("plan", playbook, "-i", INVENTORY, "--format", "json", *args, env=env or ENV)
    assert result.exit_code == expect, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    return document


def change_of(document: dict[str, Any], host: str, resource: str) -> dict[str, Any] | None:
    for change in document["hosts"][host]["changes"]:
        if change["resource"] == resource:
            assert isinstance(change, dict)
            return change
    return None


def assert_refused(result: Any, *fragments: str) -> str:
    """Exit 1, the problem named on one line, no traceback."""
    output = result.stdout + result.stderr
    assert result.exit_code == 1, output
    assert "Traceback" not in output
    for fragment in fragments:
        assert fragment in output, f"{fragment!r} not in {output!r}"
    return output


def damage_first_signature(path: Path) -> None:
    """Flip the last signature byte of the first certificate in a PEM file on a host (what a
    damaged or forged copy looks like): names, key identifiers and the key are unchanged."""
    certificates = x509.load_pem_x509_certificates(path.read_bytes())
    der = bytearray(certificates[0].public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    damaged = x509.load_der_x509_certificate(bytes(der))
    path.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [damaged, *certificates[1:]])
    )


# --- reading what was written ---------------------------------------------------------------


def fingerprint(path: Path, inform: str = "PEM") -> str:
    out = openssl("x509", "-in", path, "-inform", inform, "-noout", "-fingerprint", "-sha256")
    return out.decode().strip().split("=", 1)[1]


def pem_certificates(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def subjects(text: str) -> list[str]:
    """The `subject=` lines of openssl's -print_certs output, in order."""
    return [
        line.split("=", 1)[1].strip() for line in text.splitlines() if line.startswith("subject=")
    ]


def public_key_of(key_file: Path) -> bytes:
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sha256(certificate: x509.Certificate) -> bytes:
    return certificate.fingerprint(hashes.SHA256())
