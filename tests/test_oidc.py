"""Agents sign in through an OpenID Connect provider: OpenBao's own identity OIDC provider (the
suite's real OpenBao, configured here with userpass, entities, a group, a key, an assignment, a
client, scopes and a provider), plus a small local provider signing with a test key where OpenBao
cannot say what a test needs (an expired token, an `amr`, a back-channel logout token: OpenBao
sends no back-channel logouts).

OpenBao's authorize endpoint in discovery is a UI page (`/ui/vault/identity/oidc/provider/<name>/
authorize`); OpenBao also accepts the same authorization request at the API path
(`/v1/identity/oidc/provider/<name>/authorize`) with the user's token in X-Vault-Token and answers
with the code: the tests log in with userpass for that token and use the API path.
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import hvac.exceptions as hvac_exceptions
import pytest
import requests
from freezegun import freeze_time
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from vault_service import create_app, schema
from vault_service.config import OidcSettings
from vault_service.devtools.processes import free_port
from vault_service.extensions import db
from vault_service.models import Agent, AuditEvent, Grant, OidcIdentity, OidcLogoutToken
from vault_service.services import oidc

from .conftest import AgentBrowser, TicketSystem
from .helpers import BaoProvider, configure_bao_provider

PUBLIC_URL = f"http://127.0.0.1:{free_port()}"
REDIRECT_URI = PUBLIC_URL + "/oidc/callback"


@pytest.fixture(scope="module")
def bao_provider(openbao) -> BaoProvider:
    """OpenBao's OIDC provider on the suite's OpenBao, its client redirecting to this module's
    app (tests/helpers.py configures users, groups, key, client, scopes and provider)."""
    return configure_bao_provider(openbao.addr, openbao.root_token, REDIRECT_URI)


@pytest.fixture
def make_oidc_app(make_settings):
    """An app with OIDC settings (and anything else) over the test's database."""
    apps = []

    def build(oidc_settings: OidcSettings, **overrides):
        oidc.forget_provider_cache()
        app = create_app(make_settings(public_url=PUBLIC_URL, oidc=oidc_settings, **overrides))
        with app.app_context():
            schema.upgrade(db.engine)
        apps.append(app)
        return app

    yield build
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def start_login(client, next_path: str = "/") -> tuple[str, dict[str, list[str]]]:
    response = client.get(f"/oidc/login?next={next_path}")
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    return location, parse_qs(urlsplit(location).query)


def provider_login(client, provider: BaoProvider, user: str = "alice"):
    """The whole flow: the app's redirect, the user's authorization at OpenBao, the callback."""
    location, _ = start_login(client)
    answer = provider.authorize(location, provider.user_token(user))
    assert answer["status"] == 200, answer
    return client.get(
        "/oidc/callback?" + urlencode({"code": answer["code"], "state": answer["state"]})
    )


def audit_reasons(app, event: str = "agent.login") -> list[str]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == event)).all()
        db.session.rollback()
        return [str((row.details or {}).get("reason")) for row in rows]


def test_full_login_through_openbao_jit_with_group_role_then_totp_step(bao_provider, make_oidc_app):
    """PKCE S256, state and nonce go out; OpenBao's code comes back; the ID token is verified;
    the `support` group maps to agent; no MFA asserted, so the TOTP step follows."""
    app = make_oidc_app(bao_provider.settings())
    client = app.test_client()
    location, params = start_login(client)
    assert params["code_challenge_method"] == ["S256"]
    assert len(params["code_challenge"][0]) == 43
    assert params["state"][0] and params["nonce"][0]
    assert params["redirect_uri"] == [REDIRECT_URI]
    answer = bao_provider.authorize(location, bao_provider.user_token("alice"))
    assert answer["status"] == 200, answer
    response = client.get(
        "/oidc/callback?" + urlencode({"code": answer["code"], "state": answer["state"]})
    )
    # JIT: alice is new, not enrolled, no provider MFA: the session may only enrol.
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"].endswith("/account/two-factor")
    with app.app_context():
        agent = db.session.scalar(select(Agent).where(Agent.username == "alice"))
        assert agent is not None and agent.role == "agent"
        binding = db.session.scalar(select(OidcIdentity).where(OidcIdentity.agent_id == agent.id))
        assert binding.issuer == bao_provider.issuer
        assert binding.subject == bao_provider.users["alice"].entity_id
        db.session.rollback()


