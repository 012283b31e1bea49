"""Agent login and sessions: uniform failures, server-side logout, safe redirects, the admin's
second-factor reset, and TOTP secrets that fail closed under another secret key."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from vault_service.extensions import db
from vault_service.models import Agent, AuditEvent, RecoveryCode
from vault_service.services.agents import disable_agent

from .helpers import own_details


def test_unknown_user_and_wrong_password_get_the_same_answer(agent, client):
    unknown = agent.login(username="nobody")
    wrong = agent.login(password="not the password")
    assert unknown.status_code == wrong.status_code == 401

    def without_csrf(response) -> str:
        page = response.get_data(as_text=True)
        return re.sub(r'name="csrf_token" value="[^"]+"', "", page)

    assert without_csrf(unknown) == without_csrf(wrong)
    assert client.get("/").status_code == 302


def test_session_cookie_replayed_after_logout_is_refused(agent, client, app):
    agent.login()
    stolen = client.get_cookie("session").value
    assert client.get("/").status_code == 200
    agent.post("/logout", {})
    attacker = app.test_client()
    attacker.set_cookie("session", stolen)
    response = attacker.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_disabling_an_agent_ends_its_live_sessions(agent, client, app):
    agent.login()
    assert client.get("/").status_code == 200
    with app.app_context():
        alice = db.session.scalar(select(Agent).where(Agent.username == "alice"))
        disable_agent(alice, actor="test")
    assert client.get("/").status_code == 302
    assert agent.login().status_code == 401


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/tickets/T-1", "/tickets/T-1"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
    ],
)
def test_login_redirects_only_to_same_origin_paths(agent, client, target, expected):
    response = client.post(
        "/login",
        data={
            "username": "alice",
            "password": "correct horse battery staple",
            "code": agent.totp_code(),
            "next": target,
            "csrf_token": agent.csrf_token(),
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == expected


def test_a_disabled_account_gets_the_same_answer_as_a_wrong_password(agent, client, app):
    agent.create("bob")
    with app.app_context():
        disable_agent(db.session.scalar(select(Agent).where(Agent.username == "bob")), actor="t")
    disabled = agent.login(username="bob")
    wrong = agent.login(password="not the password")
    assert disabled.status_code == wrong.status_code == 401
    strip = re.compile(r'name="csrf_token" value="[^"]+"')
    assert strip.sub("", disabled.get_data(as_text=True)) == strip.sub(
        "", wrong.get_data(as_text=True)
    )


def test_a_failed_login_for_an_unknown_name_records_no_name(agent, app):
    agent.login(username="my-password-typed-here")
    with app.app_context():
        last = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert (last.action, last.actor, own_details(last.details)) == (
            "agent.login",
            "anonymous",
            {"reason": "unknown user"},
        )
        assert "my-password-typed-here" not in json.dumps(last.details)


def test_reset_totp_command_ends_sessions_and_sends_the_agent_back_to_enrolment(
    agent, client, app, runner
):
    agent.login()
    stolen = client.get_cookie("session").value
    result = runner.invoke(args=["reset-totp", "alice"])
    assert result.exit_code == 0, result.output
    attacker = app.test_client()
    attacker.set_cookie("session", stolen)
    assert attacker.get("/").headers["Location"].startswith("/login")
    with app.app_context():
        assert db.session.scalar(select(func.count(RecoveryCode.id))) == 0
    response = agent.login(code="")
    assert response.headers["Location"] == "/account/two-factor"
    assert runner.invoke(args=["reset-totp", "nobody"]).exit_code != 0


def test_totp_secrets_under_a_replaced_secret_key_fail_closed(
    agent, make_settings, ticket_system_factory
):
    from vault_service import create_app

    rotated = create_app(make_settings(secret_key="a-completely-different-key-" * 2))
    _, browser, _ = ticket_system_factory(rotated)  # same database, alice exists
    assert browser.login().status_code == 401
    with rotated.app_context():
        last = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert own_details(last.details) == {"reason": "totp secret unreadable"}
