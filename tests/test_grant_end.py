"""The reveal page's two server halves: a grant's status (polled, never a value) and "End my
access now", which revokes the grant's Vault token before it answers."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from vault_service.extensions import db
from vault_service.models import AuditEvent, Grant

from .conftest import SAMPLE_ITEMS
from .helpers import accessor_is_gone


def grant_row(app, grant_id: str) -> Grant:
    with app.app_context():
        grant = db.session.get(Grant, grant_id)
        db.session.expunge(grant)
        db.session.rollback()
        return grant


def test_status_of_a_live_grant_is_active_and_carries_no_value(agent, client, submitted_ticket):
    agent.login()
    agent.request_access(submitted_ticket)
    grant_id = agent.current_grant_id(submitted_ticket)
    response = client.get(
        f"/tickets/{submitted_ticket}/grants/{grant_id}/status",
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"active", "reason", "expires_at"}
    assert body["active"] is True and body["reason"] is None
    text = response.get_data(as_text=True)
    for item in SAMPLE_ITEMS:
        assert item["password"] not in text
    assert response.headers["Cache-Control"] == "no-store"


def test_status_says_closed_once_the_close_webhook_arrives(
    agent, client, ticket_system, submitted_ticket
):
    agent.login()
    agent.request_access(submitted_ticket)
    grant_id = agent.current_grant_id(submitted_ticket)
    assert ticket_system.close(submitted_ticket).status_code in (200, 202)
    body = client.get(f"/tickets/{submitted_ticket}/grants/{grant_id}/status").get_json()
    assert body == {**body, "active": False, "reason": "closed"}


def test_another_agents_grant_status_is_not_found(agent, client, submitted_ticket):
    agent.login()
    agent.request_access(submitted_ticket)
    grant_id = agent.current_grant_id(submitted_ticket)
    agent.create("bob")
    agent.login("bob")
    response = client.get(f"/tickets/{submitted_ticket}/grants/{grant_id}/status")
    assert response.status_code == 404
    response = client.get(f"/tickets/{submitted_ticket}/grants/no-such/status")
    assert response.status_code == 404


def test_end_my_access_revokes_the_token_in_vault_at_once_and_is_audited(
    app, agent, client, openbao, submitted_ticket
):
    agent.login()
    agent.request_access(submitted_ticket)
    grant_id = agent.current_grant_id(submitted_ticket)
    accessor = grant_row(app, grant_id).token_accessor
    assert not accessor_is_gone(openbao, accessor)

    response = agent.post(
        f"/tickets/{submitted_ticket}/grants/{grant_id}/end", {}, f"/tickets/{submitted_ticket}"
    )
    assert response.status_code == 302
    assert accessor_is_gone(openbao, accessor)  # Vault's word, not ours
    grant = grant_row(app, grant_id)
    assert grant.revoked_at is not None and grant.token_ciphertext is None
    body = client.get(f"/tickets/{submitted_ticket}/grants/{grant_id}/status").get_json()
    assert body["active"] is False and body["reason"] == "revoked"
    assert agent.reveal(submitted_ticket, grant_id).status_code == 403
    with app.app_context():
        revoked = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "access.revoked")
        ).all()
        assert [(e.actor, e.details["grant_id"]) for e in revoked] == [("agent:alice", grant_id)]
    # Again: nothing more happens, and it says so.
    again = agent.post(
        f"/tickets/{submitted_ticket}/grants/{grant_id}/end", {}, f"/tickets/{submitted_ticket}"
    )
    assert again.status_code == 302


@pytest.mark.parametrize("grant_id", ["no-such-grant", "x" * 200])
def test_ending_an_unknown_or_others_grant_is_404_and_changes_nothing(
    app, agent, client, openbao, submitted_ticket, grant_id
):
    agent.login()
    agent.request_access(submitted_ticket)
    mine = agent.current_grant_id(submitted_ticket)
    agent.create("bob")
    agent.login("bob")
    for target in (grant_id, mine):
        response = agent.post(
            f"/tickets/{submitted_ticket}/grants/{target}/end", {}, f"/tickets/{submitted_ticket}"
        )
        assert response.status_code == 404
    assert not accessor_is_gone(openbao, grant_row(app, mine).token_accessor)