def callback(client, answer: dict):
    return client.get(
        "/oidc/callback?" + urlencode({"code": answer["code"], "state": answer["state"]})
    )


def real_id_token(provider: BaoProvider, user: str = "alice", scopes: str = "openid email groups"):
    """An ID token OpenBao issued (the code flow done by the test itself), and its nonce."""
    nonce = uuid.uuid4().hex
    query = urlencode(
        {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": scopes,
            "state": "s",
            "nonce": nonce,
        }
    )
    path = urlsplit(provider.issuer).path.replace("/v1/", "/ui/vault/", 1)
    answer = provider.authorize(
        f"{provider.addr}{path}/authorize?{query}", provider.user_token(user)
    )
    assert answer["status"] == 200, answer
    response = requests.post(
        f"{provider.issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": REDIRECT_URI,
        },
        auth=(provider.client_id, provider.client_secret),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["id_token"], nonce


def assert_generic_failure(response) -> None:
    assert response.status_code == 401
    assert "Invalid login." in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers or "session=;" not in response.headers["Set-Cookie"]


def is_logged_in(client) -> bool:
    return client.get("/").status_code == 200


def test_enrolled_agent_bound_identity_gets_totp_step_and_wrong_code_fails_generically(
    bao_provider, make_oidc_app
):
    """provisioning=existing: the admin bound alice's identity; no MFA asserted, so the existing
    second-factor check runs: a wrong code gets the login failure, the right one a session."""
    app = make_oidc_app(bao_provider.settings(provisioning="existing"))
    client = app.test_client()
    browser = AgentBrowser(client, app)
    browser.create("alice")
    with app.app_context():
        oidc.bind_identity(
            "alice", bao_provider.issuer, bao_provider.users["alice"].entity_id, actor="test"
        )
    response = provider_login(client, bao_provider)
    assert response.headers["Location"].endswith("/oidc/code")
    assert not is_logged_in(client)
    token = browser.csrf_token("/oidc/code")
    wrong = client.post("/oidc/code", data={"code": "000000", "csrf_token": token})
    assert_generic_failure(wrong)
    right = client.post("/oidc/code", data={"code": browser.totp_code(), "csrf_token": token})
    assert right.status_code == 302
    assert is_logged_in(client)
    assert "wrong code" in audit_reasons(app)


def test_mfa_asserted_by_openbao_amr_skips_totp(bao_provider, make_oidc_app):
    """OpenBao's scope template adds `amr: ["pwd", "mfa"]`: the TOTP step is skipped and the
    session counts as verified (an access request needs no re-prompt right after)."""
    app = make_oidc_app(bao_provider.settings(scopes=("openid", "email", "groups", "mfa")))
    client = app.test_client()
    response = provider_login(client, bao_provider)
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/"
    assert is_logged_in(client)
    # The reauth page links an OIDC+MFA session back to the provider with prompt=login, max_age.
    again = client.get(provider_link_of(client.get("/reauth?next=/")))
    params = parse_qs(urlsplit(again.headers["Location"]).query)
    assert params["prompt"] == ["login"] and params["max_age"] == ["300"]


MFA_SCOPES = ("openid", "email", "groups", "mfa")
REASON = "Customer's SFTP upload fails: checking the account"


