"""Details records compared field by field with what the openssl command line prints."""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from certfixtures import Pki, openssl, openssl_dates, parse_openssl_text, shared_pki
from cryptography import x509
from typer.testing import CliRunner

from provision.cli.cert import app
from provision.crypto import chains
from provision.crypto import details as inspect
from provision.errors import CryptoError

ALL_KEYS = [
    "version", "serial_number", "serial_number_decimal", "signature_algorithm",
    "signature_algorithm_oid", "issuer", "valid_from", "valid_to", "subject", "public_key",
    "subject_key_identifier", "authority_key_identifier", "key_usage", "extended_key_usage",
    "subject_alternative_names", "basic_constraints", "authority_information_access",
    "crl_distribution_points", "certificate_policies", "extensions", "thumbprint_algorithm",
    "thumbprints", "friendly_name",
]  # fmt: skip
V1_KEYS = ALL_KEYS[:10]
EXTENSION_KEYS = ALL_KEYS[10:20]
PROPERTY_KEYS = ["thumbprint_algorithm", "thumbprints", "friendly_name"]

# Mounted the way the lead mounts it: `provision cert ...`.
root_app = typer.Typer()
root_app.add_typer(app, name="cert")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return shared_pki(tmp_path_factory)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _show_json(path: Path, view: str = "all") -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        root_app, ["cert", "show", str(path), "--format", "json", "--view", view]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert list(document) == ["certificates"]
    return list(document["certificates"])


def _openssl_name(path: Path, which: str, nameopt: str) -> str:
    out = openssl("x509", "-in", path, "-noout", f"-{which}", "-nameopt", nameopt).decode()
    return out.strip().split("=", 1)[1] if nameopt == "RFC2253" else out.strip()[len(which) + 1 :]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _san(item: str) -> str:
    # openssl prints IPv6 uncompressed and uppercase; we print RFC 5952.
    if item.startswith("IP Address:"):
        return f"IP Address:{ipaddress.ip_address(item.removeprefix('IP Address:'))}"
    return item


# The extensions that say where to look a certificate up, and how openssl -text names them.
PUBLISHED = {
    "authority_information_access": "Authority Information Access",
    "crl_distribution_points": "X509v3 CRL Distribution Points",
    "certificate_policies": "X509v3 Certificate Policies",
}
LABELS = {
    "authority_information_access": "Authority info",
    "crl_distribution_points": "CRL distribution",
    "certificate_policies": "Certificate policies",
}

CERTIFICATES = ["leaf", "ec", "ed", "pss", "inter", "root", "ip_cn", "no_san", "odd_wildcards"]


