"""What an access request is read against: the ticket's live lease, and whether it holds items
(services/access.py read_grant_target, one query), before anything is asked of Vault."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from vault_service.errors import Conflict, NotFound
from vault_service.extensions import db
from vault_service.models import AuditEvent, Lease, LeaseStatus, Ticket
from vault_service.services.access import read_grant_target
from vault_service.services.agents import create_agent

from .conftest import SAMPLE_ITEMS
from .helpers import run_worker_pass

pytestmark = pytest.mark.usefixtures("openbao")


def _agent(app):
    with app.app_context():
        agent = create_agent("asker", "correct horse battery staple", actor="test")
        db.session.remove()
        return agent


def _target(app, agent, ticket_ref: str):
    with app.app_context():
        try:
            return read_grant_target(agent, ticket_ref, 1800)
        finally:
            db.session.remove()


def _refusals(app, ticket_ref: str) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.ticket_ref == ticket_ref, AuditEvent.outcome == "denied")
        )


def test_an_unknown_ticket_is_not_found(app):
    with pytest.raises(NotFound):
        _target(app, _agent(app), "T-unknown")


def test_a_ticket_with_nothing_submitted_has_no_credentials_yet(app, ticket_system):
    assert ticket_system.create_link("T-empty").status_code == 201
    with pytest.raises(Conflict, match="no credentials yet"):
        _target(app, _agent(app), "T-empty")


def test_a_submitted_ticket_is_read_with_its_live_lease(app, submitted_ticket):
    target = _target(app, _agent(app), submitted_ticket)
    with app.app_context():
        lease = db.session.scalar(select(Lease).join(Ticket).where(Ticket.ref == submitted_ticket))
    assert target.lease_id == lease.id and lease.status == LeaseStatus.ACTIVE
    assert target.lease_token_ciphertext == lease.token_ciphertext
    assert 0 < target.ttl_seconds <= 1800


def test_a_closed_ticket_is_refused_and_the_refusal_audited(app, ticket_system, submitted_ticket):
    agent = _agent(app)
    assert ticket_system.close(submitted_ticket).status_code == 202
    with pytest.raises(Conflict, match="closed"):
        _target(app, agent, submitted_ticket)
    assert _refusals(app, submitted_ticket) == 1


def test_a_reopened_ticket_is_read_with_its_new_lease_not_the_purged_one(
    app, client, ticket_system, submitted_ticket
):
    agent = _agent(app)
    assert ticket_system.close(submitted_ticket).status_code == 202
    run_worker_pass(app)  # the purge: the first lease is purged
    assert ticket_system.send_event("ticket.reopened", submitted_ticket).status_code in (200, 202)
    with pytest.raises(Conflict, match="closed"):
        _target(app, agent, submitted_ticket)  # no live lease until the next link makes one
    path = ticket_system.link_path(submitted_ticket)
    assert client.post(path, json={"items": SAMPLE_ITEMS}).status_code == 201
    target = _target(app, agent, submitted_ticket)
    with app.app_context():
        leases = db.session.scalars(
            select(Lease).join(Ticket).where(Ticket.ref == submitted_ticket)
        ).all()
    statuses = {lease.id: lease.status for lease in leases}
    assert len(statuses) == 2
    assert statuses[target.lease_id] == LeaseStatus.ACTIVE
    assert sorted(statuses.values()) == sorted([LeaseStatus.ACTIVE, LeaseStatus.PURGED])