def signed_in_with_stale_verification(app, client, provider: BaoProvider) -> str:
    """alice signed in at OpenBao (MFA asserted), a ticket with one item, and the session's
    last verification older than the re-authentication window; returns the ticket ref."""
    ref = f"T-{uuid.uuid4().hex[:8]}"
    path = TicketSystem(client).link_path(ref)
    item = {"kind": "other", "label": "panel", "secret": "s3-value"}
    assert client.post(path, json={"items": [item]}).status_code == 201
    response = provider_login(client, provider)
    assert urlsplit(response.headers["Location"]).path == "/"
    # Time passes for this session only: its signed verification time moves back past the
    # window (the provider's clock and tokens are untouched).
    with client.session_transaction() as session:
        session["reauth_at"] -= 300 + 1
    return ref


def interrupted_access_request(app, client, ref: str) -> str:
    """The access request the stale session sends: refused, nothing granted, the agent sent to
    the provider. Returns OpenBao's authorization URL."""
    browser = AgentBrowser(client, app)
    response = browser.request_access(ref, minutes=20, reason=REASON)
    assert response.headers["Location"] == f"/reauth?next=/tickets/{ref}"
    assert grants_of(app) == []
    to_provider = client.get(provider_link_of(client.get(response.headers["Location"])))
    assert to_provider.status_code == 302
    location = to_provider.headers["Location"]
    params = parse_qs(urlsplit(location).query)
    assert params["prompt"] == ["login"] and params["max_age"] == ["300"]
    return location


def provider_link_of(reauth_page) -> str:
    """The re-prompt page of a provider session: no code form, a link to sign in again."""
    assert reauth_page.status_code == 200
    page = reauth_page.get_data(as_text=True)
    assert 'name="code"' not in page
    link = html.unescape(re.search(r'<a class="button" href="([^"]+)"', page).group(1))
    assert urlsplit(link).path == "/oidc/login" and parse_qs(urlsplit(link).query)["reauth"] == [
        "1"
    ]
    return link


def grants_of(app) -> list[tuple[str, int]]:
    with app.app_context():
        rows = db.session.scalars(select(Grant)).all()
        db.session.rollback()
        return [(row.reason, row.agent_id) for row in rows]


def resume_form(page: str) -> tuple[str, dict[str, str]]:
    """The resume page's form: where it posts and its hidden fields."""
    action = page.split('id="resume-form"', 1)[0].rsplit('action="', 1)[1].split('"', 1)[0]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    return action, {name: html.unescape(value) for name, value in fields.items()}


def test_reauth_at_openbao_records_its_auth_time_and_resumes_the_access_request(
    bao_provider, make_oidc_app
):
    """The whole return leg against the real provider: prompt=login and max_age go out, a fresh
    userpass login at OpenBao answers, the callback records OpenBao's auth_time as the session's
    verification time, and the interrupted access request resumes with its reason and
    duration, granting access."""
    app = make_oidc_app(bao_provider.settings(scopes=MFA_SCOPES))
    client = app.test_client()
    ref = signed_in_with_stale_verification(app, client, bao_provider)
    location = interrupted_access_request(app, client, ref)
    before = int(time.time())
    answer = bao_provider.authorize(location, bao_provider.user_token("alice"))
    after = int(time.time())
    assert answer["status"] == 200, answer
    returned = callback(client, answer)
    assert returned.status_code == 200, returned.get_data(as_text=True)
    with app.app_context():
        reauth = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "agent.reauth")
        ).one()
        details, outcome = dict(reauth.details), reauth.outcome
        db.session.rollback()
    auth_time = details["auth_time"]
    assert before - 1 <= auth_time <= after + 1, (before, auth_time, after)
    assert details["second_factor"] == "provider" and outcome == "success"
    with client.session_transaction() as session:
        assert session["reauth_at"] == auth_time
        assert "pending_action" not in session and "oidc_request" not in session
    action, fields = resume_form(returned.get_data(as_text=True))
    assert action == f"/tickets/{ref}/access"
    assert fields["reason"] == REASON and fields["duration_minutes"] == "20"
    assert grants_of(app) == []  # the page resumes it; the GET callback itself grants nothing
    # What resume.js does in the browser (tests/test_oidc_browser.py runs it in Chromium).
    resumed = client.post(action, data=fields)
    assert resumed.headers["Location"] == f"/tickets/{ref}"
    with app.app_context():
        alice = db.session.scalar(select(Agent.id).where(Agent.username == "alice"))
        db.session.rollback()
    assert grants_of(app) == [(REASON, alice)]


