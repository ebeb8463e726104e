"""Certificates made with the openssl command line, once per test session.

Made by openssl rather than by our own code so that the tests compare ``provision`` with an
independent implementation. conftest.py belongs to the lead, so each test module declares a
session fixture calling ``shared_pki``; the files are made once and shared.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

PFX_PASSWORD = "s3cret pass"
KEY_PASSWORD = "key pass"


@dataclass(frozen=True)
class Pki:
    dir: Path
    root: Path  # RSA 2048 self-signed CA
    root_key: Path
    inter: Path  # EC P-256 CA signed by root with sha384WithRSA, pathlen 0
    inter_key: Path
    leaf: Path  # RSA 3072 signed by inter: DNS, wildcard, IPv4, IPv6, email, URI SANs
    leaf_key: Path  # PKCS#8 "PRIVATE KEY"
    leaf_der: Path
    fullchain: Path  # leaf + inter
    ec: Path  # EC P-256 leaf signed by inter, critical EKU
    ec_key: Path  # "EC PRIVATE KEY"
    ed: Path  # Ed25519 self-signed
    ed_key: Path
    pss: Path  # RSA-PSS signed, self-signed
    rsa_traditional_key: Path  # "RSA PRIVATE KEY"
    encrypted_key: Path  # "ENCRYPTED PRIVATE KEY", KEY_PASSWORD
    ip_cn: Path  # CN=192.0.2.10 but only a DNS SAN
    no_san: Path  # CN only
    odd_wildcards: Path  # SANs *.test and w*.example.org
    p7b_der: Path  # leaf, inter (in that order)
    p7b_pem: Path
    pfx: Path  # leaf key + leaf + inter, PFX_PASSWORD
    pfx_empty: Path  # same, empty password
    csr: Path
    csr_der: Path


def openssl(*args: str | Path, input: bytes | None = None) -> bytes:
    """Run openssl; fail the test with its stderr if it fails."""
    result = subprocess.run(
        ["openssl", *map(str, args)], input=input, capture_output=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"openssl {args}: {result.stderr.decode(errors='replace')}")
    return result.stdout


def _ext(directory: Path, name: str, lines: list[str]) -> Path:
    path = directory / f"{name}.ext"
    path.write_text("\n".join(lines) + "\n")
    return path


def make_pki(d: Path) -> Pki:
    p = {name: d / name for name in (
        "root.pem", "root.key", "inter.pem", "inter.key", "inter.csr", "leaf.pem", "leaf.key",
        "leaf.csr", "leaf.der", "fullchain.pem", "ec.pem", "ec.key", "ec.csr", "ed.pem",
        "ed.key", "pss.pem", "pss.key", "leaf-rsa.key", "leaf-enc.key", "ipcn.pem", "ipcn.key",
        "nosan.pem", "nosan.key", "odd.pem", "odd.key", "chain.p7b", "chain-pem.p7b",
        "leaf.pfx", "leaf-empty.pfx", "req.csr", "req.der",
    )}  # fmt: skip
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p["root.key"],
            "-out", p["root.pem"], "-days", "3650",
            "-subj", "/C=US/O=Example Trust/CN=Example Root CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-addext", "subjectKeyIdentifier=hash")  # fmt: skip

    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", p["inter.key"])  # fmt: skip
    openssl("req", "-new", "-key", p["inter.key"], "-out", p["inter.csr"],
            "-subj", "/C=US/O=Example Trust/OU=Issuing/CN=Example Issuing CA 1")  # fmt: skip
    inter_ext = _ext(d, "inter", [
        "basicConstraints=critical,CA:TRUE,pathlen:0",
        "keyUsage=critical,digitalSignature,keyCertSign,cRLSign",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid:always",
    ])  # fmt: skip
    openssl("x509", "-req", "-in", p["inter.csr"], "-CA", p["root.pem"], "-CAkey", p["root.key"],
            "-set_serial", "0x1000", "-days", "1825", "-sha384", "-extfile", inter_ext,
            "-out", p["inter.pem"])  # fmt: skip

    openssl("req", "-new", "-newkey", "rsa:3072", "-nodes", "-keyout", p["leaf.key"],
            "-out", p["leaf.csr"],
            "-subj", "/C=US/ST=Oregon/L=Portland/O=Example, Inc./CN=www.example.test")  # fmt: skip
    leaf_ext = _ext(d, "leaf", [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth,clientAuth",
        "subjectAltName=DNS:www.example.test,DNS:*.example.test,IP:127.0.0.1,"
        "IP:2001:db8::1,email:ops@example.test,URI:https://example.test/",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid",
    ])  # fmt: skip
    # A 19-byte serial whose top bit is set: DER needs a sign byte that openssl does not print.
    openssl("x509", "-req", "-in", p["leaf.csr"], "-CA", p["inter.pem"], "-CAkey", p["inter.key"],
            "-set_serial", "0x00c3a1b2c3d4e5f60718293a4b5c6d7e8f901234", "-days", "397",
            "-extfile", leaf_ext, "-out", p["leaf.pem"])  # fmt: skip
    openssl("x509", "-in", p["leaf.pem"], "-outform", "DER", "-out", p["leaf.der"])
    p["fullchain.pem"].write_bytes(p["leaf.pem"].read_bytes() + p["inter.pem"].read_bytes())

    # ecparam writes the traditional "EC PRIVATE KEY" form, as older tools do.
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", p["ec.key"])
    openssl("req", "-new", "-key", p["ec.key"], "-out", p["ec.csr"], "-subj", "/CN=ec.example.test")
    ec_ext = _ext(d, "ec", [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyAgreement",
        "extendedKeyUsage=critical,serverAuth",
        "subjectAltName=DNS:ec.example.test,IP:192.0.2.7",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid",
    ])  # fmt: skip
    openssl("x509", "-req", "-in", p["ec.csr"], "-CA", p["inter.pem"], "-CAkey", p["inter.key"],
            "-set_serial", "7", "-days", "90", "-extfile", ec_ext, "-out", p["ec.pem"])  # fmt: skip

    openssl("req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", p["ed.key"],
            "-out", p["ed.pem"], "-days", "30", "-subj", "/CN=ed25519.example.test",
            "-addext", "subjectAltName=DNS:ed25519.example.test")  # fmt: skip
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p["pss.key"],
            "-out", p["pss.pem"], "-days", "30", "-subj", "/CN=pss.example.test",
            "-sigopt", "rsa_padding_mode:pss", "-sha256")  # fmt: skip
    openssl("rsa", "-in", p["leaf.key"], "-out", p["leaf-rsa.key"], "-traditional")
    openssl("pkcs8", "-topk8", "-in", p["leaf.key"], "-out", p["leaf-enc.key"],
            "-passout", f"pass:{KEY_PASSWORD}")  # fmt: skip

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p["ipcn.key"],
            "-out", p["ipcn.pem"], "-days", "30", "-subj", "/CN=192.0.2.10",
            "-addext", "subjectAltName=DNS:host.example.test")  # fmt: skip
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p["nosan.key"],
            "-out", p["nosan.pem"], "-days", "30", "-subj", "/CN=nosan.example.test")  # fmt: skip
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p["odd.key"],
            "-out", p["odd.pem"], "-days", "30", "-subj", "/CN=odd",
            "-addext",
            "subjectAltName=DNS:*.test,DNS:w*.example.org,DNS:Mixed.Example.NET")  # fmt: skip

    openssl("crl2pkcs7", "-nocrl", "-certfile", p["leaf.pem"], "-certfile", p["inter.pem"],
            "-outform", "DER", "-out", p["chain.p7b"])  # fmt: skip
    openssl("crl2pkcs7", "-nocrl", "-certfile", p["leaf.pem"], "-certfile", p["inter.pem"],
            "-out", p["chain-pem.p7b"])  # fmt: skip
    openssl("pkcs12", "-export", "-inkey", p["leaf.key"], "-in", p["leaf.pem"],
            "-certfile", p["inter.pem"], "-name", "www", "-out", p["leaf.pfx"],
            "-passout", f"pass:{PFX_PASSWORD}")  # fmt: skip
    openssl("pkcs12", "-export", "-inkey", p["leaf.key"], "-in", p["leaf.pem"],
            "-certfile", p["inter.pem"], "-out", p["leaf-empty.pfx"],
            "-passout", "pass:")  # fmt: skip
    openssl("req", "-new", "-key", p["leaf.key"], "-out", p["req.csr"], "-subj", "/CN=req.test")
    openssl("req", "-in", p["req.csr"], "-outform", "DER", "-out", p["req.der"])

    return Pki(
        dir=d, root=p["root.pem"], root_key=p["root.key"], inter=p["inter.pem"],
        inter_key=p["inter.key"], leaf=p["leaf.pem"], leaf_key=p["leaf.key"],
        leaf_der=p["leaf.der"], fullchain=p["fullchain.pem"], ec=p["ec.pem"], ec_key=p["ec.key"],
        ed=p["ed.pem"], ed_key=p["ed.key"], pss=p["pss.pem"],
        rsa_traditional_key=p["leaf-rsa.key"], encrypted_key=p["leaf-enc.key"],
        ip_cn=p["ipcn.pem"], no_san=p["nosan.pem"], odd_wildcards=p["odd.pem"],
        p7b_der=p["chain.p7b"], p7b_pem=p["chain-pem.p7b"], pfx=p["leaf.pfx"],
        pfx_empty=p["leaf-empty.pfx"], csr=p["req.csr"], csr_der=p["req.der"],
    )  # fmt: skip


_shared: dict[str, Pki] = {}


def shared_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One set of files per test session, whichever module asks first."""
    if "pki" not in _shared:
        _shared["pki"] = make_pki(tmp_path_factory.mktemp("pki"))
    return _shared["pki"]