@pytest.mark.parametrize("attribute", CERTIFICATES)
def test_every_field_matches_openssl(pki: Pki, attribute: str) -> None:
    path: Path = getattr(pki, attribute)
    (record,) = _show_json(path)
    assert list(record) == ALL_KEYS
    o = parse_openssl_text(path)
    cert = _cert(path)

    assert o["version"] == "3 (0x2)" and record["version"] == "V3"
    if "serial_hex" in o:
        assert record["serial_number"] == o["serial_hex"]
    else:
        assert record["serial_number_decimal"] == o["serial_decimal"]
    assert int(record["serial_number"].replace(":", ""), 16) == int(record["serial_number_decimal"])
    assert record["signature_algorithm"] == o["signature_algorithm"]
    assert record["signature_algorithm_oid"] == cert.signature_algorithm_oid.dotted_string

    for field, which in (("issuer", "issuer"), ("subject", "subject")):
        # -text prints "C = US"; our form is oneline without the spaces around "=".
        assert record[field]["openssl"] == str(o[field]).replace(" = ", "=")
        assert record[field]["openssl"] == _openssl_name(path, which, "oneline,-space_eq")
        # Windows' order is openssl's dn_rev: the same RDNs, least significant first.
        assert record[field]["windows"] == _openssl_name(path, which, "oneline,-space_eq,dn_rev")
        assert record[field]["rfc4514"] == _openssl_name(path, which, "RFC2253")

    assert record["valid_from"] == _iso(o["not_before"])  # type: ignore[arg-type]
    assert record["valid_to"] == _iso(o["not_after"])  # type: ignore[arg-type]

    kinds = {"rsaEncryption": "RSA", "id-ecPublicKey": "EC", "ED25519": "Ed25519"}
    public_key = record["public_key"]
    assert public_key["type"] == kinds[str(o["public_key_algorithm"])]
    # openssl prints no size for Ed25519 keys: they are 256 bits by definition.
    assert public_key["size"] == (o["public_key_bits"] or 256)
    assert public_key["curve"] == o["curve"]

    extensions: dict[str, tuple[bool, list[str]]] = o["extensions"]  # type: ignore[assignment]
    assert [(e["name"], e["critical"]) for e in record["extensions"]] == [
        (name, critical) for name, (critical, _) in extensions.items()
    ]
    assert [e["oid"] for e in record["extensions"]] == [
        e.oid.dotted_string for e in cert.extensions
    ]

    def value(name: str) -> str | None:
        found = extensions.get(name)
        return None if found is None else " ".join(found[1])

    assert record["subject_key_identifier"] == value("X509v3 Subject Key Identifier")
    aki = value("X509v3 Authority Key Identifier")
    assert record["authority_key_identifier"] == (aki and aki.removeprefix("keyid:"))
    for field, name in (
        ("key_usage", "X509v3 Key Usage"),
        ("extended_key_usage", "X509v3 Extended Key Usage"),
    ):
        text = value(name)
        assert record[field] == (None if text is None else text.split(", "))
    sans = value("X509v3 Subject Alternative Name")
    assert record["subject_alternative_names"] == (
        None if sans is None else [_san(s) for s in sans.split(", ")]
    )
    constraints = value("X509v3 Basic Constraints")
    if constraints is None:
        assert record["basic_constraints"] is None
    else:
        parts = dict(p.split(":") for p in constraints.split(", "))
        assert record["basic_constraints"] == {
            "ca": parts["CA"] == "TRUE",
            "path_length": int(parts["pathlen"]) if "pathlen" in parts else None,
        }

    for field, name in PUBLISHED.items():
        assert (record[field] is None) == (value(name) is None), field

    assert record["thumbprint_algorithm"] == "sha1"
    assert record["thumbprints"] == {"sha1": o["sha1"], "sha256": o["sha256"]}


def test_fixture_covers_what_it_claims(pki: Pki) -> None:
    # Guard against a fixture change silently weakening the comparison above.
    leaf = inspect.details(_cert(pki.leaf))
    assert leaf["public_key"] == {"type": "RSA", "size": 3072, "curve": None}
    assert leaf["serial_number"].startswith("c3:a1")  # sign byte dropped, as openssl
    assert "IP Address:2001:db8::1" in leaf["subject_alternative_names"]
    assert {e["critical"] for e in leaf["extensions"]} == {True, False}
    assert inspect.details(_cert(pki.ec))["public_key"]["curve"] == "P-256"
    assert inspect.details(_cert(pki.ed))["signature_algorithm"] == "ED25519"
    assert inspect.details(_cert(pki.pss))["signature_algorithm"] == "rsassaPss"
    assert inspect.details(_cert(pki.inter))["basic_constraints"] == {
        "ca": True,
        "path_length": 0,
    }


# --- where to look a certificate up: AIA, CRL distribution points, policies ---------------

PUBLISHED_EXTENSIONS = """\
[published]
subjectAltName = DNS:published.example.test
authorityInfoAccess = OCSP;URI:http://ocsp.example.test,caIssuers;URI:http://ca.example.test/issuing.crt,caIssuers;URI:ldap://ldap.example.test/cn=Issuing%20CA?cACertificate
crlDistributionPoints = crl_section,URI:http://crl2.example.test/b.crl
certificatePolicies = ia5org,2.23.140.1.2.2,@policy_section,anyPolicy
[crl_section]
fullname = URI:http://crl.example.test/issuing.crl,URI:ldap://ldap.example.test/cn=CRL
reasons = keyCompromise,CACompromise
CRLissuer = dirName:crl_issuer_section
[crl_issuer_section]
C = US
O = Example Trust
CN = CRL Signer
[policy_section]
policyIdentifier = 1.3.6.1.4.1.99999.1.2
CPS.1 = "http://cps.example.test/cps"
CPS.2 = "https://cps.example.test/other"
userNotice.1 = @notice_one
userNotice.2 = @notice_two
[notice_one]
explicitText = "Use only for voice, Inc."
organization = "Example Trust"
noticeNumbers = 1,2,3
[notice_two]
explicitText = UTF8:"Nur für Sprache"
"""


