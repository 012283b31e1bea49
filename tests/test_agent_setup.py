"""Agents created with a one-time set-up link instead of a password typed by an admin: the token
kept only as a keyed hash, the link single-use and expiring (checked a second before and at the
boundary), the password policy applied, the second factor enrolled by the usual flow, every step
audited; the CLI twin prints a link that works the same way."""

from __future__ import annotations

import re
from datetime import timedelta

from freezegun import freeze_time
from sqlalchemy import select, text

from vault_service.clock import utcnow
from vault_service.extensions import db
from vault_service.models import Agent, AgentSetupLink, AuditEvent
from vault_service.services import totp
from vault_service.services.agent_setup import SETUP_LINK_TTL

from .conftest import AGENT_PASSWORD, AgentBrowser
from .helpers import csrf_token_of, own_details

NEW_PASSWORD = "copper lantern by the quay"
LINK = re.compile(r'<code id="setup-url" class="secret">http://localhost(/setup/[^<]+)</code>')


def create(admin: AgentBrowser, username: str = "dana", role: str = "agent"):
    return admin.post(
        "/admin/agents", {"username": username, "role": role}, token_page="/admin/agents"
    )


def link_of(response) -> str:
    match = LINK.search(response.get_data(as_text=True))
    assert match, response.get_data(as_text=True)
    return match.group(1)


def choose_password(client, path: str, password: str = NEW_PASSWORD, confirm: str | None = None):
    token = csrf_token_of(client.get(path).get_data(as_text=True))
    data = {"password": password, "confirm_password": password if confirm is None else confirm}
    return client.post(path, data={**data, "csrf_token": token})


def audit_of(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        rows = list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))
        db.session.expunge_all()
        db.session.rollback()
        return rows


def test_an_admin_creates_an_agent_who_chooses_a_password_and_enrols_once(app, admin_browser):
    response = create(admin_browser)
    assert response.status_code == 200
    path = link_of(response)
    token = path.rsplit("/", 1)[1]
    assert len(token) >= 43  # 256 random bits
    with app.app_context():
        dump = "\n".join(
            str(row) for row in db.session.execute(text("SELECT * FROM agent_setup_links"))
        )
        agents = db.session.execute(text("SELECT * FROM agents"))
        agents_dump = "\n".join(str(row) for row in agents)
        db.session.rollback()
    # Only a keyed hash of the token is stored; nothing of it anywhere in the rows.
    assert token not in dump and token not in agents_dump
    assert "dana" in admin_browser.client.get("/admin/agents").get_data(as_text=True)
    assert "Set-up pending" in admin_browser.client.get("/admin/agents").get_data(as_text=True)

    # No password works before the set-up (not even an empty one).
    newcomer = AgentBrowser(app.test_client(), app)
    assert newcomer.login("dana", password="", code="").status_code == 401
    assert newcomer.login("dana", password=AGENT_PASSWORD, code="").status_code == 401

    client = newcomer.client
    # Opening it twice spends nothing (mail scanners open links).
    assert client.get(path).status_code == 200
    page = client.get(path).get_data(as_text=True)
    assert "Welcome, dana" in page and 'autocomplete="new-password"' in page

    # The password policy applies, and a refused password leaves the link working.
    weak = choose_password(client, path, "password1234")
    assert weak.status_code == 400 and "most common passwords" in weak.get_data(as_text=True)
    differ = choose_password(client, path, NEW_PASSWORD, NEW_PASSWORD + "!")
    assert differ.status_code == 400 and "differ" in differ.get_data(as_text=True)

    done = choose_password(client, path)
    assert done.status_code == 302 and done.headers["Location"] == "/account/two-factor"
    # Spent: the same 410 page as any dead link, for GET and POST.
    gone = client.get(path)
    assert gone.status_code == 410 and "no longer valid" in gone.get_data(as_text=True)
    assert choose_password_direct(app.test_client(), path).status_code == 410

    # The usual enrolment follows: scan, confirm, recovery codes.
    enrol = client.get("/account/two-factor").get_data(as_text=True)
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', enrol).group(1).replace(" ", "")
    code = totp.code_at(secret, totp.time_step(utcnow()))
    confirmed = client.post(
        "/account/two-factor", data={"code": code, "csrf_token": csrf_token_of(enrol)}
    )
    assert confirmed.status_code == 200 and "recovery codes" in confirmed.get_data(as_text=True)
    assert client.get("/").status_code == 200

    # And the chosen password (with the factor) is the login from now on.
    fresh = AgentBrowser(app.test_client(), app)
    assert fresh.login("dana", NEW_PASSWORD, code="").status_code == 401
    assert fresh.login("dana", NEW_PASSWORD, fresh.totp_code("dana", secret)).status_code == 302

    [created] = audit_of(app, "agent.created")[-1:]
    assert created.actor == "agent:bob"
    assert own_details(created.details) == {
        "agent": "dana",
        "role": "agent",
        "password": "set-up link",
    }
    [issued] = audit_of(app, "agent.setup_link_issued")
    [completed] = audit_of(app, "agent.setup_completed")
    assert issued.actor == "agent:bob" and completed.actor == "agent:dana"
    assert issued.details["link_id"] == completed.details["link_id"]
    assert "Set-up pending" not in admin_browser.client.get("/admin/agents").get_data(as_text=True)


