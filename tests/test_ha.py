"""A three-node OpenBao raft cluster on loopback: the app given every node's address survives the
leader's SIGKILL — no acknowledged submission lost, no rejected one consuming its link, purges done.
"""

from __future__ import annotations

import time
import uuid

import hvac
import hvac.exceptions
import pytest
from sqlalchemy import select

from vault_service import create_app
from vault_service.devtools.embedded_openbao import RaftCluster
from vault_service.extensions import db
from vault_service.models import CredentialItem, Job
from vault_service.vault import (
    KV_MOUNT,
    TRANSIT_MOUNT,
    bootstrap_vault,
    issue_app_token,
)

from .helpers import folder_of, key_of, lease_of, run_worker_pass

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Three nodes, bootstrapped through the leader, with an app token (policy vault-service)."""
    cluster = RaftCluster(tmp_path_factory.mktemp("raft"))
    try:
        secrets = cluster.start()
        leader = cluster.leader()
        bootstrap_vault(leader.addr, secrets.root_token)
        cluster.app_token = issue_app_token(leader.addr, secrets.root_token, 3600).token
        yield cluster
    finally:
        cluster.stop()


def admin_of(cluster) -> hvac.Client:
    return hvac.Client(url=cluster.leader().addr, token=cluster.secrets.root_token, timeout=10)


def restart(cluster, node) -> None:
    """Bring a killed node back so the next test again has a full cluster."""
    node.start()
    cluster.unseal_when_joined(node)
    cluster.wait_for_voters()


@pytest.fixture
def cluster_app(cluster, make_settings, ticket_system_factory):
    app = create_app(
        make_settings(vault_addr=",".join(cluster.addresses), vault_token=cluster.app_token)
    )
    ticket_system, agent, client = ticket_system_factory(app)
    return app, ticket_system, agent, client


def test_app_pointed_at_a_standby_works_through_forwarding(
    cluster, make_settings, ticket_system_factory
):
    standby = next(node for node in cluster.nodes if node is not cluster.leader())
    app = create_app(make_settings(vault_addr=standby.addr, vault_token=cluster.app_token))
    ticket_system, agent, client = ticket_system_factory(app)
    path = ticket_system.link_path("T-standby")
    item = {"kind": "other", "label": "via standby", "secret": "fwd ✓"}
    assert client.post(path, json={"items": [item]}).status_code == 201
    agent.login()
    agent.request_access("T-standby")
    assert "fwd ✓" in agent.reveal("T-standby").get_data(as_text=True)


def test_leader_killed_during_a_stream_of_submissions_loses_nothing(cluster, cluster_app):
    app, ticket_system, agent, client = cluster_app
    outcomes = []  # (ticket_ref, link path or None, status, secret)
    killed_at = recovered_at = None
    old_leader = cluster.leader()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ref = f"T-ha-{len(outcomes)}"
        secret = f"secret-{uuid.uuid4().hex}"
        created = ticket_system.create_link(ref)
        if created.status_code != 201:
            assert created.status_code == 503, created.get_json()
            outcomes.append((ref, None, created.status_code, secret))
            time.sleep(0.2)  # as a ticket system would back off before retrying
        else:
            path = created.get_json()["url"].removeprefix("http://localhost")
            item = {"kind": "other", "label": "ha", "secret": secret}
            status = client.post(path, json={"items": [item]}).status_code
            assert status in (201, 503), status
            outcomes.append((ref, path, status, secret))
            if status == 503:
                time.sleep(0.2)
            if killed_at and status == 201 and recovered_at is None:
                recovered_at = time.monotonic()
        if killed_at is None and len(outcomes) >= 5:
            old_leader.kill()
            killed_at = time.monotonic()
        if recovered_at and sum(1 for o in outcomes if o[2] == 201) >= 25:
            break
    assert killed_at and recovered_at, "the app never recovered from the leader's loss"
    print(f"\nleader SIGKILL -> first acknowledged submission: {recovered_at - killed_at:.1f}s")

    acknowledged = [o for o in outcomes if o[2] == 201]
    rejected = [o for o in outcomes if o[1] and o[2] == 503]
    assert len(acknowledged) >= 20
    agent.login()
    for ref, _, _, secret in acknowledged:
        agent.request_access(ref)
        assert secret in agent.reveal(ref).get_data(as_text=True), ref  # zero lost
    for _, path, _, _ in rejected:
        assert client.get(path).status_code == 200  # the link is still valid
    restart(cluster, old_leader)


def test_leader_killed_during_a_purge_the_purge_still_completes(cluster, cluster_app):
    app, ticket_system, _, client = cluster_app
    path = ticket_system.link_path("T-ha-purge")
    items = [{"kind": "other", "label": f"n{i}", "secret": f"s{i}"} for i in range(5)]
    assert client.post(path, json={"items": items}).status_code == 201
    lease = lease_of(app, "T-ha-purge")
    assert ticket_system.close("T-ha-purge").status_code == 202

    old_leader = cluster.leader()
    old_leader.kill()
    killed_at = time.monotonic()
    deadline = killed_at + 60
    while time.monotonic() < deadline:
        if run_worker_pass(app).jobs_completed["purge"]:
            break
        with app.app_context():  # retry now rather than after the backoff
            db.session.execute(Job.__table__.update().values(next_attempt_at=Job.created_at))
            db.session.commit()
        time.sleep(0.5)
    print(f"\nleader SIGKILL during purge -> purge complete: {time.monotonic() - killed_at:.1f}s")
    assert ticket_system.status("T-ha-purge").get_json()["status"] == "purged"
    admin = admin_of(cluster)
    with pytest.raises(hvac.exceptions.InvalidPath):
        admin.secrets.kv.v2.list_secrets(path=folder_of(lease.id), mount_point=KV_MOUNT)
    with pytest.raises(hvac.exceptions.InvalidPath):
        admin.secrets.transit.read_key(name=key_of(lease.id), mount_point=TRANSIT_MOUNT)
    with app.app_context():
        assert db.session.scalars(select(CredentialItem)).all() == []
    restart(cluster, old_leader)


def test_a_node_without_quorum_reports_no_leader_not_a_refused_identity(
    cluster, make_settings, ticket_system_factory
):
    """Two of three nodes gone: the last one is unsealed but can elect nobody. /readyz says
    `no_leader` (an election or a lost quorum), never `vault_auth: refused` (an AppRole fault)."""
    leader = cluster.leader()
    survivor = next(node for node in cluster.nodes if node is not leader)
    others = [node for node in cluster.nodes if node is not survivor]
    app = create_app(make_settings(vault_addr=survivor.addr, vault_token=cluster.app_token))
    ticket_system_factory(app)
    probe = app.test_client()
    assert probe.get("/readyz").get_json()["checks"]["vault"] == "ok"
    for node in others:
        node.kill()
    try:
        deadline = time.monotonic() + 30
        checks: dict = {}
        while time.monotonic() < deadline:
            response = probe.get("/readyz")
            checks = response.get_json()["checks"]
            if checks.get("vault") == "no_leader":
                break
            time.sleep(0.5)
        assert checks == {"database": "ok", "schema": "ok", "vault": "no_leader"}, checks
        assert response.status_code == 503
    finally:
        for node in others:
            restart(cluster, node)
    cluster.wait_for_leader()