@pytest.fixture(scope="module")
def published(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A leaf with every kind of AIA, CRL distribution point and policy entry, by openssl."""
    d = tmp_path_factory.mktemp("published")
    config = d / "published.cnf"
    config.write_text(PUBLISHED_EXTENSIONS)
    out = d / "published.pem"
    openssl("x509", "-req", "-in", pki.csr, "-CA", pki.root, "-CAkey", pki.root_key,
            "-days", "10", "-extfile", config, "-extensions", "published", "-out", out)  # fmt: skip
    return out


def test_published_extensions_decoded_with_their_values(published: Path) -> None:
    (record,) = _show_json(published, "extensions")
    assert record["authority_information_access"] == [
        {"method": "OCSP", "location": "URI:http://ocsp.example.test"},
        {"method": "CA Issuers", "location": "URI:http://ca.example.test/issuing.crt"},
        {"method": "CA Issuers",
         "location": "URI:ldap://ldap.example.test/cn=Issuing%20CA?cACertificate"},
    ]  # fmt: skip
    assert record["crl_distribution_points"] == [
        {
            "full_name": ["URI:http://crl.example.test/issuing.crl",
                          "URI:ldap://ldap.example.test/cn=CRL"],
            "relative_name": None,
            "reasons": ["Key Compromise", "CA Compromise"],
            "crl_issuer": ["DirName:C=US, O=Example Trust, CN=CRL Signer"],
        },
        {"full_name": ["URI:http://crl2.example.test/b.crl"], "relative_name": None,
         "reasons": None, "crl_issuer": None},
    ]  # fmt: skip
    assert record["certificate_policies"] == [
        {"oid": "2.23.140.1.2.2", "name": None, "cps": [], "user_notices": []},
        {
            "oid": "1.3.6.1.4.1.99999.1.2",
            "name": None,
            "cps": ["http://cps.example.test/cps", "https://cps.example.test/other"],
            "user_notices": [
                {"organization": "Example Trust", "numbers": [1, 2, 3],
                 "explicit_text": "Use only for voice, Inc."},
                {"organization": None, "numbers": [], "explicit_text": "Nur für Sprache"},
            ],
        },
        {"oid": "2.5.29.32.0", "name": "X509v3 Any Policy", "cps": [], "user_notices": []},
    ]  # fmt: skip


def _text_field(text: str, label: str) -> list[str]:
    """The value lines of one field of ``cert show``'s text, stripped."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {label}:"))
    found = [lines[start].split(":", 1)[1].strip()]
    for line in lines[start + 1 :]:
        if not line.startswith(" " * 24):
            break
        found.append(line.strip())
    return found


def test_published_extensions_text_reads_as_openssl_prints_them(published: Path) -> None:
    result = CliRunner().invoke(root_app, ["cert", "show", str(published)])
    assert result.exit_code == 0, result.output
    extensions: dict[str, tuple[bool, list[str]]] = parse_openssl_text(published)["extensions"]  # type: ignore[assignment]
    for field, name in PUBLISHED.items():
        expected = []
        for line in extensions[name][1]:
            # openssl 3.0 forgets the line break after a distribution point's last name
            # ("URI:ldap://...        Reasons:"); its DirName is "C = US", ours "C=US".
            expected += [part.replace(" = ", "=") for part in re.split(r"\s{2,}", line)]
        assert _text_field(result.stdout, LABELS[field]) == expected, field


# --- views ------------------------------------------------------------------------------


def test_view_all_is_the_full_record(pki: Pki) -> None:
    assert list(inspect.details(_cert(pki.leaf), "all")) == ALL_KEYS


def test_view_v1(pki: Pki) -> None:
    (record,) = _show_json(pki.leaf, "v1")
    assert list(record) == V1_KEYS
    (full,) = _show_json(pki.leaf, "all")
    assert record == {k: full[k] for k in V1_KEYS}


def test_view_extensions(pki: Pki) -> None:
    (record,) = _show_json(pki.leaf, "extensions")
    assert list(record) == EXTENSION_KEYS
    assert "subject" not in record and "thumbprints" not in record
    assert len(record["extensions"]) == 6


def test_view_extensions_keeps_absent_extensions_as_null(pki: Pki) -> None:
    (record,) = _show_json(pki.no_san, "extensions")
    assert list(record) == EXTENSION_KEYS
    assert record["subject_alternative_names"] is None
    assert record["extended_key_usage"] is None


def test_view_critical(pki: Pki) -> None:
    (record,) = _show_json(pki.leaf, "critical")
    # Only basicConstraints and keyUsage are critical in the leaf.
    assert list(record) == ["key_usage", "basic_constraints", "extensions"]
    assert [e["name"] for e in record["extensions"]] == [
        "X509v3 Basic Constraints",
        "X509v3 Key Usage",
    ]
    assert all(e["critical"] for e in record["extensions"])
    (ec_record,) = _show_json(pki.ec, "critical")
    assert list(ec_record) == ["key_usage", "extended_key_usage", "basic_constraints",
                               "extensions"]  # fmt: skip
    assert ec_record["extended_key_usage"] == ["TLS Web Server Authentication"]


def test_view_critical_without_critical_extensions(pki: Pki) -> None:
    (record,) = _show_json(pki.no_san, "critical")
    # openssl req -x509 marks basicConstraints critical by default: check what is there.
    critical = [e for e in inspect.details(_cert(pki.no_san))["extensions"] if e["critical"]]
    assert record["extensions"] == critical
    no_extensions = openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "/dev/null", "-subj", "/CN=plain", "-days", "1",
        "-config", "/dev/null",
    )  # fmt: skip
    plain = x509.load_pem_x509_certificate(no_extensions)
    assert inspect.details(plain, "critical") == {"extensions": []}