def test_reauth_return_with_stale_auth_time_another_state_or_identity_is_refused(
    bao_provider, make_oidc_app
):
    """Each refused return leaves the session unverified and resumes nothing: a state that is
    not the request's, an auth_time older than max_age (+ leeway) by our clock, and another
    person's login at the provider."""
    app = make_oidc_app(bao_provider.settings(scopes=MFA_SCOPES))
    client = app.test_client()
    ref = signed_in_with_stale_verification(app, client, bao_provider)
    with client.session_transaction() as session:
        stale = session["reauth_at"]

    def assert_nothing_resumed() -> None:
        with client.session_transaction() as session:
            assert session.get("reauth_at") == stale, dict(session)
            assert "pending_action" not in session and "oidc_request" not in session
        assert grants_of(app) == []
        assert (
            AgentBrowser(client, app).request_access(ref).headers["Location"].startswith("/reauth")
        )

    answer = bao_provider.authorize(
        interrupted_access_request(app, client, ref), bao_provider.user_token("alice")
    )
    forged = client.get("/oidc/callback?" + urlencode({"code": answer["code"], "state": "x"}))
    assert_generic_failure(forged)
    assert_nothing_resumed()

    answer = bao_provider.authorize(
        interrupted_access_request(app, client, ref), bao_provider.user_token("lead")
    )
    assert callback(client, answer).status_code == 401
    assert "another identity" in audit_reasons(app, "agent.reauth")
    assert_nothing_resumed()

    answer = bao_provider.authorize(
        interrupted_access_request(app, client, ref), bao_provider.user_token("alice")
    )
    # OpenBao's auth_time is now; by our clock the callback comes max_age + leeway + 5 s later
    # (and so does everything after it: a cookie signed then is unreadable any earlier).
    with freeze_time(timedelta(seconds=300 + oidc.LEEWAY_SECONDS + 5), tick=True):
        assert_generic_failure(callback(client, answer))
        assert_nothing_resumed()
    assert "id token: authentication not recent enough" in audit_reasons(app)


def test_group_mapping_lead_becomes_admin(bao_provider, make_oidc_app):
    """The `support-leads` group maps to admin."""
    app = make_oidc_app(bao_provider.settings())
    provider_login(app.test_client(), bao_provider, "lead")
    with app.app_context():
        assert db.session.scalar(select(Agent.role).where(Agent.username == "lead")) == "admin"
        db.session.rollback()


def test_unmapped_identity_refused_like_failed_login_and_audited(bao_provider, make_oidc_app):
    """mallory is in no mapped group and not in an allowed domain."""
    app = make_oidc_app(bao_provider.settings(allowed_domains=("example.test",)))
    client = app.test_client()
    assert_generic_failure(provider_login(client, bao_provider, "mallory"))
    assert "identity not permitted" in audit_reasons(app)
    with app.app_context():
        assert db.session.scalar(select(Agent).where(Agent.username == "mallory")) is None
        db.session.rollback()


def test_allowed_domain_lets_existing_agent_in(bao_provider, make_oidc_app):
    app = make_oidc_app(
        bao_provider.settings(role_map=(), groups_claim="", allowed_domains=("example.test",))
    )
    response = provider_login(app.test_client(), bao_provider, "alice")
    assert response.status_code == 302


