"""A fleet for the report tests and bench/report.py, generated fast: its certificates are
signed here, directly with ``cryptography`` (one ECDSA key for the whole fleet, one signature
per host), instead of by an apply, so 2,000 hosts take seconds rather than minutes.

The hosts are spread over every state the report colours: most certificates fine, some in
the renewal window, some expired, some missing a name of the playbook, some missing
altogether. Everything is a function of the host's index: the same fleet every time.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# The clock every generated date counts from (and the tests' --now).
NOW = dt.datetime(2027, 1, 4, 12, 0, 0, tzinfo=dt.UTC)
NOW_TEXT = "2027-01-04T12:00:00Z"
HOSTILE = "<script>alert(1)</script>"


def host_names(count: int, hostile: bool = False) -> list[str]:
    names = [f"web-{i:05d}" for i in range(count)]
    if hostile:
        names[-1] = HOSTILE  # a host name is input: the report must show it as text
    return names


def fqdn(index: int) -> str:
    return f"web-{index:05d}.example.com"


def state_of(index: int, count: int) -> str:
    """The state generated for a host, spread over the fleet."""
    if count <= 3:
        return ("renew", "names", "ok")[index]
    cycle = index % 20
    if cycle == 0:
        return "missing"
    if cycle == 1:
        return "expired"
    if cycle in (2, 3):
        return "renew"
    if cycle == 4:
        return "names"
    return "ok"


def generate(folder: Path, count: int, *, hostile: bool = False) -> tuple[Path, Path]:
    """Write the playbook, the inventory and each host's files; return (playbook, inventory)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = host_names(count, hostile)
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    hosts = {}
    for index, name in enumerate(names):
        base = folder / "fleet" / f"h{index:05d}"
        hosts[name] = {
            "fqdn": fqdn(index),
            "address": f"10.{index // 250}.{index % 250}.1",
            "certificates_dir": str(base / "certificates"),
        }
        state = state_of(index, count)
        if state == "missing":
            continue
        days = {"expired": -(5 + index % 40), "renew": 3 + index % 25, "names": 200}.get(
            state, 40 + (index * 37) % 700
        )
        sans: list[x509.GeneralName] = [x509.DNSName(fqdn(index))]
        if state != "names":
            sans.append(x509.DNSName("localhost"))  # the playbook's second name
        sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fqdn(index))])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(index + 1)
            .not_valid_before(NOW - dt.timedelta(days=400))
            .not_valid_after(NOW + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        certificates = base / "certificates"
        certificates.mkdir(parents=True, exist_ok=True)
        (certificates / "site.pem").write_bytes(
            certificate.public_bytes(serialization.Encoding.PEM)
        )
        (certificates / "site.key").write_bytes(key_pem)
        (certificates / "site.key").chmod(0o600)
    inventory = folder / "inventory.yml"
    document = {"all": {"vars": {"connection": "local"}, "children": {"web": {"hosts": hosts}}}}
    inventory.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    playbook = folder / "site.yml"
    playbook.write_text(
        "name: Report fleet\n"
        "hosts: web\n"
        'certificates_dir: "{{ certificates_dir }}"\n'
        "certificates:\n"
        "  - name: site\n"
        "    source: self-signed\n"
        "    key: {type: ecdsa, curve: p256}\n"
        '    subject: {common_name: "{{ host.fqdn }}"}\n'
        '    names: ["{{ host.fqdn }}", localhost, 127.0.0.1]\n'
        "    validity_days: 825\n"
        "    renew_before_days: 30\n"
        "    outputs:\n"
        "      - {file: site.pem, format: pem, content: fullchain}\n"
        "      - {file: site.key, format: pem, content: key}\n",
        encoding="utf-8",
    )
    return playbook, inventory