def test_view_properties(pki: Pki) -> None:
    (record,) = _show_json(pki.leaf, "properties")
    assert list(record) == PROPERTY_KEYS
    assert len(record["thumbprints"]["sha1"]) == 40
    assert record["thumbprints"]["sha1"] == record["thumbprints"]["sha1"].upper()


def test_views_share_field_names_and_values(pki: Pki) -> None:
    full = inspect.details(_cert(pki.ec), "all")
    for view in inspect.VIEWS:
        record = inspect.details(_cert(pki.ec), view)
        keys = list(record)
        assert keys == [k for k in ALL_KEYS if k in record]  # same order, only drops
        for key in keys:
            if not (view == "critical" and key == "extensions"):
                assert record[key] == full[key]


def test_unknown_view_is_refused(pki: Pki) -> None:
    with pytest.raises(ValueError, match="unknown view"):
        inspect.details(_cert(pki.leaf), "nope")  # type: ignore[arg-type]


# --- text ---------------------------------------------------------------------------------


def test_render_text_is_aligned_with_headings(pki: Pki) -> None:
    certs = [_cert(pki.leaf), _cert(pki.inter), _cert(pki.root)]
    text = inspect.render_text([inspect.details(c) for c in certs])
    blocks = text.rstrip("\n").split("\n\n")
    assert len(blocks) == 3
    assert blocks[0].splitlines()[0] == (
        'Certificate 1 of 3: C=US, ST=Oregon, L=Portland, O="Example, Inc.", CN=www.example.test'
    )
    assert blocks[2].splitlines()[0] == (
        "Certificate 3 of 3: C=US, O=Example Trust, CN=Example Root CA"
    )
    body = blocks[0].splitlines()[1:]
    columns = {len(line) - len(line[2:].split(":", 1)[1].lstrip()) for line in body if
               not line.startswith("   ")}  # fmt: skip
    assert len(columns) == 1  # every value starts in the same column
    assert "  Valid to:" in blocks[0] and "2001:db8::1" in blocks[0]
    assert "X509v3 Key Usage (2.5.29.15), critical" in blocks[0]


