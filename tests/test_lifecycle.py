"""The whole story over HTTP against the real OpenBao, checked against Vault's API at the end."""

from __future__ import annotations

import re

import hvac.exceptions
import pytest
from sqlalchemy import select

from vault_service.extensions import db
from vault_service.models import CredentialItem, Grant, Lease
from vault_service.vault import KV_MOUNT, TRANSIT_MOUNT

from .conftest import SAMPLE_ITEMS
from .helpers import folder_of, item_path, key_of, lease_of, run_worker_pass

pytestmark = pytest.mark.usefixtures("openbao")


def test_the_whole_lifecycle_ends_with_nothing_left_in_vault(
    app, client, ticket_system, agent, openbao
):
    # The ticket system asks for a link; the ticket is created on first use.
    response = ticket_system.create_link("T-1001")
    assert response.status_code == 201
    link = response.get_json()
    assert set(link) == {"link_id", "url", "expires_at"}
    path = link["url"].removeprefix("http://localhost")
    assert re.fullmatch(r"/s/[A-Za-z0-9_-]{43}", path)  # 256 random bits

    # A mail scanner GETs the link twice: the form renders, the link stays usable.
    for _ in range(2):
        page = client.get(path)
        assert page.status_code == 200
        assert "at most <strong>30 days</strong>" in page.get_data(as_text=True)

    # The customer submits; the link is consumed.
    response = client.post(path, json={"items": SAMPLE_ITEMS, "notes": "café\tnote  "})
    assert response.status_code == 201
    assert response.get_json()["item_count"] == 3
    assert client.post(path, json={"items": SAMPLE_ITEMS}).status_code == 410
    assert client.get(path).status_code == 410

    status = ticket_system.status("T-1001").get_json()
    assert status == {
        "ticket_ref": "T-1001",
        "status": "open",
        "credential_count": 3,
        "purge_receipt": None,
        "purge_receipt_jws": None,
    }

    # An agent logs in, asks for access with a reason, and reveals: values byte-exact.
    assert agent.login().status_code == 302
    dashboard = client.get("/").get_data(as_text=True)
    assert "T-1001" in dashboard and "SFTP" in dashboard  # the kind by its label
    assert SAMPLE_ITEMS[0]["password"] not in dashboard
    assert agent.request_access("T-1001", minutes=30).status_code == 302
    grant_id = agent.current_grant_id("T-1001")
    revealed = agent.reveal("T-1001", grant_id)
    assert revealed.status_code == 200
    assert revealed.headers["Cache-Control"] == "no-store"
    html = revealed.get_data(as_text=True)
    for item in SAMPLE_ITEMS:
        for name, value in item.items():
            if name != "kind":
                assert f'<code class="secret">{value}</code>' in html, name
    assert '<code class="secret">café\tnote  </code>' in html

    lease = lease_of(app, "T-1001")
    with app.app_context():
        grant_accessor = db.session.get(Grant, grant_id).token_accessor
        item_ids = [i.id for i in db.session.scalars(select(CredentialItem)).all()]
    admin = openbao.admin()
    assert admin.secrets.transit.read_key(name=key_of(lease.id), mount_point=TRANSIT_MOUNT)

    # The ticket closes: 202, and at once no reveal succeeds, before any purge ran.
    assert ticket_system.close("T-1001").status_code == 202
    assert agent.reveal("T-1001", grant_id).status_code == 403
    assert ticket_system.status("T-1001").get_json()["status"] == "closing"

    # The worker purges; Vault's own API shows nothing left.
    report = run_worker_pass(app)
    assert report.jobs_completed["purge"] == 1
    for accessor in (lease.token_accessor, grant_accessor):
        with pytest.raises(hvac.exceptions.InvalidRequest):
            admin.auth.token.lookup_accessor(accessor)
    with pytest.raises(hvac.exceptions.InvalidPath):
        admin.secrets.transit.read_key(name=key_of(lease.id), mount_point=TRANSIT_MOUNT)
    for item_id in item_ids:
        with pytest.raises(hvac.exceptions.InvalidPath):
            admin.secrets.kv.v2.read_secret_metadata(
                path=item_path(lease.id, item_id), mount_point=KV_MOUNT
            )
    with pytest.raises(hvac.exceptions.InvalidPath):
        admin.secrets.kv.v2.list_secrets(path=folder_of(lease.id), mount_point=KV_MOUNT)
    assert lease.entity_id
    assert admin.read(f"identity/entity/id/{lease.entity_id}") is None
    # Nor can the lease id be found through identity: Vault answers 204, "no such alias".
    token_mount = admin.sys.list_auth_methods()["data"]["token/"]["accessor"]
    lookup = admin.write_data(
        "identity/lookup/entity",
        data={"alias_name": lease.id, "alias_mount_accessor": token_mount},
    )
    assert lookup.status_code == 204

    # The database keeps no ciphertext or token of the ticket, only the receipt.
    with app.app_context():
        stored = db.session.get(Lease, lease.id)
        assert stored.status == "purged" and stored.token_ciphertext is None
        assert db.session.scalar(select(Grant.token_ciphertext)) is None
        assert db.session.scalars(select(CredentialItem)).all() == []

    status = ticket_system.status("T-1001").get_json()
    assert status["status"] == "purged"
    assert status["credential_count"] == 0
    receipt = status["purge_receipt"]
    assert receipt["verified_absent_in_vault"] is True
    assert receipt["destroyed"]["kv_entries"] == 3
    assert receipt["destroyed"]["transit_key"] == key_of(lease.id)
    assert receipt["destroyed"]["identity_entity"] == lease.entity_id
    assert set(receipt["destroyed"]["token_accessors"]) == {lease.token_accessor, grant_accessor}

    # A closed ticket gets no new links; a second close is a no-op.
    assert ticket_system.create_link("T-1001").status_code == 409
    assert ticket_system.close("T-1001").status_code == 202


