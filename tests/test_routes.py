"""Deny by default: every route is public by name, machine-authenticated, or needs an agent."""

from __future__ import annotations

import re

import pytest

from vault_service.views import MACHINE_ENDPOINTS, PUBLIC_ENDPOINTS

STATE_CHANGING = {
    "agent.logout": "/logout",
    "agent.request_access": "/tickets/T-1/access",
    "agent.reveal": "/tickets/T-1/reveal",
}


def concrete_path(rule) -> str:
    """A URL for a rule, with every variable filled in."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", "T-1", rule.rule)


def test_every_route_is_either_listed_public_machine_authenticated_or_refused(app, client):
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(concrete_path(rule), method=method)
            checked += 1
            if rule.endpoint in MACHINE_ENDPOINTS:
                assert response.status_code == 401, (rule.endpoint, method)
            elif method == "GET":
                assert response.status_code == 302, (rule.endpoint, method)
                assert response.headers["Location"].startswith("/login")
            else:
                # Without a session there is no CSRF token either: refused before any view runs.
                assert response.status_code in (302, 400), (rule.endpoint, method)
    assert checked >= 8


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
