"""The ticket system's JSON API (v1): submission links, ticket status, and signed webhooks from
every inbound provider (services/providers/)."""

from __future__ import annotations

import hmac
from functools import cache
from importlib import resources
from pathlib import Path

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import NotFound

from ..clock import utcnow
from ..errors import BadRequest, Unauthorized, UnsupportedMediaType
from ..extensions import csrf, current_settings, current_vault
from ..models import JsonObject
from ..services import access_log, inbound, lifecycle, links, receipts, tickets
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


def optional_json_body() -> JsonObject:
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
def create_submission_link(ticket_ref: str) -> ResponseReturnValue:
    """Create a one-time submission link for a ticket (creating the ticket on first use)."""
    require_ticket_api_token()
    lifecycle.validate_ticket_ref(ticket_ref)
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
def get_ticket(ticket_ref: str) -> ResponseReturnValue:
    """A ticket's status, live credential count and latest purge receipt."""
    require_ticket_api_token()
    return jsonify(tickets.describe_ticket(ticket_ref).as_json())


@bp.get("/tickets/<ticket_ref>/links")
def list_links(ticket_ref: str) -> ResponseReturnValue:
    """Every submission link of a ticket with its state (open, used, expired, revoked)."""
    require_ticket_api_token()
    reports = links.list_links(ticket_ref)
    return jsonify(ticket_ref=ticket_ref, links=[report.as_json() for report in reports])


@bp.delete("/tickets/<ticket_ref>/links/<link_id>")
def revoke_link(ticket_ref: str, link_id: str) -> ResponseReturnValue:
    """Revoke an unused link: its holder gets the 410 of an unknown link from now on."""
    require_ticket_api_token()
    return jsonify(links.revoke_link(ticket_ref, link_id).as_json())


@bp.get("/tickets/<ticket_ref>/access-log")
def get_access_log(ticket_ref: str) -> ResponseReturnValue:
    """The ticket's audit records: submissions, grants, reveals, denials, close, purge."""
    require_ticket_api_token()
    return jsonify(ticket_ref=ticket_ref, records=access_log.access_log(ticket_ref))


@bp.get("/tickets/<ticket_ref>/receipts")
def list_receipts(ticket_ref: str) -> ResponseReturnValue:
    """Every deletion receipt of the ticket across reopen cycles, newest first."""
    require_ticket_api_token()
    views = receipts.list_receipts(ticket_ref)
    return jsonify(ticket_ref=ticket_ref, receipts=[view.as_json() for view in views])


@cache
def _openapi_document() -> bytes:
    """openapi.yaml: beside the package in the source tree, inside it in the wheel."""
    source_tree = Path(__file__).resolve().parents[2] / "openapi.yaml"
    if source_tree.is_file():
        return source_tree.read_bytes()
    return (resources.files("vault_service") / "_openapi" / "openapi.yaml").read_bytes()


@bp.get("/openapi.yaml")
def openapi_document() -> ResponseReturnValue:
    """The API's OpenAPI description. Public: it is the published contract, holding no secret."""
    response = Response(_openapi_document(), mimetype="application/yaml")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.post("/webhooks/<provider>")
def receive_webhook(provider: str) -> ResponseReturnValue:
    """A ticket event from a provider (Standard Webhooks at ticket-events); 404 unless enabled."""
    adapter = PROVIDERS.get(provider)
    settings = current_settings()
    if adapter is None or not adapter.is_enabled(settings):
        # The same answer as a path that was never routed: nothing tells which vendors exist.
        raise NotFound()
    body = request.get_data(cache=True)  # the signature covers the exact bytes
    event = adapter.read_event(settings, request.headers, body, utcnow())
    if event is None:
        # Genuine, but neither a close nor a reopen (another status, another event type).
        return jsonify(status="ignored"), 200
    receipt = inbound.receive_event(event)
    if not receipt.first_time:
        return jsonify(status="already_processed"), 200
    return jsonify(status="accepted", outcome=receipt.outcome), 202
