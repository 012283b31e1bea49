"""An agent signs in through OpenBao's identity OIDC provider in Chromium, the whole way a person
does: our login page, OpenBao's own web UI (its authorization page shows OpenBao's sign-in
form; the agent picks "Username" and types their userpass password there; OpenBao's UI then
calls the provider's authorize API with the token that login gave it and sends the browser back
to our callback with the code), our callback, the dashboard. Nothing in between is stubbed or
routed: the browser talks to a real OpenBao with its UI enabled (the suite's shared OpenBao runs
without one, so this module starts its own as the identity provider; the app's own Vault is
still the suite's) and to the app on the port its redirect URI names.

Then the re-authentication before an access request, in the same browser: the session's last
verification is aged past the window, the access request sends the agent to OpenBao with
prompt=login and max_age, OpenBao's UI asks for the password again even though it holds a token,
and on return the access request resumes with the reason the agent typed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from vault_service import create_app, schema
from vault_service.devtools.embedded_openbao import CONFIG_TEMPLATE, EmbeddedOpenBao
from vault_service.devtools.processes import free_port
from vault_service.extensions import db
from vault_service.models import Agent, AuditEvent, Grant
from vault_service.services import oidc

from .conftest import TicketSystem
from .helpers import (
    OIDC_USER_PASSWORD,
    ROOT,
    BaoProvider,
    QuietRequestHandler,
    assert_accessible,
    configure_bao_provider,
)

PORT = free_port()
PUBLIC_URL = f"http://127.0.0.1:{PORT}"
SCREENSHOTS = ROOT / "docs" / "screenshots"
REASON = "Customer's SFTP upload fails: checking the account"


@pytest.fixture(scope="module")
def provider(tmp_path_factory) -> BaoProvider:
    """OpenBao with its web UI on, as the identity provider: userpass mounted where the UI's
    "Username" method looks (`userpass/`), the users, groups, client and provider."""
    directory: Path = tmp_path_factory.mktemp("provider-openbao")
    port = free_port()
    ui_off = "ui            = false"
    assert ui_off in CONFIG_TEMPLATE
    config = CONFIG_TEMPLATE.replace(ui_off, "ui            = true").format(
        data_dir=directory / "data",
        port=port,
        audit_log=directory / "audit.log",
        scheme="http",
        listener_tls="  tls_disable = true",
    )
    server = EmbeddedOpenBao(directory, port, config_text=config)
    server.start()
    try:
        init = server.ensure_initialized_and_unsealed()
        yield configure_bao_provider(
            server.addr, init.root_token, PUBLIC_URL + "/oidc/callback", mount="userpass"
        )
    finally:
        server.stop()


@pytest.fixture
def app(make_settings, provider):
    """The app at PUBLIC_URL (the provider's client redirects there), signing in at OpenBao;
    its `mfa` scope asserts a second factor, so the provider's login is the whole login."""
    oidc.forget_provider_cache()
    app = create_app(
        make_settings(
            public_url=PUBLIC_URL,
            oidc=provider.settings(scopes=("openid", "email", "groups", "mfa")),
        )
    )
    with app.app_context():
        schema.upgrade(db.engine)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def live_server(app):
    """The app on PORT, the port of the redirect URI registered at the provider."""
    server = make_server("127.0.0.1", PORT, app, threaded=True, request_handler=QuietRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield PUBLIC_URL
    server.shutdown()


def sign_in_at_openbao(page, provider: BaoProvider, user: str = "alice") -> None:
    """OpenBao's own sign-in form, as a person fills it: method "Username", name, password."""
    page.wait_for_url(f"{provider.addr}/ui/**")
    page.select_option("select", "userpass")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", OIDC_USER_PASSWORD)
    page.click("button[type=submit]")


def audit_of(app, action: str) -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()
        found = [{"outcome": row.outcome, **(row.details or {})} for row in rows]
        db.session.rollback()
        return found


def age_verification(page, app, live_server: str, seconds: int) -> None:
    """Move the browser session's last verification `seconds` into the past: the signed cookie
    re-signed with the app's key, as if that much time had passed for this session only."""
    serializer = app.session_interface.get_signing_serializer(app)
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = next(c for c in page.context.cookies(live_server) if c["name"] == name)
    data = serializer.loads(cookie["value"])
    data["reauth_at"] -= seconds
    page.context.add_cookies([{"name": name, "value": serializer.dumps(data), "url": live_server}])


def test_agent_signs_in_at_openbao_in_chromium_and_lands_on_the_dashboard(
    page, live_server, provider, app
):
    """Our login page's button, OpenBao's sign-in form, back through the callback: alice is
    provisioned (group `support` → agent), the provider's MFA claim skips the code step, and the
    browser shows her dashboard."""
    page.goto(f"{live_server}/login")
    assert_accessible(page, "login page with the provider's button")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "oidc-login.png"), full_page=True)
    authorizations: list[str] = []
    page.on(
        "request",
        lambda request: authorizations.append(request.url) if "/authorize" in request.url else None,
    )
    page.get_by_role("link", name="Sign in with OpenBao").click()
    sign_in_at_openbao(page, provider)
    page.wait_for_url(f"{live_server}/")
    assert page.get_by_role("heading", level=1).first.is_visible()
    assert "alice" in page.content()
    # The request OpenBao's UI received: code flow, PKCE S256, state, nonce, our redirect URI.
    params = parse_qs(urlsplit(authorizations[0]).query)
    assert params["response_type"] == ["code"] and params["code_challenge_method"] == ["S256"]
    assert params["redirect_uri"] == [f"{live_server}/oidc/callback"]
    assert params["state"][0] and params["nonce"][0] and "prompt" not in params
    logins = audit_of(app, "agent.login")
    assert [(e["outcome"], e.get("method"), e.get("provider_mfa")) for e in logins] == [
        ("success", "oidc", True)
    ]
    with app.app_context():
        assert db.session.scalar(select(Agent.role).where(Agent.username == "alice")) == "agent"
        db.session.rollback()
    assert not [m for m in page.console_messages if "Content Security Policy" in m]


