"""Agent login and sessions: uniform failures, server-side logout, safe redirects."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from vault_service.extensions import db
from vault_service.models import Agent
from vault_service.services.agents import disable_agent


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
            "next": target,
            "csrf_token": agent.csrf_token(),
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == expected
