"""ACME orders against a real Pebble: an order validated by a run that stopped is resumed by
the next (not ordered again), and a preferred chain is chosen among Pebble's alternates."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import require_tool
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from pebble import Pebble, running
from test_acme import BASE_ENV, NAMES, Project, ca
from test_servers import Nginx, nginx

from provision.acmeclient import order as acme_order
from provision.acmeclient import orders
from provision.model.playbook import AcmeSource, Certificate

__all__ = ["ca", "nginx"]  # the fixtures, imported to be found

pytestmark = pytest.mark.integration


def _source(project: Project) -> AcmeSource:
    book = yaml.safe_load((project.folder / "playbook.yml").read_text())
    source = Certificate.model_validate(book["certificates"][0]).source
    assert isinstance(source, AcmeSource)
    return source


def _orders_made(pebble: Pebble) -> int:
    counts = re.findall(r"There are now (\d+) orders in the db", _log(pebble))
    return int(counts[-1]) if counts else 0


def _log(pebble: Pebble) -> str:
    return (pebble.folder / "pebble.log").read_text(errors="replace")


def test_an_order_validated_by_a_stopped_run_is_finalised_by_the_next(
    tmp_path: Path, ca: Pebble, nginx: Nginx
) -> None:
    """A run that stopped after validation (here: the order validated in this process, and
    nothing more) leaves its order URL beside the account; the next apply finalises that
    order (Pebble's log names it), makes no new one, and forgets it."""
    folder = tmp_path / "project"
    folder.mkdir()
    project = Project(folder, ca, nginx)
    project.write()
    source = _source(project)
    label = "web-01/web"
    stopped = acme_order.OrderInput(
        source, tuple(NAMES), ec.generate_private_key(ec.SECP256R1()), folder, None, None, label
    )
    acme, jwk = acme_order._client(source, folder)
    acme_order._register(acme, jwk, stopped)
    deadline = dt.datetime.now() + dt.timedelta(seconds=120)
    validated = acme_order.validated_order(acme, jwk, stopped, acme_order._csr(stopped), deadline)
    record = orders.record_path(source, folder, label)
    assert json.loads(record.read_text())["order"] == validated.uri
    made = _orders_made(ca)
    order_id = validated.uri.rsplit("/", 1)[1]
    assert f"/finalize-order/{order_id}" not in _log(ca)

    applied = project.run("apply")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    assert _orders_made(ca) == made  # nothing ordered again
    assert re.search(rf"Order {re.escape(order_id)} is fully authorized", _log(ca))
    assert not record.exists()
    assert project.served().returncode == 0
    # Once done, the next renewal orders anew (nothing recorded to resume).
    book = yaml.safe_load((folder / "playbook.yml").read_text())
    book["certificates"][0]["renew_before_days"] = 100000
    (folder / "playbook.yml").write_text(yaml.safe_dump(book, sort_keys=False))
    renewed = project.run("apply")
    assert renewed.exit_code == 0, renewed.stdout + renewed.stderr
    assert _orders_made(ca) == made + 1


def test_a_recorded_order_the_ca_no_longer_knows_is_forgotten(
    tmp_path: Path, ca: Pebble, nginx: Nginx
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    project = Project(folder, ca, nginx)
    project.write()
    source = _source(project)
    orders.record(source, folder, "web-01/web", ca.directory.replace("/dir", "/my-order/gone"))
    applied = project.run("apply")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    assert not orders.record_path(source, folder, "web-01/web").exists()


def test_the_preferred_chain_is_chosen_among_the_alternates(tmp_path: Path, nginx: Nginx) -> None:
    """Pebble with an alternate root: the chain whose top is issued by the root named in
    preferred_chain is installed, and the site verifies against that root alone."""
    env = {**BASE_ENV, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_ALTERNATE_ROOTS": "1"}
    with running(tmp_path / "pebble", env) as pebble:
        alternate = pebble.root(1)
        name = (
            x509.load_pem_x509_certificate(alternate)
            .subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0]
            .value
        )
        assert isinstance(name, str) and name != _root_name(pebble.root(0))
        folder = tmp_path / "project"
        folder.mkdir()
        project = Project(folder, pebble, nginx)
        project.write(preferred_chain=name)
        applied = project.run("apply")
        assert applied.exit_code == 0, applied.stdout + applied.stderr
        chain = x509.load_pem_x509_certificates((project.certs / "web.pem").read_bytes())
        top = chain[-1].issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        assert top == name
        root = folder / "alternate-root.pem"
        root.write_bytes(alternate)
        verified = subprocess.run(
            [require_tool("curl"), "-sS", "-o", "/dev/null", "--cacert", str(root),
             "--resolve", f"acme.test:{project.port}:127.0.0.1",
             f"https://acme.test:{project.port}/"],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        assert verified.returncode == 0, verified.stderr


def _root_name(pem: bytes) -> str:
    value = (
        x509.load_pem_x509_certificate(pem)
        .subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0]
        .value
    )
    assert isinstance(value, str)
    return value