def stale_provider_session(page, live_server: str, provider: BaoProvider, app) -> str:
    """A ticket with one item, alice signed in at OpenBao in the browser, and her session's
    last verification older than the window. Returns the ticket ref."""
    ref = "T-oidc-browser"
    client = app.test_client()
    path = TicketSystem(client).link_path(ref)
    item = {"kind": "other", "label": "panel", "secret": "s3-value"}
    assert client.post(path, json={"items": [item]}).status_code == 201
    page.goto(f"{live_server}/login")
    page.get_by_role("link", name="Sign in with OpenBao").click()
    sign_in_at_openbao(page, provider)
    page.wait_for_url(f"{live_server}/")
    age_verification(page, app, live_server, app_reauth_seconds(app) + 1)
    return ref


def grants_of(app) -> list[str]:
    with app.app_context():
        reasons = [grant.reason for grant in db.session.scalars(select(Grant))]
        db.session.rollback()
        return reasons


def test_resume_page_without_its_script_waits_for_continue(page, live_server, provider, app):
    """Without resume.js (blocked here) the page back from OpenBao holds the interrupted
    request until the agent presses Continue: nothing is granted before, the grant after."""
    page.route("**/static/resume.js", lambda route: route.abort())
    ref = stale_provider_session(page, live_server, provider, app)
    page.goto(f"{live_server}/tickets/{ref}")
    page.fill("input[name=reason]", REASON)
    page.get_by_role("button", name="Request access").click()
    page.get_by_role("link", name="Sign in again with OpenBao").click()
    sign_in_at_openbao(page, provider)
    page.wait_for_url(f"{live_server}/oidc/callback?**")
    assert page.get_by_role("heading", name="Confirmed: continuing").is_visible()
    assert_accessible(page, "resume page")
    page.screenshot(path=str(SCREENSHOTS / "oidc-resume.png"), full_page=True)
    assert grants_of(app) == []
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{live_server}/tickets/{ref}")
    assert "Access granted." in page.content()
    assert grants_of(app) == [REASON]


def test_reauth_at_openbao_in_chromium_resumes_the_access_request(page, live_server, provider, app):
    """The access request of a session verified too long ago goes to OpenBao with
    prompt=login and max_age; OpenBao's UI asks for the password again; back on our side the
    request resumes (resume.js posts it) with the reason typed before, and access is granted."""
    ref = stale_provider_session(page, live_server, provider, app)
    authorizations: list[str] = []
    page.on(
        "request",
        lambda request: authorizations.append(request.url) if "/authorize" in request.url else None,
    )
    page.goto(f"{live_server}/tickets/{ref}")
    page.fill("input[name=reason]", REASON)
    page.get_by_role("button", name="Request access").click()
    page.wait_for_url(f"{live_server}/reauth?**")
    assert_accessible(page, "re-prompt of a provider session")
    page.screenshot(path=str(SCREENSHOTS / "oidc-reauth.png"), full_page=True)
    page.get_by_role("link", name="Sign in again with OpenBao").click()
    # OpenBao holds a token from the first sign-in, yet prompt=login makes it ask again.
    sign_in_at_openbao(page, provider)
    page.wait_for_url(f"{live_server}/tickets/{ref}")
    assert "Access granted." in page.content()
    # Our request reached OpenBao's UI page with prompt=login; the UI, having asked for the
    # password again, called the authorize API with max_age (the API takes no prompt).
    ui_page, api_call = authorizations[-2:]
    assert "/ui/vault/" in ui_page and "/v1/" in api_call
    params = parse_qs(urlsplit(ui_page).query)
    assert params["prompt"] == ["login"]
    assert params["max_age"] == [str(app_reauth_seconds(app))]
    with app.app_context():
        grants = [(g.reason, g.agent_id) for g in db.session.scalars(select(Grant))]
        alice = db.session.scalar(select(Agent.id).where(Agent.username == "alice"))
        db.session.rollback()
    assert grants == [(REASON, alice)]
    reauths = audit_of(app, "agent.reauth")
    assert [(e["outcome"], e["second_factor"]) for e in reauths] == [("success", "provider")]
    assert isinstance(reauths[0]["auth_time"], int)


def app_reauth_seconds(app) -> int:
    return int(app.extensions["vault_service.settings"].reauth_seconds)
