"""The admin console and its CLI twins: deny by default, every action audited, and a disabled
agent's sessions and grants end at once (the grant token checked gone through Vault's API)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from vault_service.clock import utcnow
from vault_service.extensions import db
from vault_service.models import Agent, AuditEvent, Grant, Job
from vault_service.services import jobs

from .conftest import AgentBrowser
from .helpers import accessor_is_gone


def audit_of(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        rows = list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))
        db.session.expunge_all()
        db.session.rollback()
        return rows


def agent_row(app, username: str) -> Agent:
    with app.app_context():
        agent = db.session.scalar(select(Agent).where(Agent.username == username))
        db.session.expunge(agent)
        db.session.rollback()
        return agent


def admin_post(browser: AgentBrowser, path: str, data: dict | None = None):
    return browser.post(path, data or {}, token_page="/admin/agents")


def test_disabling_an_agent_ends_their_session_and_revokes_their_grant_in_vault(
    app, client, agent, admin_browser, submitted_ticket, openbao
):
    agent.login()
    agent.request_access(submitted_ticket)
    grant_id = agent.current_grant_id(submitted_ticket)
    with app.app_context():
        accessor = db.session.get(Grant, grant_id).token_accessor
        db.session.rollback()
    assert not accessor_is_gone(openbao, accessor)

    response = admin_post(admin_browser, "/admin/agents/alice/disable")
    assert response.status_code == 302

    # At once: alice's next request is sent to the login page, her token is gone in Vault.
    after = client.get("/")
    assert after.status_code == 302 and after.headers["Location"].startswith("/login")
    assert accessor_is_gone(openbao, accessor)
    assert agent_row(app, "alice").disabled_at is not None
    [disabled] = audit_of(app, "agent.disabled")
    assert disabled.actor == "agent:bob" and disabled.details["agent"] == "alice"
    [revoked] = audit_of(app, "access.revoked")
    assert revoked.actor == "agent:bob" and revoked.details["grant_id"] == grant_id
    # And she cannot sign in again until enabled.
    agent.login()
    assert client.get("/").status_code == 302

    admin_post(admin_browser, "/admin/agents/alice/enable")
    assert agent_row(app, "alice").disabled_at is None
    assert [e.details["agent"] for e in audit_of(app, "agent.enabled")] == ["alice"]


def test_admin_unlocks_resets_second_factor_and_changes_role_all_audited(app, agent, admin_browser):
    with app.app_context():
        alice = db.session.scalar(select(Agent).where(Agent.username == "alice"))
        alice.failed_logins, alice.locked_until = 5, utcnow() + timedelta(minutes=15)
        db.session.commit()
    page = admin_browser.client.get("/admin/agents").get_data(as_text=True)
    assert "Locked until" in page and "Unlock" in page and "password_hash" not in page

    admin_post(admin_browser, "/admin/agents/alice/unlock")
    row = agent_row(app, "alice")
    assert row.locked_until is None and row.failed_logins == 0
    assert audit_of(app, "agent.unlocked")[-1].actor == "agent:bob"

    admin_post(admin_browser, "/admin/agents/alice/reset-totp")
    assert agent_row(app, "alice").totp_enrolled_at is None
    assert audit_of(app, "agent.totp_reset")[-1].actor == "agent:bob"

    nonce = agent_row(app, "alice").session_nonce
    admin_post(admin_browser, "/admin/agents/alice/role", {"role": "admin"})
    row = agent_row(app, "alice")
    assert row.role == "admin" and row.session_nonce != nonce
    [changed] = audit_of(app, "agent.role_changed")
    assert {k: changed.details[k] for k in ("agent", "old", "new")} == {
        "agent": "alice",
        "old": "agent",
        "new": "admin",
    }

    # Bad input changes nothing: an unknown role, and an admin demoting themselves.
    admin_post(admin_browser, "/admin/agents/alice/role", {"role": "root"})
    admin_post(admin_browser, "/admin/agents/bob/role", {"role": "agent"})
    assert agent_row(app, "alice").role == "admin" and agent_row(app, "bob").role == "admin"
    assert admin_post(admin_browser, "/admin/agents/nobody/unlock").status_code == 404


def test_admin_lists_and_revokes_anyones_grant(
    app, agent, admin_browser, submitted_ticket, openbao
):
    agent.login()
    agent.request_access(submitted_ticket, reason="look at the ftp")
    grant_id = agent.current_grant_id(submitted_ticket)
    page = admin_browser.client.get("/admin/grants").get_data(as_text=True)
    assert "look at the ftp" in page and "alice" in page and grant_id in page
    path = f"/admin/tickets/{submitted_ticket}/grants/{grant_id}/revoke"
    assert admin_browser.post(path, {}, token_page="/admin/grants").status_code == 302
    with app.app_context():
        grant = db.session.get(Grant, grant_id)
        assert grant.revoked_at is not None
        accessor = grant.token_accessor
        db.session.rollback()
    assert accessor_is_gone(openbao, accessor)
    assert audit_of(app, "access.revoked")[-1].actor == "agent:bob"
    assert "Nobody holds access" in admin_browser.client.get("/admin/grants").get_data(as_text=True)


def test_failing_jobs_of_every_kind_are_listed_and_retried_now_audited(app, admin_browser):
    later = utcnow() + timedelta(hours=3)
    with app.app_context():
        job = Job(
            kind="event_delivery",
            payload={},
            attempts=jobs.FAILING_AFTER_ATTEMPTS + 1,
            next_attempt_at=later,
            last_error="HTTP 503 from the receiver",
        )
        db.session.add(job)
        db.session.commit()
        job_id = job.id
    page = admin_browser.client.get("/admin/jobs").get_data(as_text=True)
    assert "event_delivery" in page and "HTTP 503 from the receiver" in page
    response = admin_browser.post(f"/admin/jobs/{job_id}/retry", {}, token_page="/admin/jobs")
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(Job, job_id).next_attempt_at <= utcnow()
        db.session.rollback()
    [retried] = audit_of(app, "job.retried")
    assert retried.actor == "agent:bob" and retried.details["job_id"] == job_id
    unknown = admin_browser.post("/admin/jobs/no-such-job/retry", {}, token_page="/admin/jobs")
    assert unknown.status_code == 404


def test_cli_lists_disables_enables_and_unlocks_agents(
    app, runner, agent, openbao, client, submitted_ticket
):
    agent.login()
    agent.request_access(submitted_ticket)
    with app.app_context():
        accessor = db.session.scalar(select(Grant.token_accessor))
        db.session.rollback()
    listed = runner.invoke(args=["list-agents"])
    assert listed.exit_code == 0 and listed.output == "alice\tagent\tactive\ttotp\n"

    disabled = runner.invoke(args=["disable-agent", "alice"])
    assert disabled.exit_code == 0, disabled.output
    assert "1 live grant(s) revoked" in disabled.output
    assert accessor_is_gone(openbao, accessor)
    assert client.get("/").status_code == 302
    assert runner.invoke(args=["list-agents"]).output == "alice\tagent\tdisabled\ttotp\n"

    assert runner.invoke(args=["enable-agent", "alice"]).output == "alice enabled\n"
    assert runner.invoke(args=["enable-agent", "alice"]).output == "alice was not disabled\n"
    with app.app_context():
        db.session.execute(Agent.__table__.update().values(failed_logins=5, locked_until=utcnow()))
        db.session.commit()
    assert runner.invoke(args=["unlock-agent", "alice"]).output == "alice unlocked\n"
    assert audit_of(app, "agent.unlocked")[-1].actor == "cli"
    missing = runner.invoke(args=["disable-agent", "nobody"])
    assert missing.exit_code == 1 and "No agent" in missing.output
