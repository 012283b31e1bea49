"""Weak agent passwords are refused, and the message says why (issue 13 item 5, ASVS 6.2.4 and
6.2.11): common and breached passwords, the username inside, and trivially repetitive ones."""

from __future__ import annotations

import pytest

from vault_service.errors import BadRequest
from vault_service.services.agents import create_agent, set_password
from vault_service.services.passwords import common_passwords, password_problem

from .conftest import AGENT_PASSWORD


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("password1234", "most common passwords"),
        ("PASSWORD1234", "most common passwords"),
        ("qwertyuiop123", "most common passwords"),
        ("aaaaaaaaaaaa", "repeats a short pattern"),
        ("bob-bob-bob-bob", "contain the username"),
        ("xyz-xyz-xyz-xyz", "repeats a short pattern"),
        ("abcabcabcabcab", "repeats a short pattern"),
        ("aabbaabbaabba1", "different characters"),
        ("my name is Bob, hello", "contain the username"),
        ("short1!", "at least 12 characters"),
    ],
)
def test_a_weak_password_is_refused_with_the_reason(app, password, why):
    with app.app_context(), pytest.raises(BadRequest) as refused:
        create_agent("bob", password, actor="test")
    assert why in refused.value.message
    assert why in refused.value.fields["password"]


def test_a_good_password_is_accepted_and_the_list_is_the_top_thirty_thousand(app):
    assert len(common_passwords()) >= 10_000
    assert {"123456", "password", "iloveyou", "dragon"} <= common_passwords()
    assert password_problem(AGENT_PASSWORD, "alice") is None
    assert password_problem("Tr0ubadour&3-elephants", "bob") is None
    with app.app_context():
        create_agent("carol", "vivid-otter-quilts-harbour", actor="test")


def test_an_admin_setting_a_password_and_an_agent_changing_theirs_face_the_same_checks(
    app, client, agent
):
    with app.app_context(), pytest.raises(BadRequest) as refused:
        set_password("alice", "alice-in-wonderland", actor="admin")
    assert "username" in refused.value.message
    agent.login()
    response = agent.post(
        "/account/password",
        {
            "current_password": AGENT_PASSWORD,
            "new_password": "iloveyou1234",
            "confirm_password": "iloveyou1234",
        },
        token_page="/account/password",
    )
    assert response.status_code == 400
    assert "most common passwords" in response.get_data(as_text=True)