def test_render_text_titles_for_views_without_subject(pki: Pki) -> None:
    record = inspect.details(_cert(pki.leaf), "properties")
    assert inspect.render_text([record]).startswith("Certificate 1 of 1\n")
    titled = inspect.render_text([record], titles=["leaf"])
    assert titled.startswith("Certificate 1 of 1: leaf\n  Thumbprint algorithm: sha1\n")


# --- name and validity checks --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "covered"),
    [
        ("www.example.test", True),
        ("WWW.Example.TEST.", True),  # case and trailing dot do not matter
        ("a.example.test", True),  # *.example.test
        ("example.test", False),  # the wildcard needs a label
        ("a.b.example.test", False),  # ... exactly one
        (".example.test", False),
        ("127.0.0.1", True),
        ("2001:db8::1", True),
        ("2001:0DB8:0:0:0:0:0:1", True),  # same address, other spelling
        ("[2001:db8::1]", True),
        ("127.0.0.2", False),
        ("ops@example.test", False),
    ],
)
def test_check_names_leaf(pki: Pki, name: str, covered: bool) -> None:
    problems = inspect.check_names(_cert(pki.leaf), [name])
    assert (problems == []) is covered, problems


@pytest.mark.parametrize(
    ("name", "covered"),
    [
        ("a.test", False),  # *.test: wildcard over a single label is refused
        ("www.example.org", False),  # w*.example.org: partial wildcards are refused
        ("w.example.org", False),
        ("mixed.example.net", True),  # SAN "Mixed.Example.NET"
    ],
)
def test_check_names_wildcard_rules(pki: Pki, name: str, covered: bool) -> None:
    assert (inspect.check_names(_cert(pki.odd_wildcards), [name]) == []) is covered


def test_ip_common_name_is_never_used(pki: Pki) -> None:
    cert = _cert(pki.ip_cn)
    assert cert.subject.rfc4514_string() == "CN=192.0.2.10"
    problems = inspect.check_names(cert, ["192.0.2.10"])
    assert problems == ["192.0.2.10: not covered (no IP Address SAN 192.0.2.10)"]


def test_dns_common_name_is_never_used(pki: Pki) -> None:
    problems = inspect.check_names(_cert(pki.no_san), ["nosan.example.test"])
    assert problems == ["nosan.example.test: not covered by the DNS SANs (none)"]


def test_check_names_reports_each_missing_name(pki: Pki) -> None:
    problems = inspect.check_names(_cert(pki.leaf), ["www.example.test", "x.other", "10.0.0.1"])
    assert problems == [
        "x.other: not covered by the DNS SANs (www.example.test, *.example.test)",
        "10.0.0.1: not covered (no IP Address SAN 10.0.0.1)",
    ]


def test_check_validity(pki: Pki) -> None:
    cert = _cert(pki.leaf)
    start, end = openssl_dates(pki.leaf)
    assert inspect.check_validity(cert, start) == []
    assert inspect.check_validity(cert, end) == []  # both ends are inclusive
    assert inspect.check_validity(cert, start + (end - start) / 2) == []
    before = start - timedelta(seconds=1)
    assert inspect.check_validity(cert, before) == [
        f"not valid before {_iso(start)} (checked at {_iso(before)})"
    ]
    after = (end + timedelta(days=1)).replace(tzinfo=UTC)  # aware works the same
    assert inspect.check_validity(cert, after) == [
        f"expired on {_iso(end)} (checked at {_iso(after)})"
    ]


def test_verify_chain(pki: Pki) -> None:
    """The details view's chain check is the one chain verifier (crypto.chains)."""
    leaf, inter, root = _cert(pki.leaf), _cert(pki.inter), _cert(pki.root)
    now = datetime.now(UTC)
    assert chains.verify(leaf, [inter], [root], now) == [leaf, inter, root]
    with pytest.raises(CryptoError, match="missing intermediate"):
        chains.verify(leaf, [], [root], now)
    with pytest.raises(CryptoError, match=r"^chain does not verify"):
        chains.verify(leaf, [inter], [_cert(pki.pss)], now)
    with pytest.raises(CryptoError, match="expired on"):
        chains.verify(leaf, [inter], [root], now + timedelta(days=3650))