def test_reopened_ticket_gets_new_links_and_purged_credentials_stay_gone(
    app, client, ticket_system, agent, submitted_ticket
):
    old_lease = lease_of(app, submitted_ticket)
    assert ticket_system.close(submitted_ticket).status_code == 202
    run_worker_pass(app)
    assert ticket_system.send_event("ticket.reopened", submitted_ticket).status_code == 202

    path = ticket_system.link_path(submitted_ticket)
    assert client.post(path, json={"items": [SAMPLE_ITEMS[1]]}).status_code == 201
    status = ticket_system.status(submitted_ticket).get_json()
    assert status["status"] == "open"
    assert status["credential_count"] == 1

    agent.login()
    agent.request_access(submitted_ticket)
    html = agent.reveal(submitted_ticket).get_data(as_text=True)
    assert SAMPLE_ITEMS[1]["password"] in html
    assert SAMPLE_ITEMS[0]["password"] not in html
    with app.app_context():
        assert db.session.get(Lease, old_lease.id).status == "purged"


def test_ticket_without_credentials_closes_straight_to_purged(ticket_system):
    ticket_system.link_path("T-empty")
    assert ticket_system.close("T-empty").status_code == 202
    # Its lease had Vault material (key, policies, token) even without a submission.
    assert ticket_system.status("T-empty").get_json()["status"] == "closing"


def test_unknown_ticket_status_is_404_and_close_is_a_noop(ticket_system):
    assert ticket_system.status("T-nope").status_code == 404
    response = ticket_system.close("T-nope")
    assert response.status_code == 202
    assert response.get_json()["outcome"] == "unknown_ticket"
    assert ticket_system.status("T-nope").status_code == 404


def test_a_purge_ends_the_live_grants_and_keeps_when_an_ended_one_ended(
    app, agent, ticket_system, submitted_ticket
):
    """One statement erases every grant's token and ends the live ones: a grant its agent ended
    earlier keeps that time, the live one ends at the purge."""
    agent.login()
    assert agent.request_access(submitted_ticket).status_code == 302
    ended_id = agent.current_grant_id(submitted_ticket)
    response = agent.post(
        f"/tickets/{submitted_ticket}/grants/{ended_id}/end", {}, f"/tickets/{submitted_ticket}"
    )
    assert response.status_code == 302
    assert agent.request_access(submitted_ticket).status_code == 302
    live_id = agent.current_grant_id(submitted_ticket)
    assert live_id != ended_id
    with app.app_context():
        ended_at = db.session.get(Grant, ended_id).revoked_at
        assert ended_at is not None and db.session.get(Grant, live_id).revoked_at is None

    assert ticket_system.close(submitted_ticket).status_code == 202
    assert run_worker_pass(app).jobs_completed["purge"] == 1
    with app.app_context():
        ended, live = (db.session.get(Grant, grant_id) for grant_id in (ended_id, live_id))
        assert ended.revoked_at == ended_at
        assert live.revoked_at is not None and live.revoked_at > ended_at
        assert ended.token_ciphertext is None and live.token_ciphertext is None
