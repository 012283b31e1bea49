"""Four-eyes approval (VAULT_SERVICE_ACCESS_APPROVAL=required): a request mints nothing in Vault
until another agent with the admin role approves it; the window Vault enforces starts at the
approval; nobody decides their own request; a lapsed or closed request cannot be approved; every
step is audited and reported as an event. Vault's state is read through its own API (root
client, outside the app), never from the app's word."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select, update

from vault_service import create_app
from vault_service.clock import utcnow
from vault_service.config import ConfigError, load_settings
from vault_service.errors import Conflict, Forbidden
from vault_service.extensions import db
from vault_service.models import AccessRequest, AccessRequestStatus, Agent, AuditEvent, Grant
from vault_service.services import access, approvals
from vault_service.transactions import transaction

from .conftest import EVENTS_KEY, SAMPLE_ITEMS, AgentBrowser
from .helpers import PRODUCTION_ENVIRONMENT as GOOD
from .helpers import (
    accessor_is_gone,
    grant_tokens_of,
    lease_of,
    own_details,
    run_worker_pass,
)

WINDOW_MINUTES = 20


@pytest.fixture
def settings(make_settings, receiver):
    return make_settings(
        access_approval="required", events_url=receiver.url, events_secrets=(EVENTS_KEY,)
    )


def requests_of(app) -> list[AccessRequest]:
    with app.app_context():
        rows = list(db.session.scalars(select(AccessRequest).order_by(AccessRequest.created_at)))
        db.session.expunge_all()
        db.session.rollback()
        return rows


def records(app, *actions: str) -> list[AuditEvent]:
    with app.app_context():
        rows = list(
            db.session.scalars(
                select(AuditEvent).where(AuditEvent.action.in_(actions)).order_by(AuditEvent.id)
            )
        )
        db.session.expunge_all()
        db.session.rollback()
        return rows


def grants_of(app) -> list[Grant]:
    with app.app_context():
        rows = list(db.session.scalars(select(Grant)))
        db.session.expunge_all()
        db.session.rollback()
        return rows


def decide(browser: AgentBrowser, request_id: str, decision: str):
    return browser.post(
        f"/admin/access-requests/{request_id}/{decision}", {}, token_page="/admin/approvals"
    )


def ask(agent: AgentBrowser, ticket_ref: str) -> str:
    """Alice asks for access; returns her pending request's id."""
    response = agent.request_access(ticket_ref, minutes=WINDOW_MINUTES, reason="check the sftp")
    assert response.status_code == 302
    [request] = [r for r in requests_of(agent.app) if r.status == AccessRequestStatus.PENDING]
    return request.id


def load_agent(app, username: str) -> Agent:
    agent = db.session.scalar(select(Agent).where(Agent.username == username))
    assert agent is not None
    return agent