# --- reading openssl's text output ----------------------------------------------------


def openssl_dates(cert: Path) -> tuple[datetime, datetime]:
    """(notBefore, notAfter) as openssl prints them, naive UTC."""
    out = openssl("x509", "-in", cert, "-noout", "-startdate", "-enddate").decode()
    found = dict(line.split("=", 1) for line in out.splitlines())
    return _openssl_time(found["notBefore"]), _openssl_time(found["notAfter"])


def _openssl_time(text: str) -> datetime:
    return datetime.strptime(text.strip(), "%b %d %H:%M:%S %Y GMT")


def parse_openssl_text(cert: Path) -> dict[str, object]:
    """The fields of ``openssl x509 -noout -text -fingerprint`` we compare against."""
    text = openssl("x509", "-in", cert, "-noout", "-text", "-fingerprint", "-sha1").decode()
    sha256 = openssl("x509", "-in", cert, "-noout", "-fingerprint", "-sha256").decode()
    lines = text.splitlines()
    fields: dict[str, object] = {}

    def after(prefix: str) -> str:
        for line in lines:
            if line.strip().startswith(prefix):
                return line.strip()[len(prefix) :].strip()
        raise KeyError(prefix)

    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("Serial Number:"):
            rest = stripped[len("Serial Number:") :].strip()
            if rest:  # "4096 (0x1000)": short serials are printed in decimal
                fields["serial_decimal"] = rest.split()[0]
            else:
                fields["serial_hex"] = lines[index + 1].strip()
            break
    fields["version"] = after("Version:")
    fields["signature_algorithm"] = after("Signature Algorithm:")
    fields["issuer"] = after("Issuer:")
    fields["subject"] = after("Subject:")
    fields["not_before"] = _openssl_time(after("Not Before:"))
    fields["not_after"] = _openssl_time(after("Not After :"))
    fields["public_key_algorithm"] = after("Public Key Algorithm:")
    bits = re.search(r"Public-Key: \((\d+) bit\)", text)
    fields["public_key_bits"] = int(bits.group(1)) if bits else None
    curve = re.search(r"NIST CURVE: (\S+)", text)
    fields["curve"] = curve.group(1) if curve else None

    extensions: dict[str, tuple[bool, list[str]]] = {}
    in_extensions = False
    current: str | None = None
    for line in lines:
        if line.strip() == "X509v3 extensions:":
            in_extensions = True
            continue
        if not in_extensions:
            continue
        if not line.startswith(" " * 12):  # back at "Signature Algorithm" level: done
            break
        if not line.startswith(" " * 16):
            header = re.match(r"^ {12}(\S.*?):( critical)?\s*$", line)
            assert header, line
            current = header.group(1)
            extensions[current] = (bool(header.group(2)), [])
        else:
            assert current is not None
            extensions[current][1].append(line.strip())
    fields["extensions"] = extensions
    fields["sha1"] = after("sha1 Fingerprint=").replace(":", "")
    fields["sha256"] = sha256.strip().split("=", 1)[1].replace(":", "")
    return fields