def test_not_provisioned_and_disabled_refused(bao_provider, make_oidc_app):
    app = make_oidc_app(bao_provider.settings(provisioning="existing"))
    client = app.test_client()
    assert_generic_failure(provider_login(client, bao_provider))
    assert "not provisioned" in audit_reasons(app)
    AgentBrowser(client, app).create("alice")
    with app.app_context():
        oidc.bind_identity(
            "alice", bao_provider.issuer, bao_provider.users["alice"].entity_id, actor="test"
        )
        from vault_service.services.agents import disable_agent, get_agent

        disable_agent(get_agent("alice"), actor="test")
    assert_generic_failure(provider_login(client, bao_provider))
    assert "disabled" in audit_reasons(app)


def test_tampered_state_replayed_callback_and_replayed_code_refused(bao_provider, make_oidc_app):
    app = make_oidc_app(bao_provider.settings())
    client = app.test_client()
    location, _ = start_login(client)
    answer = bao_provider.authorize(location, bao_provider.user_token("alice"))
    tampered = client.get("/oidc/callback?" + urlencode({"code": answer["code"], "state": "x"}))
    assert_generic_failure(tampered)
    # The pending request was spent by that attempt: the genuine callback now finds nothing.
    assert_generic_failure(callback(client, answer))
    # A code already exchanged, offered again under a fresh request: OpenBao refuses it.
    location, _ = start_login(client)
    fresh = bao_provider.authorize(location, bao_provider.user_token("alice"))
    assert callback(client, fresh).status_code == 302
    start_login(client)
    with client.session_transaction() as session:
        fresh_state = session["oidc_request"]["state"]
    replay = client.get(
        "/oidc/callback?" + urlencode({"code": fresh["code"], "state": fresh_state})
    )
    assert_generic_failure(replay)
    reasons = audit_reasons(app)
    assert any(r.startswith("code exchange") for r in reasons), reasons
    assert "no pending authorization request" in reasons


def test_wrong_audience_bad_nonce_wrong_issuer_expired_refused(
    bao_provider, openbao, make_oidc_app
):
    """Real OpenBao ID tokens, verified under settings that must refuse them."""
    from freezegun import freeze_time

    make_oidc_app(bao_provider.settings())  # an app context is not needed: pure verification
    id_token, nonce = real_id_token(bao_provider)
    good = bao_provider.settings()
    assert oidc.verify_id_token(good, id_token, nonce=nonce).subject == (
        bao_provider.users["alice"].entity_id
    )
    with pytest.raises(oidc.OidcFailure, match="aud"):
        oidc.verify_id_token(
            bao_provider.settings(client_id="another-client"), id_token, nonce=nonce
        )
    with pytest.raises(oidc.OidcFailure, match="nonce"):
        oidc.verify_id_token(good, id_token, nonce="not-the-nonce")
    # A second provider on the same OpenBao (publishing the same key): valid signature, but
    # the token's issuer is not this one.
    other = f"other-{uuid.uuid4().hex[:6]}"
    bao_provider._call(
        "POST", f"identity/oidc/provider/{other}", issuer=openbao.addr, allowed_client_ids=["*"]
    )
    other_issuer = f"{openbao.addr}/v1/identity/oidc/provider/{other}"
    with pytest.raises(oidc.OidcFailure, match="iss"):
        oidc.verify_id_token(bao_provider.settings(issuer=other_issuer), id_token, nonce=nonce)
    # id_token_ttl is 10 minutes; 20 minutes on, the token is expired.
    with freeze_time(timedelta(minutes=20), tick=True):
        with pytest.raises(oidc.OidcFailure, match="exp"):
            oidc.verify_id_token(good, id_token, nonce=nonce)


