"""The ticket system's JSON API (v1): submission links, ticket status, and signed webhooks from
every inbound provider (services/providers/)."""

from __future__ import annotations

import hmac

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import NotFound

from ..clock import utcnow
from ..errors import BadRequest, Unauthorized, UnsupportedMediaType
from ..extensions import csrf, current_settings, current_vault
from ..services import inbound, tickets
from ..services.providers import PROVIDERS
from ..services.tickets import link_url

bp = Blueprint("api", __name__, url_prefix="/api/v1")
# Machine clients authenticate every request themselves; there is no browser session to forge.
csrf.exempt(bp)


def require_ticket_api_token() -> None:
    """Bearer token check, constant-time against every configured token (rotation)."""
    header = request.headers.get("Authorization", "")
    scheme, _, offered = header.partition(" ")
    if scheme.lower() != "bearer" or not offered:
        raise Unauthorized("A bearer token is required.")
    matches = [
        hmac.compare_digest(offered.encode(), token.encode())
        for token in current_settings().ticket_api_tokens
    ]
    if not any(matches):
        raise Unauthorized("Invalid bearer token.")


def optional_json_body() -> dict:
    """The request's JSON object ({} for no body); 415 for another media type, 400 malformed."""
    if not request.get_data():
        return {}
    if not request.is_json:
        raise UnsupportedMediaType()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


@bp.post("/tickets/<ticket_ref>/submission-links")
def create_submission_link(ticket_ref: str):
    """Create a one-time submission link for a ticket (creating the ticket on first use)."""
    require_ticket_api_token()
    tickets.validate_ticket_ref(ticket_ref)
    body = optional_json_body()
    unknown = set(body) - {"ttl_seconds", "message", "locale"}
    if unknown:
        raise BadRequest(f"Unknown fields: {', '.join(sorted(unknown))}.")
    # null is not "omitted": the contract's types say so, and a typo'd client learns it now.
    for name, kind in (
        ("ttl_seconds", "an integer"),
        ("message", "a string"),
        ("locale", "a string"),
    ):
        if name in body and body[name] is None:
            raise BadRequest(f"{name} must be {kind}; omit it for the default.")
    link, token = tickets.create_submission_link(
        current_settings(),
        current_vault(),
        ticket_ref,
        ttl_seconds=body.get("ttl_seconds"),
        message=body.get("message"),
        locale=body.get("locale"),
    )
    return (
        jsonify(
            link_id=link.id,
            url=link_url(current_settings(), token),
            expires_at=link.expires_at.isoformat(),
        ),
        201,
    )


@bp.get("/tickets/<ticket_ref>")
def get_ticket(ticket_ref: str):
    """A ticket's status, live credential count and latest purge receipt."""
    require_ticket_api_token()
    return jsonify(tickets.describe_ticket(ticket_ref).as_json())


@bp.post("/webhooks/<provider>")
def receive_webhook(provider: str):
    """A ticket event from a provider (Standard Webhooks at ticket-events); 404 unless enabled."""
    adapter = PROVIDERS.get(provider)
    settings = current_settings()
    if adapter is None or not adapter.is_enabled(settings):
        # The same answer as a path that was never routed: nothing tells which vendors exist.
        raise NotFound()
    body = request.get_data(cache=True)  # the signature covers the exact bytes
    event = adapter.read_event(settings, request.headers, body, utcnow())
    receipt = inbound.receive_event(event)
    if not receipt.first_time:
        return jsonify(status="already_processed"), 200
    return jsonify(status="accepted", outcome=receipt.outcome), 202