def choose_password_direct(client, path: str):
    """A POST without first loading the form (whose GET is already 410)."""
    token = csrf_token_of(client.get("/login").get_data(as_text=True))
    return client.post(
        path,
        data={"password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD, "csrf_token": token},
    )


def test_a_link_works_until_the_second_it_expires(app, admin_browser):
    path = link_of(create(admin_browser))
    with app.app_context():
        expires_at = db.session.scalar(select(AgentSetupLink.expires_at))
        created_at = db.session.scalar(select(AgentSetupLink.created_at))
        db.session.rollback()
    assert expires_at - created_at == SETUP_LINK_TTL
    client = app.test_client()
    with freeze_time(expires_at - timedelta(seconds=1)):
        assert client.get(path).status_code == 200
    with freeze_time(expires_at):
        assert client.get(path).status_code == 410
        assert choose_password_direct(client, path).status_code == 410
    with app.app_context():
        row = db.session.scalar(select(Agent).where(Agent.username == "dana"))
        pending_hash = row.password_hash
        db.session.rollback()
    # The expired link changed nothing; a new one replaces it, and only the new one works.
    again = admin_browser.post("/admin/agents/dana/setup-link", {}, token_page="/admin/agents")
    new_path = link_of(again)
    assert new_path != path and client.get(path).status_code == 410
    assert choose_password(client, new_path).status_code == 302
    with app.app_context():
        assert db.session.scalar(select(Agent.password_hash).where(Agent.username == "dana")) != (
            pending_hash
        )
        db.session.rollback()
    # Once the password is chosen, no new link can be issued (an admin cannot take it over).
    refused = admin_browser.post("/admin/agents/dana/setup-link", {}, token_page="/admin/agents")
    assert refused.status_code == 302
    page = admin_browser.client.get("/admin/agents").get_data(as_text=True)
    assert "already chosen a password" in page
    assert len(audit_of(app, "agent.setup_link_issued")) == 2


def test_a_disabled_agents_link_is_dead_and_bad_input_changes_nothing(app, admin_browser):
    path = link_of(create(admin_browser))
    admin_browser.post("/admin/agents/dana/disable", {}, token_page="/admin/agents")
    assert app.test_client().get(path).status_code == 410
    assert app.test_client().get("/setup/" + "x" * 300).status_code == 410
    assert app.test_client().get("/setup/not-a-token").status_code == 410

    before = len(audit_of(app, "agent.created"))
    for data in ({"username": "dana"}, {"username": "No Spaces!"}, {"username": "ed", "role": "x"}):
        response = admin_browser.post("/admin/agents", data, token_page="/admin/agents")
        assert response.status_code == 302
    page = admin_browser.client.get("/admin/agents").get_data(as_text=True)
    assert "An agent with that username exists." in page or "Role must be" in page
    assert len(audit_of(app, "agent.created")) == before
    with app.app_context():
        assert db.session.scalar(select(Agent).where(Agent.username == "ed")) is None
        db.session.rollback()


def test_cli_prints_a_set_up_link_that_works_once(app, runner):
    result = runner.invoke(args=["create-agent", "erin", "--role", "admin", "--setup-link"])
    assert result.exit_code == 0, result.output
    url = result.output.strip().splitlines()[-1]
    assert url.startswith("http://localhost/setup/")
    path = url.removeprefix("http://localhost")
    client = app.test_client()
    assert choose_password(client, path).status_code == 302
    assert client.get(path).status_code == 410
    [issued] = audit_of(app, "agent.setup_link_issued")
    assert issued.actor == "cli" and issued.details["agent"] == "erin"
    both = runner.invoke(args=["create-agent", "fay", "--setup-link", "--password-stdin"])
    assert both.exit_code == 2