def test_a_request_mints_nothing_in_vault_until_an_admin_approves_and_the_window_starts_then(
    app, client, agent, admin_browser, submitted_ticket, openbao
):
    agent.login()
    request_id = ask(agent, submitted_ticket)
    [original] = requests_of(app)
    assert original.expires_at - original.created_at == timedelta(minutes=30)
    lease = lease_of(app, submitted_ticket)

    # Pending: Vault holds no grant token of this lease, the app no grant; the page says so.
    assert grant_tokens_of(openbao, lease) == []
    assert grants_of(app) == []
    page = client.get(f"/tickets/{submitted_ticket}").get_data(as_text=True)
    assert "Waiting for approval" in page and "Reveal credentials" not in page
    assert 'name="grant_id"' not in page
    assert agent.reveal(submitted_ticket, "no-grant").status_code == 403

    # The request was made 10 minutes ago (still pending: the default lapse is 30 min).
    asked_at = utcnow() - timedelta(minutes=10)
    with app.app_context(), transaction() as session:
        session.execute(
            update(AccessRequest)
            .where(AccessRequest.id == request_id)
            .values(created_at=asked_at, expires_at=asked_at + timedelta(minutes=30))
        )

    before = time.time()
    response = decide(admin_browser, request_id, "approve")
    after = time.time()
    assert response.status_code == 302 and response.headers["Location"] == "/admin/approvals"

    # Now Vault holds exactly one grant token of the lease: the grant's, created at the approval,
    # with the asked window as its TTL (not what is left of a window counted from the request).
    [grant] = grants_of(app)
    [token] = grant_tokens_of(openbao, lease)
    assert token["accessor"] == grant.token_accessor
    assert before - 1 <= token["creation_time"] <= after + 1
    assert token["creation_ttl"] == WINDOW_MINUTES * 60
    assert token["explicit_max_ttl"] == WINDOW_MINUTES * 60
    vault_expiry = datetime.fromisoformat(token["expire_time"])
    assert abs((vault_expiry - grant.expires_at).total_seconds()) <= 2
    assert grant.expires_at - asked_at > timedelta(minutes=WINDOW_MINUTES + 9)

    [request] = requests_of(app)
    assert request.status == AccessRequestStatus.APPROVED and request.grant_id == grant.id
    with app.app_context():
        assert request.decided_by_id == load_agent(app, "bob").id
        db.session.rollback()

    # The requester reveals as without approval.
    revealed = agent.reveal(submitted_ticket)
    assert revealed.status_code == 200
    assert SAMPLE_ITEMS[0]["password"] in revealed.get_data(as_text=True)

    # Audited, in order, by whom: asked by alice, approved by bob, granted to alice.
    trail = records(app, "access.requested", "access.approved", "access.granted")
    assert [(r.action, r.actor, r.outcome) for r in trail] == [
        ("access.requested", "agent:alice", "success"),
        ("access.approved", "agent:bob", "success"),
        ("access.granted", "agent:alice", "success"),
    ]
    assert own_details(trail[0].details) == {
        "access_request_id": request_id,
        "reason": "check the sftp",
        "duration_seconds": WINDOW_MINUTES * 60,
        "expires_at": original.expires_at.isoformat(),
    }
    assert trail[1].details["grant_id"] == grant.id and trail[1].details["agent"] == "alice"


def test_nobody_decides_their_own_request_and_the_refusal_changes_nothing_but_the_trail(
    app, agent, openbao, submitted_ticket
):
    """An admin's own request: approve and deny are 403, audited; it stays pending, unminted."""
    agent.create("carol", role="admin")
    carol = AgentBrowser(app.test_client(), app)
    carol.login("carol")
    response = carol.request_access(submitted_ticket, minutes=WINDOW_MINUTES)
    assert response.status_code == 302
    [request] = requests_of(app)
    page = carol.client.get("/admin/approvals").get_data(as_text=True)
    assert "another admin decides it" in page
    assert f"/admin/access-requests/{request.id}/approve" not in page

    for decision in ("approve", "deny"):
        refused = decide(carol, request.id, decision)
        assert refused.status_code == 403
        assert "another admin must" in refused.get_data(as_text=True)
    [after] = requests_of(app)
    assert after.status == AccessRequestStatus.PENDING and after.decided_by_id is None
    assert grants_of(app) == []
    assert grant_tokens_of(openbao, lease_of(app, submitted_ticket)) == []
    refusals = records(app, "access.approved", "access.denied")
    assert [(r.action, r.actor, r.outcome, r.details["reason"]) for r in refusals] == [
        ("access.approved", "agent:carol", "denied", "own request"),
        ("access.denied", "agent:carol", "denied", "own request"),
    ]


def test_an_agent_without_the_admin_role_cannot_decide_even_through_the_service(
    app, settings, vault, client, agent, submitted_ticket, openbao
):
    agent.create("dave")
    agent.login()
    request_id = ask(agent, submitted_ticket)
    dave = AgentBrowser(app.test_client(), app)
    dave.login("dave")
    for decision in ("approve", "deny"):
        assert decide(dave, request_id, decision).status_code == 403
    with app.app_context():
        with pytest.raises(Forbidden):
            approvals.approve_request(settings, vault, load_agent(app, "dave"), request_id)
        with pytest.raises(Forbidden):
            approvals.deny_request(load_agent(app, "dave"), request_id)
        db.session.rollback()
    assert requests_of(app)[0].status == AccessRequestStatus.PENDING
    assert grant_tokens_of(openbao, lease_of(app, submitted_ticket)) == []
    assert [r.details["reason"] for r in records(app, "access.approved", "access.denied")] == [
        "not an admin",
        "not an admin",
    ]


