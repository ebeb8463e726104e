"""Trust stores (issue 18, item 1) with the real tools, never the system's own stores:
`update-ca-certificates` with every folder option pointed at temporary folders, `certutil` on
a temporary NSS database, the Java truststore read back by `openssl pkcs12`; curl trusting
only the resulting Debian bundle reaches a real nginx serving a leaf of the internal CA.
Roots someone else put in a store are never touched; a root the playbook drops is removed;
a hostile trust record is refused."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from ports import free_port
from thirdparty import ENV, INVENTORY, certs_dir, example, fresh, plan_json, write_playbook
from trustkit import Served, curl, nginx

from provision.crypto import build, encode, keys
from provision.crypto.build import SubjectFields

pytestmark = pytest.mark.usefixtures("openssl")

HOST = "cm-pub-01"


def make_root(path: Path, name: str) -> x509.Certificate:
    key = keys.generate("ecdsa", None, "p256")
    root = build.authority(
        SubjectFields(common_name=name), key, validity_days=30, now=dt.datetime.now(dt.UTC)
    )
    path.write_bytes(encode.certificates_pem([root]))
    return root


def fp(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex().upper()


class Stores:
    """The host's stores, under one temporary folder."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.certs = base / "certs"  # Debian's /usr/share/ca-certificates (empty here)
        self.local = base / "local"  # /usr/local/share/ca-certificates
        self.etc = base / "etc"  # /etc/ssl/certs: ca-certificates.crt
        self.hooks = base / "hooks"
        self.conf = base / "ca-certificates.conf"
        self.nssdb = base / "nssdb"
        self.java = base / "truststore.p12"
        for folder in (self.certs, self.local, self.etc, self.hooks, self.nssdb):
            folder.mkdir(parents=True, exist_ok=True)
        self.conf.write_text("")

    @property
    def update_command(self) -> str:
        tool = require_tool("update-ca-certificates")
        return (
            f"{tool} --certsconf {self.conf} --certsdir {self.certs} "
            f"--localcertsdir {self.local} --etccertsdir {self.etc} --hooksdir {self.hooks}"
        )

    def debian_bundle(self) -> set[str]:
        bundle = (self.etc / "ca-certificates.crt").read_bytes()
        return {fp(c) for c in x509.load_pem_x509_certificates(bundle)}

    def nss(self) -> dict[str, str]:
        """Nickname -> trust flags, as `certutil -L` lists them."""
        listed = subprocess.run(
            [require_tool("certutil"), "-L", "-d", f"sql:{self.nssdb}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        found = {}
        for line in listed.splitlines()[4:]:
            if line.strip():
                nick, flags = line.rsplit(None, 1)
                found[nick.strip()] = flags
        return found

    def java_entries(self) -> set[str]:
        """The fingerprints in the truststore, as openssl reads it with the password."""
        out = subprocess.run(
            [require_tool("openssl"), "pkcs12", "-in", str(self.java), "-nokeys",
             "-passin", "pass:changeit"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        return {fp(c) for c in x509.load_pem_x509_certificates(out)}


def trust_playbook(project: Path, stores: Stores, roots: list[dict[str, str]]) -> str:
    data: dict[str, Any] = example(project)
    del data["sites"]
    data["trust"] = [
        {
            "name": "fleet",
            "roots": roots,
            "stores": [
                {"type": "debian", "dir": str(stores.local),
                 "update_command": stores.update_command},
                {"type": "nss", "database": str(stores.nssdb),
                 "certutil": require_tool("certutil")},
                {"type": "java", "path": str(stores.java)},
            ],
        }
    ]  # fmt: skip
    return write_playbook(project, "trust-stores.yml", data)


def apply(cli: Any, playbook: str) -> Any:
    result = cli("apply", playbook, "-i", INVENTORY, "--limit", HOST, env=ENV)
    assert result.exit_code == 0, result.stdout + result.stderr
    return result


def host_changes(cli: Any, playbook: str) -> list[tuple[str, str, str]]:
    document = plan_json(cli, playbook, "--limit", HOST)
    return [(c["resource"], c["action"], c["reason"]) for c in document["hosts"][HOST]["changes"]]


def test_debian_nss_and_java_stores_with_the_real_tools(
    project: Path, cli: Any, tmp_path: Path
) -> None:
    fresh(project)
    stores = Stores(tmp_path / "stores")
    certutil = require_tool("certutil")
    subprocess.run([certutil, "-N", "--empty-password", "-d", f"sql:{stores.nssdb}"], check=True)
    # Someone else's root in every store: never touched.
    foreign = make_root(tmp_path / "foreign.pem", "Foreign Root")
    (stores.local / "foreign.crt").write_bytes(foreign.public_bytes(serialization.Encoding.PEM))
    subprocess.run(
        [certutil, "-A", "-d", f"sql:{stores.nssdb}", "-n", "foreign", "-t", "C,,",
         "-i", str(tmp_path / "foreign.pem")],
        check=True,
    )  # fmt: skip
    stores.java.write_bytes(
        pkcs12.serialize_java_truststore(
            [pkcs12.PKCS12Certificate(foreign, b"foreign")],
            serialization.BestAvailableEncryption(b"changeit"),
        )
    )
    supplied = make_root(project / "playbooks" / "partner-root.pem", "Partner Root")
    roots = [{"authority": "voice-root"}, {"file": "partner-root.pem"}]
    playbook = trust_playbook(project, stores, roots)

    apply(cli, playbook)
    voice = x509.load_pem_x509_certificate(
        (project / "playbooks" / "pki" / "voice-root" / "ca.crt").read_bytes()
    )
    mine = {fp(voice), fp(supplied)}
    assert stores.debian_bundle() == mine | {fp(foreign)}
    nss = stores.nss()
    assert nss["foreign"] == "C,,"
    ours = {n: f for n, f in nss.items() if n.startswith("provision-fleet-")}
    assert sorted(ours) == sorted(f"provision-fleet-{f[:16].lower()}" for f in mine)
    assert set(ours.values()) == {"C,,"}
    assert stores.java_entries() == mine | {fp(foreign)}

    # Idempotent: nothing to do, for the stores and for the record.
    assert host_changes(cli, playbook) == []

    # curl, trusting only the bundle update-ca-certificates made, reaches nginx serving a
    # leaf of the internal CA.
    certs = certs_dir(project, HOST)
    site = Served(f"{HOST}.voice.example.com", certs / "httpscert.pem", certs / "httpscert.key",
                  free_port())  # fmt: skip
    with nginx(tmp_path / "nginx", [site]):
        fetched = curl(site, stores.etc / "ca-certificates.crt")
        assert fetched.returncode == 0, fetched.stderr
        assert fetched.stdout == f"ok {site.name}\n"

    # The partner's root dropped: the plan names every store's change, with subject and
    # fingerprint; then it is gone from each store, and the foreign root is still there.
    playbook = trust_playbook(project, stores, [{"authority": "voice-root"}])
    planned = host_changes(cli, playbook)
    gone = f"CN=Partner Root sha256:{fp(supplied)[:16]}"
    crt = stores.local / f"provision-fleet-{fp(supplied)[:16].lower()}.crt"
    assert planned == [
        (f"trust fleet debian {crt}", "delete", f"removes {gone}"),
        (f"trust fleet debian {stores.local}", "update", f"run `{stores.update_command}`"),
        (f"trust fleet nss {stores.nssdb}", "update", f"-{gone}"),
        (f"trust fleet java {stores.java}", "update", f"-{gone}"),
        ("trust record", "update", "what provision added to each trust store"),
    ], planned
    apply(cli, playbook)
    assert stores.debian_bundle() == {fp(voice), fp(foreign)}
    assert (stores.local / "foreign.crt").exists()
    assert set(stores.nss()) == {"foreign", f"provision-fleet-{fp(voice)[:16].lower()}"}
    assert stores.java_entries() == {fp(voice), fp(foreign)}
    assert host_changes(cli, playbook) == []


def test_a_hostile_trust_record_is_refused(project: Path, cli: Any, tmp_path: Path) -> None:
    fresh(project)
    stores = Stores(tmp_path / "stores")
    certutil = require_tool("certutil")
    subprocess.run([certutil, "-N", "--empty-password", "-d", f"sql:{stores.nssdb}"], check=True)
    playbook = trust_playbook(project, stores, [{"authority": "voice-root"}])
    record = certs_dir(project, HOST) / ".provision-trust.json"
    record.parent.mkdir(parents=True)
    # A record naming a "root" by a path, to make provision delete something of its choice.
    hostile = b'{"version": 1, "stores": {"fleet debian /etc": {"roots": {"../../passwd": ""}}}}'
    record.write_bytes(hostile)
    result = cli("apply", playbook, "-i", INVENTORY, "--limit", HOST, env=ENV)
    assert result.exit_code == 1
    output = result.stdout + result.stderr
    assert "is not a trust record provision wrote" in output and "Traceback" not in output
    assert "passwd" not in output  # what the record says is not repeated
    assert record.read_bytes() == hostile
    assert list(stores.local.iterdir()) == [] and not stores.java.exists()


def test_the_crl_is_copied_to_each_host_as_an_output(
    project: Path, cli: Any, tmp_path: Path
) -> None:
    """`crl.host_dir`: the CRL as the controller published it, as crl.der and crl.pem on
    the host; `openssl verify -crl_check` with the host's copy rejects a revoked leaf."""
    fresh(project)
    data: dict[str, Any] = example(project)
    del data["sites"]
    # (Relative: in each host's certificates directory.)
    data["authorities"][0]["crl"] = {"dir": "pki/crl", "host_dir": "crl"}
    playbook = write_playbook(project, "crl-copy.yml", data)
    apply(cli, playbook)  # creates the CA, publishes the CRL at the end
    copies = certs_dir(project, HOST).resolve() / "crl"
    assert not copies.exists()
    planned = host_changes(cli, playbook)
    assert [(r, a) for r, a, _ in planned] == [
        (f"crl voice-root {copies}/crl.der", "create"),
        (f"crl voice-root {copies}/crl.pem", "create"),
    ]
    apply(cli, playbook)
    published = project / "playbooks" / "pki" / "crl"
    assert (copies / "crl.der").read_bytes() == (published / "crl.der").read_bytes()
    assert (copies / "crl.pem").stat().st_mode & 0o777 == 0o644
    assert host_changes(cli, playbook) == []

    leaf = certs_dir(project, HOST) / "httpscert.pem"
    serial = format(x509.load_pem_x509_certificates(leaf.read_bytes())[0].serial_number, "x")
    result = cli("ca", "revoke", playbook, "voice-root", "--serial", serial, env=ENV)
    assert result.exit_code == 0, result.stdout + result.stderr
    ((resource, action, _), _) = host_changes(cli, playbook)
    assert (resource, action) == (f"crl voice-root {copies}/crl.der", "update")
    apply(cli, playbook)
    ca = project / "playbooks" / "pki" / "voice-root" / "ca.crt"
    checked = subprocess.run(
        [require_tool("openssl"), "verify", "-crl_check", "-CRLfile", str(copies / "crl.pem"),
         "-CAfile", str(ca), str(leaf)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode != 0 and "revoked" in checked.stdout + checked.stderr, checked


def test_the_java_store_password_is_never_printed(project: Path, cli: Any, tmp_path: Path) -> None:
    """The truststore opens with the playbook's password (from the environment), and no plan,
    saved plan or apply output shows it."""
    fresh(project)
    secret = "Truststore-Secret-p4Rw8z"
    env = {**ENV, "TRUSTSTORE_PASSWORD": secret}
    data: dict[str, Any] = example(project)
    del data["sites"]
    store = tmp_path / "truststore.p12"
    data["trust"] = [
        {
            "name": "fleet",
            "roots": [{"authority": "voice-root"}],
            "stores": [
                {"type": "java", "path": str(store), "password": {"env": "TRUSTSTORE_PASSWORD"}}
            ],
        }
    ]
    playbook = write_playbook(project, "java-secret.yml", data)
    base = (playbook, "-i", INVENTORY, "--limit", HOST)
    printed = []
    for args in (
        ("apply", *base),
        ("plan", *base, "--format", "json"),
        ("plan", *base, "--out", str(tmp_path / "plan.json")),
    ):
        result = cli(*args, env=env)
        assert result.exit_code == 0, result.stdout + result.stderr
        printed.append(result.stdout + result.stderr)
    printed.append((tmp_path / "plan.json").read_text())
    assert not any(secret in text for text in printed)
    opened = subprocess.run(
        [require_tool("openssl"), "pkcs12", "-in", str(store), "-nokeys", "-passin",
         f"pass:{secret}"],
        capture_output=True, check=False,
    )  # fmt: skip
    assert opened.returncode == 0 and b"BEGIN CERTIFICATE" in opened.stdout, opened.stderr
    # A password that does not open the store fails the host, and the store is kept.
    before = store.read_bytes()
    result = cli("apply", *base, env={**env, "TRUSTSTORE_PASSWORD": "wrong"})
    assert result.exit_code == 1
    assert "that opens with the store's password" in result.stdout + result.stderr
    assert store.read_bytes() == before


def test_hosts_trust_their_peers_self_signed_certificates(
    project: Path, cli: Any, tmp_path: Path
) -> None:
    """`self_signed_of`: each host's bundle holds the self-signed certificates of the hosts
    the pattern names, read from those hosts: the run that issues them makes the stores wait,
    the next fills them; curl with one host's bundle reaches nginx serving another's
    certificate. A peer's file that is not what its playbook says is not trusted."""
    fresh(project)
    data: dict[str, Any] = example(project, "callmanager-https.yml")
    del data["sites"]
    data["trust"] = [
        {
            "name": "peers",
            "roots": [{"self_signed_of": "callmanager", "certificate": "httpscert"}],
            "stores": [{"type": "bundle", "path": f"{tmp_path}/{{{{ host.name }}}}/peers.pem"}],
        }
    ]
    playbook = write_playbook(project, "peers.yml", data)
    hosts = ("cm-pub-01", "cm-sub-01", "cm-sub-02")

    def run(*args: str) -> Any:
        result = cli(*args, playbook, "-i", INVENTORY, env=ENV)
        assert result.exit_code == 0, result.stdout + result.stderr
        return result

    run("apply")
    assert not (tmp_path / "cm-pub-01" / "peers.pem").exists()  # waits: issued by that run
    run("apply")
    leaves = {
        h: x509.load_pem_x509_certificates((certs_dir(project, h) / "httpscert.pem").read_bytes())[
            0
        ]
        for h in hosts
    }
    for host in hosts:
        bundle = x509.load_pem_x509_certificates((tmp_path / host / "peers.pem").read_bytes())
        assert {fp(c) for c in bundle} == {fp(c) for c in leaves.values()}
    document = plan_json(cli, playbook)
    assert all(not document["hosts"][h]["changes"] for h in hosts), document

    certs = certs_dir(project, "cm-sub-01")
    site = Served("cm-sub-01.voice.example.com", certs / "httpscert.pem",
                  certs / "httpscert.key", free_port())  # fmt: skip
    with nginx(tmp_path / "nginx", [site]):
        fetched = curl(site, tmp_path / "cm-pub-01" / "peers.pem")
        assert fetched.returncode == 0, fetched.stderr

    # A root planted in a peer's certificate file: no host trusts it, no store changes.
    planted = make_root(tmp_path / "planted.pem", "Planted Root")
    (certs_dir(project, "cm-sub-02") / "httpscert.pem").write_bytes(
        planted.public_bytes(serialization.Encoding.PEM)
    )
    document = plan_json(cli, playbook)
    for host in ("cm-pub-01", "cm-sub-01"):
        assert document["hosts"][host]["changes"] == [], document["hosts"][host]
        (waits,) = [
            u for u in document["hosts"][host]["unchanged"] if u["resource"].startswith("trust")
        ]
        assert waits["reason"].startswith("waits for httpscert on hosts callmanager"), waits