class LocalProvider:
    """A second provider on loopback that publishes discovery and a JWKS for a test signing key,
    so the tests can sign what OpenBao never sends: back-channel logout tokens."""

    def __init__(self):
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig"})
        self.server = make_server("127.0.0.1", 0, self._app)
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @Request.application
    def _app(self, request: Request) -> Response:
        if request.path == "/.well-known/openid-configuration":
            body = {
                "issuer": self.issuer,
                "authorization_endpoint": self.issuer + "/authorize",
                "token_endpoint": self.issuer + "/token",
                "jwks_uri": self.issuer + "/jwks",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        elif request.path == "/jwks":
            body = {"keys": [self.key.as_dict(private=False)]}
        else:
            return Response(status=404)
        return Response(json.dumps(body), mimetype="application/json")

    def sign(self, claims: dict, key: RSAKey | None = None) -> str:
        return jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, key or self.key)

    def logout_token(self, sub: str, **overrides) -> str:
        claims = {
            "iss": self.issuer,
            "aud": "local-client",
            "iat": int(time.time()),
            "exp": int(time.time()) + 120,
            "jti": uuid.uuid4().hex,
            "sub": sub,
            "events": {oidc.BACKCHANNEL_EVENT: {}},
        }
        claims.update(overrides)
        return self.sign({k: v for k, v in claims.items() if v is not None})

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def local_provider():
    provider = LocalProvider()
    yield provider
    provider.stop()


def test_backchannel_logout_ends_sessions_and_revokes_grants_in_vault(
    local_provider, make_oidc_app, ticket_system_factory, openbao
):
    """alice (bound to the local provider's subject) holds a session and a live grant; the
    provider's logout token ends the session and Vault no longer knows the grant's token.
    Forged, foreign-audience, nonce-carrying and event-less tokens change nothing first."""
    settings = OidcSettings(
        issuer=local_provider.issuer,
        client_id="local-client",
        allowed_domains=("example.test",),
    )
    app = make_oidc_app(settings)
    ticket_system, browser, client = ticket_system_factory(app)
    with app.app_context():
        oidc.bind_identity("alice", local_provider.issuer, "alice-sub", actor="test")
    ref = f"T-{uuid.uuid4().hex[:8]}"
    path = ticket_system.link_path(ref)
    assert (
        client.post(
            path, json={"items": [{"kind": "other", "label": "x", "secret": "s3"}]}
        ).status_code
        == 201
    )
    assert browser.login().status_code == 302
    assert browser.request_access(ref).status_code in (302, 303)
    with app.app_context():
        grant = db.session.scalar(select(Grant))
        accessor = grant.token_accessor
        db.session.rollback()
    root = openbao.admin()
    assert root.auth.token.lookup_accessor(accessor)["data"]["accessor"] == accessor

    machine = app.test_client()
    stranger = RSAKey.generate_key(2048, parameters={"kid": "test-key"})
    refused = [
        local_provider.sign(jwt_claims(local_provider, "alice-sub"), key=stranger),
        local_provider.logout_token("alice-sub", aud="someone-else"),
        local_provider.logout_token("alice-sub", nonce="n"),
        local_provider.logout_token("alice-sub", events=None),
        local_provider.logout_token("alice-sub", iss="http://127.0.0.1:1"),
        local_provider.logout_token("alice-sub", iat=int(time.time()) - 3600),
        local_provider.logout_token(None),
        local_provider.logout_token("alice-sub", jti=None),
        local_provider.logout_token("alice-sub", exp=None),
        local_provider.logout_token("alice-sub", exp=int(time.time()) - 120),
    ]
    for token in refused:
        response = machine.post("/oidc/backchannel-logout", data={"logout_token": token})
        assert response.status_code == 400, response.get_data(as_text=True)
    assert is_logged_in(client)
    assert root.auth.token.lookup_accessor(accessor)["data"]["accessor"] == accessor

    response = machine.post(
        "/oidc/backchannel-logout", data={"logout_token": local_provider.logout_token("alice-sub")}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"agents": 1, "grants_revoked": 1}
    assert response.headers["Cache-Control"] == "no-store"
    assert not is_logged_in(client)
    with pytest.raises(hvac_exceptions.InvalidRequest):
        root.auth.token.lookup_accessor(accessor)
    with app.app_context():
        assert db.session.scalar(select(Grant)).revoked_at is not None
        db.session.rollback()