def test_a_request_lapses_exactly_at_its_deadline_and_then_cannot_be_approved(
    app, settings, vault, agent, admin_browser, submitted_ticket, openbao
):
    agent.login()
    first = ask(agent, submitted_ticket)
    [pending] = requests_of(app)
    assert pending.expires_at - pending.created_at == timedelta(minutes=30)

    with app.app_context():
        bob = load_agent(app, "bob")
        # One second before the deadline it is still pending (denied here: no Vault needed)...
        with freeze_time(pending.expires_at - timedelta(seconds=1)):
            approvals.deny_request(bob, first)
        db.session.rollback()
    assert requests_of(app)[0].status == AccessRequestStatus.DENIED

    second = ask(agent, submitted_ticket)
    deadline = next(r for r in requests_of(app) if r.id == second).expires_at
    with app.app_context():
        bob = load_agent(app, "bob")
        # ...exactly at it, it has lapsed: neither approved nor denied, nothing minted.
        with freeze_time(deadline):
            with pytest.raises(Conflict, match="expired"):
                approvals.approve_request(settings, vault, bob, second)
            with pytest.raises(Conflict, match="expired"):
                approvals.deny_request(bob, second)
        db.session.rollback()
    assert grant_tokens_of(openbao, lease_of(app, submitted_ticket)) == []
    assert grants_of(app) == []
    trail = records(app, "access.approved", "access.denied")
    assert [(r.action, r.outcome, r.details.get("reason")) for r in trail] == [
        ("access.denied", "success", None),
        ("access.approved", "denied", "request expired"),
        ("access.denied", "denied", "request expired"),
    ]

    # Through the console once it has really lapsed: a clear message, no grant.
    with app.app_context(), transaction() as session:
        session.execute(
            update(AccessRequest)
            .where(AccessRequest.id == second)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    response = decide(admin_browser, second, "approve")
    assert response.status_code == 302
    follow = admin_browser.client.get(response.headers["Location"]).get_data(as_text=True)
    assert "expired before anyone approved it" in follow
    assert grants_of(app) == []
    # The requester is told, and may ask again.
    page = agent.client.get(f"/tickets/{submitted_ticket}").get_data(as_text=True)
    assert "lapsed before anyone approved it" in page and "Request access" in page


def test_closing_the_ticket_ends_its_pending_requests_and_none_can_be_approved_after(
    app, agent, admin_browser, ticket_system, submitted_ticket, openbao
):
    agent.login()
    request_id = ask(agent, submitted_ticket)
    assert ticket_system.close(submitted_ticket).status_code == 202
    [request] = requests_of(app)
    assert request.status == AccessRequestStatus.CLOSED and request.decided_at is not None
    [closed] = records(app, "access.request_closed")
    assert closed.details["access_request_id"] == request_id

    assert "No access request is waiting" in admin_browser.client.get("/admin/approvals").get_data(
        as_text=True
    )
    response = decide(admin_browser, request_id, "approve")
    assert response.status_code == 302
    assert grants_of(app) == []
    assert requests_of(app)[0].status == AccessRequestStatus.CLOSED
    run_worker_pass(app)  # the purge: nothing of the lease is left to mint from either
    assert grant_tokens_of(openbao, lease_of(app, submitted_ticket)) == []


def test_a_second_request_while_one_waits_is_refused_and_a_denial_mints_nothing(
    app, client, agent, admin_browser, submitted_ticket, openbao
):
    agent.login()
    request_id = ask(agent, submitted_ticket)
    again = agent.request_access(submitted_ticket, minutes=5, reason="again")
    assert again.status_code == 302
    assert "already waiting for approval" in client.get(again.headers["Location"]).get_data(
        as_text=True
    )
    assert len(requests_of(app)) == 1

    # Bob sees it on the ticket page too, and denies it from there (back to the ticket).
    page = admin_browser.client.get(f"/tickets/{submitted_ticket}").get_data(as_text=True)
    assert "check the sftp" in page and f"/admin/access-requests/{request_id}/deny" in page
    response = admin_browser.post(
        f"/admin/access-requests/{request_id}/deny",
        {"back": "ticket", "ticket_ref": submitted_ticket},
        token_page=f"/tickets/{submitted_ticket}",
    )
    assert response.headers["Location"] == f"/tickets/{submitted_ticket}"
    assert requests_of(app)[0].status == AccessRequestStatus.DENIED
    assert grants_of(app) == []
    assert grant_tokens_of(openbao, lease_of(app, submitted_ticket)) == []
    assert "denied by bob" in client.get(f"/tickets/{submitted_ticket}").get_data(as_text=True)
    # A denied request is decided: approving it now is refused and changes nothing.
    decide(admin_browser, request_id, "approve")
    assert grants_of(app) == [] and requests_of(app)[0].status == AccessRequestStatus.DENIED
    assert decide(admin_browser, "no-such-request", "approve").status_code == 404


def test_the_window_is_the_one_asked_even_when_approved_late_through_the_service(
    app, settings, vault, agent, submitted_ticket
):
    """request_access returns the pending request (no grant); the approval returns the grant."""
    agent.create("bob", role="admin")
    with app.app_context():
        alice, bob = load_agent(app, "alice"), load_agent(app, "bob")
        db.session.commit()  # ends the read (SQLite's write lock) before the service's own
        pending = access.request_access(
            settings, vault, alice, submitted_ticket, reason="svc", duration_seconds=600
        )
        assert isinstance(pending, AccessRequest)
        grant = approvals.approve_request(settings, vault, bob, pending.id)
        assert grant.agent_id == alice.id
        assert timedelta(seconds=598) <= grant.expires_at - utcnow() <= timedelta(seconds=600)
        # Decided: a second approval is refused (no second grant).
        with pytest.raises(Conflict, match="already approved"):
            approvals.approve_request(settings, vault, bob, pending.id)
        db.session.rollback()
    assert len(grants_of(app)) == 1


def test_the_setting_is_none_by_default_and_anything_but_none_or_required_is_refused():
    defaults = load_settings(GOOD)
    assert defaults.access_approval == "none" and not defaults.approval_required
    assert defaults.access_request_ttl_seconds == 30 * 60
    on = load_settings({**GOOD, "VAULT_SERVICE_ACCESS_APPROVAL": " Required "})
    assert on.approval_required
    for value in ("yes", "true", "requried", "1"):
        with pytest.raises(ConfigError) as error:
            load_settings({**GOOD, "VAULT_SERVICE_ACCESS_APPROVAL": value})
        assert error.value.problems == ["VAULT_SERVICE_ACCESS_APPROVAL must be none or required"]
    with pytest.raises(ConfigError, match="ACCESS_REQUEST_TTL_SECONDS must be at least 60"):
        load_settings({**GOOD, "VAULT_SERVICE_ACCESS_REQUEST_TTL_SECONDS": "30"})


# -- events ------------------------------------------------------------------------------------


def test_each_step_is_an_event_with_exactly_its_fields_and_no_value(
    app, agent, admin_browser, submitted_ticket, receiver
):
    """Requested, approved (then granted), requested, denied: delivered in that order, each
    verified by the independent `standardwebhooks` package; no value, token or link in any."""
    agent.login()
    first = ask(agent, submitted_ticket)
    decide(admin_browser, first, "approve")
    with app.app_context(), transaction() as session:
        # Alice's grant ends early, so she asks again; bob denies this one.
        session.execute(update(Grant).values(revoked_at=utcnow()))
    second = ask(agent, submitted_ticket)
    decide(admin_browser, second, "deny")
    for _ in range(10):
        run_worker_pass(app)
        if len(receiver.events_of(submitted_ticket)) >= 6:
            break
    delivered = receiver.events_of(submitted_ticket)
    assert [e["type"] for e in delivered] == [
        "credentials.submitted",
        "access.requested",
        "access.approved",
        "access.granted",
        "access.requested",
        "access.denied",
    ]
    [granted] = grants_of(app)
    pending_until = {r.id: r.expires_at.isoformat() for r in requests_of(app)}
    data = [e["data"] for e in delivered[1:]]
    assert data == [
        {
            "ticket_ref": submitted_ticket,
            "access_request_id": first,
            "agent": "alice",
            "reason": "check the sftp",
            "duration_seconds": WINDOW_MINUTES * 60,
            "pending_until": pending_until[first],
        },
        {
            "ticket_ref": submitted_ticket,
            "access_request_id": first,
            "agent": "alice",
            "approved_by": "bob",
        },
        {
            "ticket_ref": submitted_ticket,
            "agent": "alice",
            "reason": "check the sftp",
            "expires_at": granted.expires_at.isoformat(),
        },
        {
            "ticket_ref": submitted_ticket,
            "access_request_id": second,
            "agent": "alice",
            "reason": "check the sftp",
            "duration_seconds": WINDOW_MINUTES * 60,
            "pending_until": pending_until[second],
        },
        {
            "ticket_ref": submitted_ticket,
            "access_request_id": second,
            "agent": "alice",
            "denied_by": "bob",
        },
    ]
    bodies = b"".join(a.body for a in receiver.attempts)
    for item in SAMPLE_ITEMS:
        for value in item.values():
            if value not in ("sftp", "admin_panel", "22"):
                assert value.encode() not in bodies
    assert granted.token_accessor.encode() not in bodies


def test_with_approval_none_a_request_is_granted_at_once_and_no_request_is_recorded(
    make_settings, ticket_system_factory, openbao
):
    app = create_app(make_settings())
    try:
        ticket_system, alice, client = ticket_system_factory(app)
        ref = "T-none"
        path = ticket_system.link_path(ref)
        assert client.post(path, json={"items": SAMPLE_ITEMS}).status_code == 201
        alice.login()
        page = client.get(f"/tickets/{ref}").get_data(as_text=True)
        assert "An admin must approve" not in page
        response = alice.request_access(ref)
        assert "Access granted." in client.get(response.headers["Location"]).get_data(as_text=True)
        assert requests_of(app) == []
        [grant] = grants_of(app)
        [token] = grant_tokens_of(openbao, lease_of(app, ref))
        assert token["accessor"] == grant.token_accessor
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.mark.parametrize("meanwhile", ["another admin denies it", "the ticket closes"])
def test_a_request_decided_or_closed_while_its_token_is_minted_leaves_no_grant_and_no_token(
    app,
    vault,
    agent,
    admin_browser,
    ticket_system,
    submitted_ticket,
    openbao,
    monkeypatch,
    meanwhile,
):
    """The approval's own check passed; then, while Vault mints (no transaction is open), a real
    second request changes the state. The approval's write under the lock sees it: no grant, the
    minted token revoked in Vault, the refusal audited."""
    agent.create("carol", role="admin")
    carol = AgentBrowser(app.test_client(), app)
    carol.login("carol")
    agent.login()
    request_id = ask(agent, submitted_ticket)
    minted = []
    mint = vault.mint_grant_token

    def mint_while_something_happens(lease_token: str, ttl_seconds: int):
        issued = mint(lease_token, ttl_seconds)
        minted.append(issued.accessor)
        if meanwhile == "the ticket closes":
            assert ticket_system.close(submitted_ticket).status_code == 202
        else:
            assert decide(carol, request_id, "deny").status_code == 302
        return issued

    monkeypatch.setattr(vault, "mint_grant_token", mint_while_something_happens)
    response = decide(admin_browser, request_id, "approve")
    assert response.status_code == 302
    [accessor] = minted
    assert grants_of(app) == []
    assert accessor_is_gone(openbao, accessor)
    expected = AccessRequestStatus.CLOSED if "closes" in meanwhile else AccessRequestStatus.DENIED
    assert requests_of(app)[0].status == expected
    [refused] = [r for r in records(app, "access.approved") if r.outcome == "denied"]
    assert refused.actor == "agent:bob"
    assert refused.details["reason"] == (
        "ticket closed" if "closes" in meanwhile else "request denied"
    )
