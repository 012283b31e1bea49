"""docker-compose.yml's production topology, run as processes (no container engine runs here):
three OpenBao raft nodes over TLS from a CA made here, unsealed by the static seal; the real
`vault-service bootstrap-vault`, AppRole secret ids delivered response-wrapped; two gunicorn
replicas and the worker started through `vault-service with-secret-id`, every VAULT_ADDR node
given; the shipped nginx site terminating TLS in front of the replicas. The lifecycle runs
through the proxy while the raft leader and then one replica are SIGKILLed: nothing acknowledged
is lost, and at the end Vault holds nothing of the closed tickets (asked of Vault itself).
"""

from __future__ import annotations

import base64
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import hvac
import hvac.exceptions
import pytest
from sqlalchemy import create_engine, text

from vault_service import create_app
from vault_service.config import load_settings
from vault_service.devtools.embedded_openbao import RaftCluster, write_static_seal_key
from vault_service.devtools.processes import Process, free_port
from vault_service.devtools.tls import make_ca
from vault_service.extensions import db
from vault_service.models import Lease
from vault_service.vault import KV_MOUNT, TRANSIT_MOUNT, TLSOptions, issue_app_token, lease_names
from vault_service.vault.bootstrap import admin_client

from .conftest import TEST_DATABASE_URL, TICKET_API_TOKEN, WEBHOOK_KEY, AgentBrowser, TicketSystem
from .helpers import (
    NGINX,
    ROOT,
    HTTPClient,
    loopback_nginx_config,
    make_child_environment,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.production_topology,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/run_tests.py)"),
]

BIN = Path(sys.executable).parent
VAULT_SERVICE = str(BIN / "vault-service")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Three TLS raft nodes that unseal themselves from one static seal key."""
    directory = tmp_path_factory.mktemp("topology")
    ca = make_ca(directory / "ca")
    seal_key = write_static_seal_key(directory / "static-seal.key")
    cluster = RaftCluster(directory / "raft", tls=ca.server, static_seal_key=seal_key)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _fresh_database(tmp_path: Path) -> str:
    """An empty database: the operator's `migrate upgrade` builds it, as in a deployment."""
    if TEST_DATABASE_URL:
        engine = create_engine(TEST_DATABASE_URL)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        return TEST_DATABASE_URL
    return f"sqlite:///{tmp_path / 'vault_service.db'}"