def logout_jtis(app) -> dict[str, object]:
    with app.app_context():
        rows = db.session.scalars(select(OidcLogoutToken)).all()
        db.session.rollback()
        return {row.jti: row.expires_at for row in rows}


def test_replayed_logout_token_is_refused_and_its_jti_kept_until_it_expires(
    local_provider, make_oidc_app, ticket_system_factory
):
    """The same logout token delivered again (same jti) is refused and ends nothing: alice's
    new session survives it. The jti is kept until the token could no longer be accepted
    (min(iat + age limit, exp + leeway)) and forgotten after that."""
    app = make_oidc_app(
        OidcSettings(
            issuer=local_provider.issuer, client_id="local-client", allowed_domains=("x.test",)
        )
    )
    _, browser, client = ticket_system_factory(app)
    with app.app_context():
        oidc.bind_identity("alice", local_provider.issuer, "alice-sub", actor="test")
    machine = app.test_client()
    now = int(time.time())
    token = local_provider.logout_token("alice-sub", jti="logout-1", iat=now, exp=now + 120)
    assert browser.login().status_code == 302
    first = machine.post("/oidc/backchannel-logout", data={"logout_token": token})
    assert first.status_code == 200 and first.get_json()["agents"] == 1
    assert not is_logged_in(client)
    # exp + leeway (180 s) comes before iat + the age limit (600 s).
    kept = logout_jtis(app)
    assert list(kept) == ["logout-1"]
    assert kept["logout-1"].timestamp() == now + 120 + oidc.LEEWAY_SECONDS

    assert browser.login().status_code == 302
    replay = machine.post("/oidc/backchannel-logout", data={"logout_token": token})
    assert replay.status_code == 400, replay.get_data(as_text=True)
    assert is_logged_in(client)
    assert "logout token: replayed" in audit_reasons(app, "agent.logout")
    assert len([r for r in audit_reasons(app, "agent.logout") if r == "None"]) == 1

    # The same jti from another issuer is another token (the key is the pair).
    with app.app_context():
        assert db.session.get(OidcLogoutToken, ("http://elsewhere", "logout-1")) is None
        db.session.rollback()

    # Past its exp the token is refused as expired whatever the store holds, and the next
    # accepted logout forgets its jti.
    with freeze_time(timedelta(seconds=200), tick=True):
        late = machine.post("/oidc/backchannel-logout", data={"logout_token": token})
        assert late.status_code == 400
        fresh = local_provider.logout_token("alice-sub", jti="logout-2")
        assert (
            machine.post("/oidc/backchannel-logout", data={"logout_token": fresh}).status_code
            == 200
        )
    assert list(logout_jtis(app)) == ["logout-2"]
    assert not is_logged_in(client)


def jwt_claims(provider: LocalProvider, sub: str) -> dict:
    return {
        "iss": provider.issuer,
        "aud": "local-client",
        "iat": int(time.time()),
        "exp": int(time.time()) + 120,
        "jti": uuid.uuid4().hex,
        "sub": sub,
        "events": {oidc.BACKCHANNEL_EVENT: {}},
    }


def test_local_login_off_except_break_glass_admin(bao_provider, make_oidc_app):
    app = make_oidc_app(
        bao_provider.settings(), local_login=False, break_glass_admins=("root-admin",)
    )
    client = app.test_client()
    browser = AgentBrowser(client, app)
    browser.create("alice")
    browser.create("root-admin", role="admin")
    page = client.get("/login").get_data(as_text=True)
    assert "Sign in with OpenBao" in page
    assert_generic_failure(browser.login("alice"))
    assert "local login off" in audit_reasons(app)
    assert browser.login("root-admin").status_code == 302
