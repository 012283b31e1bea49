"""Deny by default: every route is public by name, machine-authenticated, or needs an agent."""

from __future__ import annotations

import re

import pytest

from vault_service.config import ProviderSettings
from vault_service.extensions import db
from vault_service.services.providers import PROVIDERS, native_provider_names
from vault_service.vault import VaultUnavailable
from vault_service.views import MACHINE_ENDPOINTS, PUBLIC_ENDPOINTS

from .conftest import SAMPLE_ITEMS

STATE_CHANGING = {
    "auth.logout": "/logout",
    "tickets.request_access": "/tickets/T-1/access",
    "tickets.reveal": "/tickets/T-1/reveal",
    "tickets.end_grant": "/tickets/T-1/grants/G-1/end",
}


@pytest.fixture
def settings(make_settings):
    """Every help-desk provider enabled, so each one's refusal (401) is what is checked, not
    its absence (404)."""
    enabled = ProviderSettings(secrets=("a-help-desk-webhook-secret",))
    return make_settings(providers=dict.fromkeys(native_provider_names(), enabled))


def concrete_paths(rule) -> list[str]:
    """URLs for a rule, with every variable filled in: one per inbound provider for a
    `<provider>` (an unknown one would answer 404 before any authentication is tried)."""
    if "provider" in rule.arguments:
        return [rule.rule.replace("<provider>", name) for name in sorted(PROVIDERS)]
    return [re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", "T-1", rule.rule)]


def test_every_route_is_either_listed_public_machine_authenticated_or_refused(app, client):
    checked, providers_checked = 0, set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for path in concrete_paths(rule):
                check_refused(client, rule.endpoint, method, path)
                checked += 1
                if "provider" in rule.arguments:
                    providers_checked.add(path.rsplit("/", 1)[1])
    assert checked >= 8
    assert providers_checked == set(PROVIDERS)


def check_refused(client, endpoint: str, method: str, path: str) -> None:
    """Without credentials, the route refuses (401 for a machine, the login page for a person)."""
    response = client.open(path, method=method)
    if endpoint in MACHINE_ENDPOINTS:
        assert response.status_code == 401, (endpoint, method, path)
    elif method == "GET":
        assert response.status_code == 302, (endpoint, method)
        assert response.headers["Location"].startswith("/login")
    else:
        # Without a session there is no CSRF token either: refused before any view runs.
        assert response.status_code in (302, 400), (endpoint, method)


def test_an_agent_without_the_admin_role_gets_403_on_every_admin_route_and_action(
    app, client, agent
):
    """Signed in, CSRF token and all: still 403, and nothing changes (bob stays enabled)."""
    agent.create("bob")
    agent.login()
    token = agent.csrf_token("/")
    checked, endpoints = 0, set()
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin."):
            continue
        endpoints.add(rule.endpoint)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            path = rule.rule
            for name in rule.arguments:
                path = re.sub(
                    rf"<(?:[^:<>]+:)?{name}>", "bob" if name == "username" else "T-1", path
                )
            response = client.open(path, method=method, data={"csrf_token": token, "role": "admin"})
            assert response.status_code == 403, (rule.endpoint, method, path)
            checked += 1
    assert checked >= 10
    # Four-eyes approval's list and decisions are among them (guarded by the blueprint).
    assert {
        "admin.access_requests",
        "admin.approve_access_request",
        "admin.deny_access_request",
    } <= endpoints
    # The audit trail's page, its verification and its exports are among them.
    assert {"admin.audit", "admin.audit_verify", "admin.audit_export"} <= endpoints
    with app.app_context():
        from vault_service.models import Agent

        bob = db.session.query(Agent).filter_by(username="bob").one()
        assert bob.disabled_at is None and bob.role == "agent"
        db.session.rollback()


def test_public_allowlist_names_only_existing_endpoints(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert PUBLIC_ENDPOINTS <= endpoints
    assert MACHINE_ENDPOINTS <= endpoints


@pytest.mark.parametrize(("endpoint", "path"), sorted(STATE_CHANGING.items()))
def test_state_changing_routes_refuse_get(agent, client, endpoint, path):
    agent.login()
    assert client.get(path).status_code == 405


@pytest.mark.parametrize(("endpoint", "path"), sorted(STATE_CHANGING.items()))
def test_state_changing_routes_refuse_posts_without_csrf_token(agent, client, endpoint, path):
    agent.login()
    response = client.post(path, data={"reason": "x", "duration_minutes": "5", "grant_id": "x"})
    assert response.status_code == 400
    assert "csrf" in response.get_data(as_text=True).lower() or "form expired" in (
        response.get_data(as_text=True)
    )


def test_every_page_kind_carries_the_security_headers(client, ticket_system, agent):
    path = ticket_system.link_path("T-headers")
    responses = {
        "customer form": client.get(path),
        "gone link": client.get("/s/not-a-token"),
        "login": client.get("/login"),
        "health": client.get("/healthz"),
        "api": ticket_system.status("T-headers"),
        "not found": client.get("/no-such-page"),
    }
    agent.login()
    responses["dashboard"] = client.get("/")
    for kind, response in responses.items():
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        for directive in ("default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"):
            assert directive in csp, kind
        assert "unsafe-inline" not in csp
        assert headers["Referrer-Policy"] == "no-referrer", kind
        assert headers["X-Content-Type-Options"] == "nosniff", kind
        assert headers["Cache-Control"] == "no-store", kind
        assert "Server" not in headers or "Werkzeug" not in headers["Server"], kind


def test_unknown_route_and_method_get_clean_errors(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"
    response = client.delete("/api/v1/webhooks/ticket-events")
    assert response.status_code == 405
    assert "Traceback" not in response.get_data(as_text=True)


def test_an_unknown_webhook_provider_is_404_like_any_unrouted_path(client):
    response = client.post("/api/v1/webhooks/no-such-vendor", data=b"{}")
    assert response.status_code == 404
    assert response.get_json() == client.post("/api/v1/nothing-here").get_json()


def test_a_vault_outage_a_service_let_escape_is_a_clean_503_never_a_500(
    app, agent, submitted_ticket, vault, monkeypatch
):
    """errors.py's safety net: the reveal's background unwrap is started before the service's
    own Vault error translation, so a gateway that cannot reach any node escapes it."""
    agent.login()
    agent.request_access(submitted_ticket)
    grant_id = agent.current_grant_id(submitted_ticket)

    def unreachable(*args):
        raise VaultUnavailable("no Vault node reachable")

    monkeypatch.setattr(vault, "in_background", unreachable)
    response = agent.reveal(submitted_ticket, grant_id)
    assert response.status_code == 503
    page = response.get_data(as_text=True)
    assert "temporarily unavailable" in page
    assert "Traceback" not in page and "no Vault node reachable" not in page
    assert SAMPLE_ITEMS[0]["password"] not in page
