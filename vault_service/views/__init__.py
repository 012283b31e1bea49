"""Thin blueprints, and the deny-by-default guard that covers every one of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

import flask_login
from flask import Flask, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.wrappers import Response

from ..errors import Unauthorized, wants_json
from ..extensions import csrf

# Views reachable without an agent session. Everything else needs a logged-in agent; the route
# walk in tests/test_routes.py fails if a new route escapes both lists.
PUBLIC_ENDPOINTS = frozenset(
    {
        "static",
        "health.healthz",
        "health.readyz",
        "customer.submission_form",
        "customer.submit",
        # The customer's status page: its token is the capability (views/status.py).
        "status.show",
        "status.act",
        "customer.brand_logo",
        "auth.login",
        "auth.login_submit",
        # A new agent's one-time set-up link: its token is the capability (views/agent_setup.py).
        "auth.agent_setup_form",
        "auth.agent_setup_submit",
        # Sign-in through the identity provider (views/oidc.py): the provider's redirect back,
        # and the TOTP step after it when the provider asserted no second factor.
        "auth.oidc_start",
        "auth.oidc_callback",
        "auth.oidc_code",
        "auth.oidc_code_submit",
        # Guarded by its own address allow-list (VAULT_SERVICE_METRICS_ALLOW), not a session:
        # a Prometheus server has none. Anyone else gets a 404.
        "metrics.metrics",
        # Published on purpose: the receipt-verifying keys and the API's description.
        "wellknown.jwks",
        "api.openapi_document",
    }
)
# Views for the ticket system: each authenticates the machine itself (bearer token or
# webhook signature) instead of an agent session.
MACHINE_ENDPOINTS = frozenset(
    {
        "api.create_submission_link",
        "api.get_ticket",
        "api.receive_webhook",
        "api.list_links",
        "api.revoke_link",
        "api.get_access_log",
        "api.list_receipts",
        # The identity provider's back-channel logout: a logout token it signed.
        "auth.oidc_backchannel_logout",
    }
)


def register_blueprints(app: Flask) -> None:
    """Attach every blueprint and the guard."""
    # oidc and agent_setup add their routes to auth's blueprint (its login steps share auth's
    # limits).
    from . import (  # noqa: F401
        admin,
        agent_setup,
        api,
        auth,
        customer,
        health,
        oidc,
        status,
        tickets,
        wellknown,
    )

    for module in (auth, tickets, admin, api, customer, status, health, wellknown):
        app.register_blueprint(module.bp)
    app.before_request(require_agent_unless_public)


def require_agent_unless_public() -> Response | None:
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


View = TypeVar("View", bound=Callable[..., ResponseReturnValue])


def login_required(view: View) -> View:
    """flask-login's login_required, typed (flask-login ships no types); the guard above already
    denies by default, this marks the views that need an agent where they are defined."""
    return cast(View, flask_login.login_required(view))


def csrf_exempt(view: View) -> View:
    """Flask-WTF's csrf.exempt for one view, typed (Flask-WTF ships no types): for the views a
    capability token, a bearer token or a signature guards instead of a session."""
    return cast(View, csrf.exempt(view))
