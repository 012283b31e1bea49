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

import json
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from vault_service import create_app, schema
from vault_service.config import OidcSettings
from vault_service.devtools.processes import free_port
from vault_service.extensions import db
from vault_service.models import Agent, AuditEvent, Grant, OidcIdentity
from vault_service.services import oidc

from .conftest import AGENT_PASSWORD, AgentBrowser

PUBLIC_URL = f"http://127.0.0.1:{free_port()}"
REDIRECT_URI = PUBLIC_URL + "/oidc/callback"
USER_PASSWORD = "provider-password-1"


@dataclass
class BaoUser:
    name: str
    entity_id: str


@dataclass
class BaoProvider:
    """OpenBao's OIDC provider as configured for these tests."""

    addr: str
    issuer: str
    client_id: str
    client_secret: str
    users: dict[str, BaoUser]
    root_token: str
    mount: str = "userpass"

    def _call(self, method: str, path: str, **body: object) -> dict:
        response = requests.request(
            method,
            f"{self.addr}/v1/{path}",
            headers={"X-Vault-Token": self.root_token},
            json=body or None,
            timeout=10,
        )
        assert response.status_code in (200, 204), (path, response.text)
        return response.json() if response.status_code == 200 else {}

    def user_token(self, name: str) -> str:
        response = requests.post(
            f"{self.addr}/v1/auth/{self.mount}/login/{name}",
            json={"password": USER_PASSWORD},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()["auth"]["client_token"]

    def authorize(self, authorization_url: str, token: str) -> dict:
        """The authorization request the app built, sent to OpenBao's API path as the user."""
        parts = urlsplit(authorization_url)
        assert parts.path.startswith("/ui/vault/identity/oidc/provider/"), parts.path
        api_path = parts.path.replace("/ui/vault/", "/v1/", 1)
        response = requests.get(
            f"{self.addr}{api_path}?{parts.query}", headers={"X-Vault-Token": token}, timeout=10
        )
        return {"status": response.status_code, **(response.json() if response.content else {})}

    def settings(self, **overrides: object) -> OidcSettings:
        values: dict[str, object] = {
            "issuer": self.issuer,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "provider_name": "OpenBao",
            "scopes": ("openid", "email", "groups"),
            "groups_claim": "groups",
            "role_map": (("support", "agent"), ("support-leads", "admin")),
            "provisioning": "jit",
        }
        values.update(overrides)
        return OidcSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def bao_provider(openbao) -> BaoProvider:
    """userpass users (alice in `support`, lead in `support-leads`, mallory in no group), their
    entities and aliases, the groups, a key, an assignment, a client whose redirect URI is the
    test app's callback, email/groups/mfa scopes, and a provider."""
    suffix = uuid.uuid4().hex[:6]
    provider = BaoProvider(openbao.addr, "", "", "", {}, openbao.root_token)
    mount = provider.mount = f"userpass-{suffix}"
    provider._call("POST", f"sys/auth/{mount}", type="userpass")
    accessor = provider._call("GET", "sys/auth")["data"][f"{mount}/"]["accessor"]
    groups: dict[str, list[str]] = {"support": [], "support-leads": []}
    for name, email, group in (
        ("alice", "alice@example.test", "support"),
        ("lead", "lead@example.test", "support-leads"),
        ("mallory", "mallory@elsewhere.test", None),
    ):
        provider._call("POST", f"auth/{mount}/users/{name}", password=USER_PASSWORD)
        entity = provider._call(
            "POST", "identity/entity", name=f"{name}-{suffix}", metadata={"email": email}
        )
        entity_id = entity["data"]["id"]
        provider._call(
            "POST",
            "identity/entity-alias",
            name=name,
            canonical_id=entity_id,
            mount_accessor=accessor,
        )
        provider.users[name] = BaoUser(name, entity_id)
        if group:
            groups[group].append(entity_id)
    group_ids = []
    for group, members in groups.items():
        created = provider._call(
            "POST", "identity/group", name=f"{group}", member_entity_ids=members
        )
        group_ids.append(created["data"]["id"] if created else None)
    key = f"vs-key-{suffix}"
    provider._call("POST", f"identity/oidc/key/{key}", allowed_client_ids=["*"], algorithm="RS256")
    assignment = f"vs-{suffix}"
    provider._call(
        "POST",
        f"identity/oidc/assignment/{assignment}",
        entity_ids=[u.entity_id for u in provider.users.values()],
    )
    client_name = f"vault-service-{suffix}"
    provider._call(
        "POST",
        f"identity/oidc/client/{client_name}",
        key=key,
        redirect_uris=[REDIRECT_URI],
        assignments=[assignment],
        id_token_ttl="10m",
        access_token_ttl="10m",
    )
    client = provider._call("GET", f"identity/oidc/client/{client_name}")["data"]
    provider.client_id, provider.client_secret = client["client_id"], client["client_secret"]
    provider._call(
        "POST",
        "identity/oidc/scope/email",
        template='{"email": {{identity.entity.metadata.email}}}',
    )
    provider._call(
        "POST", "identity/oidc/scope/groups", template='{"groups": {{identity.entity.groups.names}}}'
    )
    provider._call("POST", "identity/oidc/scope/mfa", template='{"amr": ["pwd", "mfa"]}')
    name = f"vs-{suffix}"
    provider._call(
        "POST",
        f"identity/oidc/provider/{name}",
        issuer=openbao.addr,
        allowed_client_ids=[provider.client_id],
        scopes_supported=["email", "groups", "mfa"],
    )
    provider.issuer = f"{openbao.addr}/v1/identity/oidc/provider/{name}"
    return provider


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
    return client.get("/oidc/callback?" + urlencode({"code": answer["code"], "state": answer["state"]}))


def audit_reasons(app, event: str = "agent.login") -> list[str]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)).all()
        db.session.rollback()
        return [str((row.details or {}).get("reason")) for row in rows]


def test_full_login_through_openbao_jit_with_group_role_then_totp_step(
    bao_provider, make_oidc_app
):
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
