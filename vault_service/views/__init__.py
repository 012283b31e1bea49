"""Thin blueprints, and the deny-by-default guard that covers every one of them."""

from __future__ import annotations

from flask import Flask, redirect, request, url_for
from flask_login import current_user

from ..errors import Unauthorized, wants_json

# Views reachable without an agent session. Everything else needs a logged-in agent; the route
# walk in tests/test_routes.py fails if a new route escapes both lists.
PUBLIC_ENDPOINTS = frozenset(
    {
        "static",
        "health.healthz",
        "health.readyz",
        "customer.submission_form",
        "customer.submit",
        "customer.brand_logo",
        "auth.login",
        "auth.login_submit",
    }
)
# Views for the ticket system: each authenticates the machine itself (bearer token or
# webhook signature) instead of an agent session.
MACHINE_ENDPOINTS = frozenset(
    {"api.create_submission_link", "api.get_ticket", "api.receive_webhook"}
)


def register_blueprints(app: Flask) -> None:
    """Attach every blueprint and the guard."""
    from . import api, auth, customer, health, tickets

    for module in (auth, tickets, api, customer, health):
        app.register_blueprint(module.bp)
    app.before_request(require_agent_unless_public)


def require_agent_unless_public() -> object | None:
    """Deny by default: unknown and private endpoints need a logged-in agent."""
    endpoint = request.endpoint
    if endpoint in PUBLIC_ENDPOINTS or endpoint in MACHINE_ENDPOINTS:
        return None
    if endpoint is None:
        return None  # no route matched: the 404/405 handler answers
    if current_user.is_authenticated:
        return None
    if wants_json():
        raise Unauthorized()
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
