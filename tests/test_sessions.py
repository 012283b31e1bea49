"""Agent sessions and authentication (ASVS 5.0 level 2, chapters 6 and 7): server-side
invalidation, no fixation, idle and absolute timeouts, the TOTP second factor with single-use
codes and recovery codes, the re-prompt before a reveal, and a lockout that reveals nothing.
Every time limit is checked one second before and exactly at its boundary (the clock pinned)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from vault_service.extensions import db
from vault_service.models import Agent, AuditEvent, Grant, RecoveryCode
from vault_service.services import agents as agents_service
from vault_service.services import authentication, totp

from .conftest import AGENT_PASSWORD, AGENT_TOTP_SECRET, SAMPLE_ITEMS, AgentBrowser
from .helpers import own_details

T0 = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)
NEW_PASSWORD = "a brand new passphrase, long enough"


def without_csrf(response) -> str:
    return re.sub(r'name="csrf_token" value="[^"]+"', "", response.get_data(as_text=True))


def audit_events(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        events = list(
            db.session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
        )
        db.session.commit()  # ends the read; the objects stay loaded
    return events


def agent_row(app, username: str = "alice") -> Agent:
    with app.app_context():
        agent = db.session.scalar(select(Agent).where(Agent.username == username))
        db.session.commit()  # ends the read; the objects stay loaded
    return agent


def replay(app, cookie: str):
    """Another browser presenting a copied session cookie."""
    attacker = app.test_client()
    attacker.set_cookie("session", cookie)
    return attacker.get("/")


def refused(response) -> bool:
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


def submit_ticket(ticket_system, client, ticket_ref: str) -> None:
    path = ticket_system.link_path(ticket_ref)
    assert client.post(path, json={"items": SAMPLE_ITEMS}).status_code == 201


# --- server-side invalidation ---------------------------------------------------------------


def test_session_cookie_replayed_after_disable_is_refused(agent, client, app):
    agent.login()
    stolen = client.get_cookie("session").value
    assert replay(app, stolen).status_code == 200
    with app.app_context():
        agents_service.disable_agent(
            db.session.scalar(select(Agent).where(Agent.username == "alice")), actor="test"
        )
    assert refused(replay(app, stolen))


def test_password_change_ends_every_other_session_and_keeps_this_one(agent, client, app):
    agent.login()
    stolen = client.get_cookie("session").value
    response = agent.post(
        "/account/password",
        {
            "current_password": AGENT_PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
        token_page="/account/password",
    )
    assert response.status_code == 302
    assert refused(replay(app, stolen))
    assert client.get("/").status_code == 200  # this browser got a new session
    assert client.get_cookie("session").value != stolen
    [changed] = audit_events(app, "agent.password_changed")
    assert (changed.actor, changed.outcome, changed.details["by"]) == (
        "agent:alice",
        "success",
        "self",
    )
    agent.post("/logout", {})
    assert agent.login().status_code == 401  # the old password
    assert agent.login(password=NEW_PASSWORD).status_code == 302


@pytest.mark.parametrize(
    ("field", "new", "confirm", "status"),
    [
        ("current_password", NEW_PASSWORD, NEW_PASSWORD, 401),  # wrong current password
        ("new_password", "too short", "too short", 400),
        ("new_password", AGENT_PASSWORD, AGENT_PASSWORD, 400),  # not the old one again
        ("confirm_password", NEW_PASSWORD, NEW_PASSWORD + "!", 400),
    ],
)
def test_password_change_refuses_a_bad_request_and_changes_nothing(
    agent, client, app, field, new, confirm, status
):
    agent.login()
    nonce = agent_row(app).session_nonce
    current = "not my password" if field == "current_password" else AGENT_PASSWORD
    response = agent.post(
        "/account/password",
        {"current_password": current, "new_password": new, "confirm_password": confirm},
        token_page="/account/password",
    )
    assert response.status_code == status
    assert agent_row(app).session_nonce == nonce
    assert client.get("/").status_code == 200
    for secret in {current, new, confirm}:
        assert secret not in response.get_data(as_text=True)


def test_set_password_command_ends_sessions_lifts_the_lock_and_is_audited(
    agent, client, app, runner
):
    agent.login()
    stolen = client.get_cookie("session").value
    with app.app_context():
        alice = db.session.scalar(select(Agent).where(Agent.username == "alice"))
        alice.failed_logins, alice.locked_until = 5, T0 + timedelta(days=365)
        db.session.commit()
    result = runner.invoke(
        args=["set-password", "alice", "--password-stdin"], input=NEW_PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    assert NEW_PASSWORD not in result.output
    assert refused(replay(app, stolen))
    alice = agent_row(app)
    assert (alice.failed_logins, alice.locked_until) == (0, None)
    assert audit_events(app, "agent.password_changed")[-1].details["by"] == "admin"
    assert audit_events(app, "agent.unlocked")[-1].actor == "cli"
    assert agent.login(password=NEW_PASSWORD).status_code == 302
    refusals = [
        runner.invoke(args=["set-password", "nobody", "--password-stdin"], input=NEW_PASSWORD),
        runner.invoke(args=["set-password", "alice", "--password-stdin"], input="short\n"),
    ]
    assert all(r.exit_code != 0 for r in refusals)


def test_logout_is_audited_and_the_cookie_is_dead(agent, client, app):
    agent.login()
    stolen = client.get_cookie("session").value
    agent.post("/logout", {})
    assert refused(replay(app, stolen))
    assert [e.actor for e in audit_events(app, "agent.logout")] == ["agent:alice"]


# --- fixation and cookies -------------------------------------------------------------------


def test_login_starts_a_new_session_and_nothing_from_before_survives(agent, client, app):
    client.get("/login")
    with client.session_transaction() as before:
        before["planted"] = "by an attacker"
        planted_csrf = before["csrf_token"]
    pre_login_cookie = client.get_cookie("session").value
    assert agent.login().status_code == 302
    with client.session_transaction() as after:
        assert "planted" not in after
        assert after.get("csrf_token") != planted_csrf
        assert set(after) <= {"_user_id", "_fresh", "_id", "auth_at", "seen_at", "reauth_at"}
    # The cookie the attacker knew from before the login is still nobody's session.
    assert refused(replay(app, pre_login_cookie))


def test_no_remember_me_cookie_is_set_or_honoured(agent, client, app):
    response = agent.login()
    set_cookies = response.headers.getlist("Set-Cookie")
    assert not [c for c in set_cookies if c.startswith("remember_token")]
    stranger = app.test_client()
    stranger.set_cookie("remember_token", "1:anything|forged")
    assert refused(stranger.get("/"))


def test_session_cookie_is_httponly_samesite_and_host_only_in_every_mode(agent, client):
    response = agent.login()
    [cookie] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Domain" not in cookie and "Expires" not in cookie  # host-only, gone with the browser


def test_production_session_cookie_is_secure_and_host_prefixed(make_settings):
    from vault_service import create_app, schema

    app = create_app(make_settings(env="production", public_url="https://vault.example.test"))
    with app.app_context():
        schema.upgrade(db.engine)
    browser = AgentBrowser(app.test_client(), app)
    browser.create()
    https = {"base_url": "https://localhost", "headers": {"Referer": "https://localhost/login"}}
    page = browser.client.get("/login", **https).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = browser.client.post(
        "/login",
        data={
            "username": "alice",
            "password": AGENT_PASSWORD,
            "code": browser.totp_code(),
            "csrf_token": token,
        },
        **https,
    )
    assert response.status_code == 302
    [cookie] = response.headers.getlist("Set-Cookie")
    assert cookie.startswith("__Host-session=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in cookie
    assert "Domain" not in cookie
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


# --- idle and absolute timeouts -------------------------------------------------------------


@pytest.mark.parametrize(("idle", "expected"), [(899, 200), (900, 302)])
def test_idle_session_ends_exactly_at_15_minutes_without_a_request(
    agent, client, app, idle, expected
):
    with freeze_time(T0) as frozen:
        agent.login()
        frozen.move_to(T0 + timedelta(seconds=600))
        assert client.get("/").status_code == 200  # activity: the idle clock restarts
        frozen.move_to(T0 + timedelta(seconds=600 + idle))
        response = client.get("/")
        assert response.status_code == expected
        if expected == 302:
            assert response.headers["Location"].startswith("/login")
            assert "Your session has ended" in client.get("/login").get_data(as_text=True)
    expired = audit_events(app, "agent.session_expired")
    assert [e.details["reason"] for e in expired] == (["idle timeout"] if expected == 302 else [])


@pytest.mark.parametrize(("age", "expected"), [(8 * 3600 - 1, 200), (8 * 3600, 302)])
def test_active_session_ends_exactly_at_8_hours_whatever_the_activity(
    agent, client, app, age, expected
):
    with freeze_time(T0) as frozen:
        agent.login()
        for seconds in range(800, age, 800):  # never idle for long
            frozen.move_to(T0 + timedelta(seconds=seconds))
            assert client.get("/").status_code == 200
        frozen.move_to(T0 + timedelta(seconds=age))
        assert client.get("/").status_code == expected
    if expected == 302:
        assert audit_events(app, "agent.session_expired")[0].details["reason"] == (
            "absolute timeout"
        )


def test_session_limits_come_from_the_settings(make_settings, ticket_system_factory):
    from vault_service import create_app

    app = create_app(make_settings(session_idle_seconds=60, session_absolute_seconds=120))
    _, browser, client = ticket_system_factory(app)
    with freeze_time(T0) as frozen:
        browser.login()
        frozen.move_to(T0 + timedelta(seconds=59))
        assert client.get("/").status_code == 200
        frozen.move_to(T0 + timedelta(seconds=118))
        assert client.get("/").status_code == 200
        frozen.move_to(T0 + timedelta(seconds=120))
        assert client.get("/").status_code == 302


def test_session_without_timestamps_is_ended(agent, client, app):
    agent.login()
    with client.session_transaction() as session:
        del session["auth_at"]
    assert refused(client.get("/"))


# --- TOTP: enrolment, codes, recovery codes -------------------------------------------------


def test_an_agent_without_a_second_factor_can_only_enrol(agent, client, app, ticket_system):
    submit_ticket(ticket_system, client, "T-enrol")
    agent.create("bob", enrol=False)
    response = agent.login("bob", code="")
    assert response.status_code == 302
    assert response.headers["Location"] == "/account/two-factor"
    for path in ("/", "/tickets/T-enrol", "/reauth"):
        assert client.get(path).headers["Location"] == "/account/two-factor"
    token_page = "/account/two-factor"
    for path, form in (
        ("/tickets/T-enrol/access", {"reason": "debug", "duration_minutes": "30"}),
        ("/tickets/T-enrol/reveal", {"grant_id": "x"}),
    ):
        response = agent.post(path, form, token_page=token_page)
        assert response.headers["Location"] == "/account/two-factor"
    with app.app_context():
        assert db.session.scalar(select(func.count(Grant.id))) == 0

    page = client.get("/account/two-factor").get_data(as_text=True)
    assert 'src="data:image/svg+xml' in page
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    with client.session_transaction() as session:
        assert secret not in json.dumps(dict(session))  # only encrypted in the cookie
    wrong = agent.post("/account/two-factor", {"code": "000000"}, token_page)
    assert wrong.status_code == 400 and 'src="data:image/svg+xml' in wrong.get_data(as_text=True)
    code = totp.code_at(secret, totp.time_step(datetime.now(UTC)))
    shown = agent.post("/account/two-factor", {"code": code}, token_page)
    assert shown.status_code == 200
    codes = re.findall(r'<code class="secret">([0-9a-z-]+)</code>', shown.get_data(as_text=True))
    assert len(codes) == 10 == len(set(codes))
    assert client.get("/").status_code == 200
    assert agent.request_access("T-enrol").status_code == 302
    assert 'name="grant_id"' in client.get("/tickets/T-enrol").get_data(as_text=True)
    failed, enrolled = [
        e for e in audit_events(app, "agent.totp_enrolled") if e.actor == "agent:bob"
    ]
    assert (failed.outcome, own_details(failed.details)) == ("failure", {"reason": "wrong code"})
    assert own_details(enrolled.details) == {
        "agent": "bob",
        "method": "app",
        "replaced": False,
        "recovery_codes": 10,
    }
    bob = agent_row(app, "bob")
    # At rest: the secret encrypted, the codes hashed, neither in clear anywhere in the database.
    key = app.extensions["vault_service.settings"].secret_key
    assert secret not in bob.totp_secret_ciphertext
    assert totp.decrypt_secret((key,), bob.totp_secret_ciphertext) == secret
    assert totp.decrypt_secret(("another key" * 4,), bob.totp_secret_ciphertext) is None
    with app.app_context():
        hashes = set(db.session.scalars(select(RecoveryCode.code_hash)))
    assert {hashlib.sha256(c.replace("-", "").encode()).hexdigest() for c in codes} <= hashes
    database = Path(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"))
    if database.exists():
        stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
        for value in [secret, *codes, *(c.replace("-", "") for c in codes)]:
            assert value.encode() not in stored


def test_a_wrong_or_reused_totp_code_is_refused(agent, client, app):
    with freeze_time(T0):
        code = agent.totp_code()
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        assert agent.login(code=wrong).status_code == 401
        assert agent.login(code="").status_code == 401
        assert agent.login(code=code).status_code == 302
        agent.post("/logout", {})
        reused = agent.login(code=code)
        assert reused.status_code == 401
        assert "Invalid login." in reused.get_data(as_text=True)
        # The next step's code is still good: single use is per step, not per day.
        assert agent.login().status_code == 302
    reasons = [e.details.get("reason") for e in audit_events(app, "agent.login")]
    assert reasons == ["wrong code", "missing code", None, "code reused", None]


def test_a_code_is_accepted_one_step_either_side_of_now_and_no_further(agent, client):
    with freeze_time(T0):
        step = totp.time_step(T0)
        for offset in (-2, 2):
            assert (
                agent.login(code=totp.code_at(AGENT_TOTP_SECRET, step + offset)).status_code == 401
            )
        assert agent.login(code=totp.code_at(AGENT_TOTP_SECRET, step + 1)).status_code == 302


def test_a_recovery_code_works_once(agent, client, app):
    code = agent.recovery_codes["alice"][0]
    response = agent.login(code=code.upper().replace("-", " "))  # typed loosely
    assert response.status_code == 302
    assert "9 left" in client.get("/").get_data(as_text=True)
    agent.post("/logout", {})
    assert agent.login(code=code).status_code == 401
    [used] = audit_events(app, "agent.recovery_code_used")
    assert own_details(used.details) == {"during": "login", "remaining": 9}
    assert audit_events(app, "agent.login")[-1].details["reason"] == "wrong recovery code"


def test_replacing_the_authenticator_needs_a_recent_code_and_ends_other_sessions(
    agent, client, app
):
    token_page = "/account/two-factor"
    with freeze_time(T0) as frozen:
        agent.login()
        stolen = client.get_cookie("session").value
        assert client.get(token_page).status_code == 200
        frozen.move_to(T0 + timedelta(seconds=300))
        response = client.get(token_page)
        assert response.headers["Location"] == "/reauth?next=/account/two-factor"
        assert agent.reauth(next_path=token_page).headers["Location"] == token_page
        page = client.get(token_page).get_data(as_text=True)
        assert "This replaces your current authenticator" in page
        secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
        code = totp.code_at(secret, totp.time_step(T0 + timedelta(seconds=300)))
        assert agent.post(token_page, {"code": code}, token_page).status_code == 200
        assert refused(replay(app, stolen))
        assert client.get("/").status_code == 200
        agent.post("/logout", {})
        assert agent.login(code=agent.recovery_codes["alice"][0]).status_code == 401  # old codes
        assert agent.login(code=agent.totp_code()).status_code == 401  # the old secret
        assert agent.login(code=agent.totp_code(secret=secret)).status_code == 302
    enrolments = audit_events(app, "agent.totp_enrolled")
    assert [e.details["method"] for e in enrolments] == ["provisioned", "app"]
    assert enrolments[-1].details["replaced"] is True


# --- the re-prompt before access requests and reveals ---------------------------------------


@pytest.mark.parametrize(("age", "prompted"), [(299, False), (300, True)])
def test_reveal_needs_a_code_typed_within_5_minutes(
    agent, client, app, ticket_system, age, prompted
):
    with freeze_time(T0) as frozen:
        submit_ticket(ticket_system, client, "T-reauth")
        agent.login()
        assert agent.request_access("T-reauth").headers["Location"] == "/tickets/T-reauth"
        grant_id = agent.current_grant_id("T-reauth")
        frozen.move_to(T0 + timedelta(seconds=age))
        response = agent.reveal("T-reauth", grant_id)
        if not prompted:
            assert response.status_code == 200
            return
        assert response.status_code == 302
        assert response.headers["Location"] == "/reauth?next=/tickets/T-reauth"
        assert audit_events(app, "credentials.revealed") == []
        # Looking at the prompt changes nothing; answering it returns to the ticket.
        assert client.get("/reauth?next=/tickets/T-reauth").status_code == 200
        assert agent.reveal("T-reauth", grant_id).status_code == 302
        assert agent.reauth(code="123456", next_path="/tickets/T-reauth").status_code == 401
        answered = agent.reauth(next_path="/tickets/T-reauth")
        assert answered.headers["Location"] == "/tickets/T-reauth"
        assert agent.reveal("T-reauth", grant_id).status_code == 200
    outcomes = [(e.outcome, e.details.get("reason")) for e in audit_events(app, "agent.reauth")]
    assert outcomes == [("failure", "wrong code"), ("success", None)]


def test_access_request_needs_a_recent_code_too(agent, client, app, ticket_system):
    with freeze_time(T0) as frozen:
        submit_ticket(ticket_system, client, "T-reauth-access")
        agent.login()
        frozen.move_to(T0 + timedelta(seconds=300))
        response = agent.request_access("T-reauth-access")
        assert response.headers["Location"] == "/reauth?next=/tickets/T-reauth-access"
        with app.app_context():
            assert db.session.scalar(select(func.count(Grant.id))) == 0
        agent.reauth(code=agent.recovery_codes["alice"][3], next_path="/")
        assert agent.request_access("T-reauth-access").status_code == 302
        with app.app_context():
            assert db.session.scalar(select(func.count(Grant.id))) == 1
    assert audit_events(app, "agent.recovery_code_used")[0].details["during"] == "reauth"


def test_wrong_codes_at_the_prompt_lock_the_account_and_end_its_sessions(agent, client, app):
    with freeze_time(T0):
        agent.login()
        other = app.test_client()
        other.set_cookie("session", client.get_cookie("session").value)
        for _ in range(4):
            assert agent.reauth(code="000000").status_code == 401
        response = agent.reauth(code="000000")
        assert refused(response)
        assert refused(client.get("/")) and refused(other.get("/"))
    assert len(audit_events(app, "agent.locked")) == 1


# --- lockout --------------------------------------------------------------------------------


def test_lockout_after_five_failures_answers_exactly_like_any_other_failure(agent, client, app):
    """Except to the right password: that is told the account is locked, and until when (only
    someone who knows the password learns it, so it is no oracle for who exists or is locked)."""
    with freeze_time(T0) as frozen:
        wrong_password = agent.login(password="not the password")
        for _ in range(3):
            agent.login(password="not the password")
        wrong_code = agent.login(code="000000")  # the fifth failure: locked
        locked = agent.login()  # the right password and a good code
        locked_wrong = agent.login(password="not the password")
        unknown = agent.login(username="nobody")
        responses = [wrong_password, wrong_code, locked_wrong, unknown]
        assert {r.status_code for r in responses} == {401}
        assert len({without_csrf(r) for r in responses}) == 1
        assert "locked" not in without_csrf(locked_wrong)
        lock = agent_row(app).locked_until
        assert lock == T0 + timedelta(seconds=900)
        told = locked.get_data(as_text=True)
        assert locked.status_code == 403 and "This account is locked" in told
        assert f'<time datetime="{lock.isoformat()}">' in told
        assert lock.strftime("%Y-%m-%d %H:%M:%S UTC") in told
        assert client.get("/").status_code == 302  # and no session was started

        frozen.move_to(lock - timedelta(seconds=1))
        assert agent.login().status_code == 403
        frozen.move_to(lock)
        assert agent.login().status_code == 302
    [locked_event] = audit_events(app, "agent.locked")
    assert locked_event.details["failures"] == 5
    [unlocked] = audit_events(app, "agent.unlocked")
    assert unlocked.details["reason"] == "expired"
    reasons = [e.details.get("reason") for e in audit_events(app, "agent.login")]
    assert reasons == [
        *["wrong password"] * 4,
        "wrong code",
        "locked",
        "locked",
        "unknown user",
        "locked",
        None,
    ]
    assert agent_row(app).failed_logins == 0


def test_a_successful_login_resets_the_failure_count(agent, client, app):
    with freeze_time(T0) as frozen:
        for _ in range(4):
            agent.login(password="not the password")
        assert agent.login().status_code == 302
        frozen.move_to(T0 + timedelta(seconds=61))  # past the per-address rate limit's window
        for _ in range(4):
            agent.login(password="not the password")
        assert agent.login().status_code == 302
    assert audit_events(app, "agent.locked") == []


def test_every_login_attempt_costs_exactly_one_password_hash_check(agent, client, monkeypatch):
    calls = []
    real = authentication.check_password_hash

    def counting(pwhash, password):
        calls.append(pwhash)
        return real(pwhash, password)

    monkeypatch.setattr(authentication, "check_password_hash", counting)
    with freeze_time(T0):
        agent.login(username="nobody")
        agent.login(password="not the password")
        agent.login(code="000000")
    assert len(calls) == 3
    assert calls[0] == authentication._DUMMY_HASH


def test_audit_records_of_authentication_hold_no_password_code_or_secret(agent, client, app):
    with freeze_time(T0):
        code = agent.totp_code()
        agent.login(password="hunter2 typed by mistake")
        agent.login(code=code)
        agent.reauth()
    with app.app_context():
        trail = json.dumps([[e.actor, e.details] for e in db.session.scalars(select(AuditEvent))])
    for secret in (AGENT_PASSWORD, "hunter2", code, AGENT_TOTP_SECRET):
        assert secret not in trail
    for code in agent.recovery_codes["alice"]:
        assert code not in trail
