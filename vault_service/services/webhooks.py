"""Ticket-system webhooks, signed per the Standard Webhooks specification."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from ..config import Settings
from ..errors import BadRequest, Unauthorized
from ..extensions import db
from ..models import WebhookDelivery
from .lifecycle import close_ticket, reopen_ticket
from .tickets import validate_ticket_ref

EVENT_HANDLERS = {"ticket.closed": close_ticket, "ticket.reopened": reopen_ticket}
MAX_WEBHOOK_ID_LENGTH = 128


def sign(secret: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of a delivery (used by tests and integrators' examples)."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify_signature(
    settings: Settings, headers: Mapping[str, str], body: bytes, now: datetime
) -> str:
    """Check id, timestamp tolerance and any of the signatures; return the webhook id."""
    webhook_id = headers.get("webhook-id", "")
    timestamp_header = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not webhook_id or not timestamp_header or not signatures:
        raise Unauthorized("Missing webhook signature headers.")
    if len(webhook_id) > MAX_WEBHOOK_ID_LENGTH or not webhook_id.isprintable():
        raise Unauthorized("Invalid webhook-id.")
    try:
        timestamp = int(timestamp_header)
    except ValueError:
        raise Unauthorized("Invalid webhook-timestamp.") from None
    # Whole seconds, as the Standard Webhooks reference implementations compare.
    if abs(int(now.timestamp()) - timestamp) > settings.webhook_tolerance_seconds:
        raise Unauthorized("The webhook timestamp is outside the allowed tolerance.")
    # Any configured secret may match any offered signature: the sender rotates by signing with
    # old and new secrets, we rotate by configuring both for a while.
    for secret in settings.webhook_secrets:
        expected = sign(secret, webhook_id, timestamp, body)
        for offered in signatures.split():
            if hmac.compare_digest(offered.encode(), expected.encode()):
                return webhook_id
    raise Unauthorized("Invalid webhook signature.")


def parse_event(body: bytes) -> tuple[str, str]:
    """(event type, ticket_ref) of a verified delivery; BadRequest when malformed."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The body is not valid JSON.") from None
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        raise BadRequest('Expected {"type": ..., "data": {"ticket_ref": ...}}.')
    event_type = event.get("type")
    # isinstance first: `{} in EVENT_HANDLERS` raises TypeError (unhashable), a 500.
    if not isinstance(event_type, str) or event_type not in EVENT_HANDLERS:
        raise BadRequest("type must be ticket.closed or ticket.reopened.")
    return event_type, validate_ticket_ref(event["data"].get("ticket_ref"))


def handle_delivery(webhook_id: str, event_type: str, ticket_ref: str) -> tuple[bool, str]:
    """Apply an event once per webhook-id, in one transaction with its delivery record.

    Returns (first time?, outcome). The state change and the durable purge job are committed
    together before the caller answers, so an acknowledged close is never lost.
    """
    if db.session.get(WebhookDelivery, webhook_id) is not None:
        db.session.rollback()
        return False, "already_processed"
    db.session.add(WebhookDelivery(webhook_id=webhook_id, event_type=event_type))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return False, "already_processed"
    outcome = EVENT_HANDLERS[event_type](ticket_ref, actor="ticket-system")
    try:
        db.session.commit()
    except IntegrityError:
        # A concurrent delivery of the same id committed first.
        db.session.rollback()
        return False, "already_processed"
    return True, outcome