def operator(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A `vault-service` command as an operator (or the compose bootstrap service) types it."""
    done = subprocess.run(  # noqa: S603 - our own console script
        [VAULT_SERVICE, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"vault-service {args[0]}: {done.stdout}{done.stderr}"
    return done


class Deployment:
    """The processes of docker-compose.yml on loopback, and what the test needs to reach them."""

    def __init__(self, cluster: RaftCluster, tmp_path: Path):
        self.cluster, self.tmp_path = cluster, tmp_path
        self.ca_file = str(cluster.tls.ca_file)  # type: ignore[union-attr]
        self.proxy_port = free_port()
        self.public_url = f"https://127.0.0.1:{self.proxy_port}"
        self.root_token_file = tmp_path / "admin-token"
        self.root_token_file.write_text(cluster._init_secrets().root_token)
        self.deliveries = tmp_path / "approle-delivery"
        self.deliveries.mkdir(mode=0o700)
        self.env = {
            **make_child_environment(),
            "VAULT_SERVICE_ENV": "production",
            "VAULT_SERVICE_DATABASE_URL": _fresh_database(tmp_path),
            "VAULT_ADDR": ",".join(cluster.addresses),
            "VAULT_SERVICE_VAULT_CA_CERT": self.ca_file,
            "VAULT_SERVICE_DEPLOYMENT_ID": "topology-" + secrets.token_hex(4),
            "VAULT_SERVICE_SECRET_KEY": secrets.token_urlsafe(48),
            "VAULT_SERVICE_TICKET_API_TOKEN": TICKET_API_TOKEN,
            "VAULT_SERVICE_WEBHOOK_SECRET": "whsec_" + base64.b64encode(WEBHOOK_KEY).decode(),
            "VAULT_SERVICE_PUBLIC_URL": self.public_url,
            "VAULT_SERVICE_TRUSTED_PROXIES": "1",
            "VAULT_SERVICE_EMBEDDED_WORKER": "0",
            "VAULT_SERVICE_LOG_LEVEL": "INFO",
        }
        self.replicas: list[Process] = []
        self.replica_ports: list[int] = []
        self.worker: Process | None = None
        self.proxy: Process | None = None

    def bootstrap(self) -> None:
        """The compose file's one-shot `bootstrap` service, command for command."""
        admin = ["--admin-token-file", str(self.root_token_file)]
        operator(["bootstrap-vault", *admin, "--approle"], self.env)
        migrate = self.deliveries / "migrate.json"
        operator(["deliver-secret-id", *admin, "--one-off", "--out", str(migrate)], self.env)
        operator(
            ["with-secret-id", "--delivery-file", str(migrate), "--", VAULT_SERVICE]
            + ["migrate", "upgrade"],
            self.env,
        )
        outs = [f"--out={self.deliveries / name}.json" for name in ("app-1", "app-2", "worker")]
        operator(["deliver-secret-id", *admin, "--wrap-ttl", "120", *outs], self.env)

    def start(self) -> None:
        for number in (1, 2):
            port = free_port()
            process = Process(
                f"app-{number}",
                [VAULT_SERVICE, "with-secret-id", "--delivery-file"]
                + [str(self.deliveries / f"app-{number}.json"), "--", str(BIN / "gunicorn")]
                + ["-c", "python:vault_service.gunicorn_conf", "vault_service.wsgi:app"]
                + ["--bind", f"127.0.0.1:{port}", "--workers", "2"]
                + ["--worker-class", "gthread", "--threads", "4"],
                self.tmp_path / f"app-{number}.log",
                env=self.env,
                cwd=ROOT,
            )
            self.replicas.append(process)
            self.replica_ports.append(port)
        for process, port in zip(self.replicas, self.replica_ports, strict=True):
            process.wait_for_url(f"http://127.0.0.1:{port}/readyz", 60)
        self.worker = Process(
            "worker",
            [VAULT_SERVICE, "with-secret-id", "--delivery-file"]
            + [str(self.deliveries / "worker.json"), "--", VAULT_SERVICE, "worker"],
            self.tmp_path / "worker.log",
            env=self.env,
            cwd=ROOT,
        )
        nginx_dir = self.tmp_path / "nginx"
        nginx_dir.mkdir()
        config = loopback_nginx_config(
            nginx_dir,
            self.proxy_port,
            self.replica_ports,
            tls=self.cluster.tls,  # the test CA's certificate for 127.0.0.1 serves here too
        )
        self.proxy = Process(
            "nginx",
            [str(NGINX), "-p", str(nginx_dir), "-c", str(config), "-g", "daemon off;"],
            nginx_dir / "stdout.log",
        )
        self.proxy.wait_for_url(f"{self.public_url}/healthz", 30, verify=self.ca_file)

    def operator_app(self):
        """The operator's side in this process (agents, reading the database): its own Vault
        token with the app policy; the replicas run on their AppRole secret ids."""
        token = issue_app_token(
            self.cluster.addresses,
            self.cluster._init_secrets().root_token,
            3600,
            tls=TLSOptions(ca_cert=self.ca_file),
        ).token
        settings = load_settings(
            {
                **{k: v for k, v in self.env.items() if k.startswith("VAULT_")},
                "VAULT_SERVICE_ENV": "testing",
                "VAULT_SERVICE_VAULT_TOKEN": token,
            }
        )
        return create_app(settings)

    def stop(self) -> None:
        for process in [self.proxy, self.worker, *self.replicas]:
            if process is not None:
                process.stop()


@pytest.fixture
def deployment(cluster, tmp_path):
    deployment = Deployment(cluster, tmp_path)
    try:
        yield deployment
    finally:
        deployment.stop()


def test_the_topology_keeps_every_acknowledged_change_through_a_leader_and_a_replica_kill(
    deployment,
):
    began = time.monotonic()
    deployment.bootstrap()
    bootstrapped = time.monotonic()
    # A delivery is consumed by the one process it was meant for.
    deployment.start()
    waited_until = time.monotonic() + 30
    while any(deployment.deliveries.iterdir()) and time.monotonic() < waited_until:
        time.sleep(0.2)
    assert sorted(path.name for path in deployment.deliveries.iterdir()) == [], (
        "every wrapped secret id was unwrapped and its file removed"
    )
    operator_app = deployment.operator_app()
    http = HTTPClient(deployment.public_url, verify=deployment.ca_file)
    ticket_system = TicketSystem(http)
    agent = AgentBrowser(http, operator_app)
    agent.create()
    public = deployment.public_url

    # Refusals the caller retries: 503 from the app (Vault electing a leader), 502 from the proxy
    # (a POST already sent to the replica killed under it; nginx never replays a POST).
    refused = (502, 503)

    def submit(ref: str, secret: str) -> tuple[str | None, int]:
        created = ticket_system.create_link(ref)
        if created.status_code != 201:
            assert created.status_code in refused, created.get_data(as_text=True)
            return None, created.status_code
        path = created.get_json()["url"].removeprefix(public)
        item = {"kind": "other", "label": "topology", "secret": secret}
        status = http.post(path, json={"items": [item]}).status_code
        assert status == 201 or status in refused, status
        return path, status

    outcomes: list[tuple[str, str | None, int, str]] = []
    events: list[str] = []
    started = time.monotonic()
    events.append(f"bootstrap {bootstrapped - began:.1f}s, start {started - bootstrapped:.1f}s")
    old_leader = deployment.cluster.leader()
    killed_leader_at = killed_replica_at = None
    recovered_at = None
    deadline = started + 60
    while time.monotonic() < deadline:
        ref = f"T-topo-{len(outcomes)}"
        secret = f"secret-{uuid.uuid4().hex}"
        path, status = submit(ref, secret)
        outcomes.append((ref, path, status, secret))
        if status != 201:
            time.sleep(0.2)  # as a ticket system backs off before it retries
        elif killed_leader_at and recovered_at is None:
            recovered_at = time.monotonic()
            events.append(f"{recovered_at - started:.1f}s first acknowledged submission after")
        acknowledged = sum(1 for o in outcomes if o[2] == 201)
        if killed_leader_at is None and acknowledged >= 4:
            old_leader.kill()
            killed_leader_at = time.monotonic()
            events.append(
                f"{killed_leader_at - started:.1f}s SIGKILL raft leader {old_leader.addr}"
            )
        if recovered_at and killed_replica_at is None and acknowledged >= 8:
            deployment.replicas[0].kill()
            killed_replica_at = time.monotonic()
            events.append(f"{killed_replica_at - started:.1f}s SIGKILL app-1 (gunicorn, workers)")
        if killed_replica_at and acknowledged >= 12:
            break
    assert killed_leader_at and recovered_at and killed_replica_at, events

    acknowledged = [o for o in outcomes if o[2] == 201]
    rejected = [o for o in outcomes if o[1] and o[2] != 201]
    # Reveals after both kills, through the surviving replica: every acknowledged value is there.
    events.append(f"{time.monotonic() - started:.1f}s reveals begin")
    assert agent.login().status_code in (200, 302)
    for ref, _, _, secret in acknowledged:
        assert agent.request_access(ref).status_code in (200, 302), ref
        assert secret in agent.reveal(ref).get_data(as_text=True), ref  # zero lost
    for _, path, _, _ in rejected:
        assert http.get(path).status_code == 200  # a refused submission left its link valid

    events.append(f"{time.monotonic() - started:.1f}s every acknowledged value revealed")
    # Close every ticket (those whose link was refused too: the app may have made their lease
    # before Vault failed); the worker, on its own AppRole secret id, purges them all.
    for ref, _, _, _ in outcomes:
        assert ticket_system.close(ref).status_code in (200, 202), ref
    closed_at = time.monotonic()
    pending = {ref for ref, _, _, _ in outcomes if ticket_system.status(ref).status_code == 200}
    while pending and time.monotonic() < closed_at + 60:
        pending = {r for r in pending if ticket_system.status(r).get_json()["status"] != "purged"}
        time.sleep(0.5)
    assert not pending, f"not purged by the worker: {sorted(pending)}"
    events.append(f"{time.monotonic() - started:.1f}s every closed ticket purged")

    # Vault's own word, over every node with the operator's token: nothing of any ticket is left.
    admin = admin_client(
        deployment.cluster.addresses,
        deployment.cluster._init_secrets().root_token,
        tls=TLSOptions(ca_cert=deployment.ca_file),
    )
    with operator_app.app_context():
        leases = list(db.session.scalars(db.select(Lease.id)))
        db.session.rollback()
    deployment_id = deployment.env["VAULT_SERVICE_DEPLOYMENT_ID"]
    assert len(leases) >= len(acknowledged)
    for lease_id in leases:
        names = lease_names(lease_id, deployment=deployment_id)
        with pytest.raises(hvac.exceptions.InvalidPath):
            admin.secrets.kv.v2.list_secrets(path=names.kv_folder, mount_point=KV_MOUNT)
        with pytest.raises(hvac.exceptions.InvalidPath):
            admin.secrets.transit.read_key(name=names.key_name, mount_point=TRANSIT_MOUNT)
    print(
        "\n".join(
            [
                "",
                *events,
                f"submissions: {len(acknowledged)} acknowledged (all revealed, then purged), "
                f"{len(rejected)} refused with 503 (links still valid), "
                f"{sum(1 for o in outcomes if o[1] is None)} link requests refused with 503",
                f"Vault at the end: 0 of {len(leases)} leases with a KV folder or a transit key",
            ]
        )
    )
    # Put the killed leader back for the next test.
    old_leader.start()
    deployment.cluster.unseal_when_joined(old_leader)
    deployment.cluster.wait_for_voters()


def test_admin_commands_use_the_next_node_when_the_first_is_down(deployment, tmp_path):
    """bootstrap-vault, deliver-secret-id, the unwrap and doctor --admin-token-file are given
    every node in VAULT_ADDR: with the first one killed they carry on through the others."""
    cluster = deployment.cluster
    first = cluster.nodes[0]
    first.kill()
    try:
        cluster.wait_for_leader()
        deployment.bootstrap()  # bootstrap-vault, deliveries, a one-off `migrate upgrade`
        admin = ["--admin-token-file", str(deployment.root_token_file)]
        delivery = tmp_path / "doctor.json"
        operator(["deliver-secret-id", *admin, "--one-off", "--out", str(delivery)], deployment.env)
        doctor = operator(
            ["with-secret-id", "--delivery-file", str(delivery), "--", VAULT_SERVICE, "doctor"]
            + admin,
            deployment.env,
        ).stdout
        assert "[FAIL]" not in doctor, doctor
        assert "[ok] vault admin checks" in doctor or "audit" in doctor, doctor
    finally:
        first.start()
        cluster.unseal_when_joined(first)
        cluster.wait_for_voters()
