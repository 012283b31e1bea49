"""Standard Webhooks (standardwebhooks.com): signing, verification, and the ticket system's
`ticket.closed` / `ticket.reopened` deliveries to POST /api/v1/webhooks/ticket-events (v1).

`sign` and `signed_headers` are the one implementation of the format: verification here, the
tests and the bench build their deliveries with them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Iterable
from datetime import datetime

from werkzeug.http import parse_options_header

from ...config import Settings
from ...errors import BadRequest, Unauthorized, UnsupportedMediaType
from ...request_body import strict_loads
from ..inbound import TicketEvent, TicketEventType
from ..lifecycle import validate_ticket_ref
from .base import InboundProvider, RequestHeaders

EVENT_TYPES = {"ticket.closed": TicketEventType.CLOSED, "ticket.reopened": TicketEventType.REOPENED}
MAX_WEBHOOK_ID_LENGTH = 128


def sign(secret: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of a delivery."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(
    secrets: Iterable[bytes],
    body: bytes,
    *,
    webhook_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The headers of a JSON delivery, with one signature per secret (a receiver rotating its
    secret accepts either)."""
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, webhook_id, timestamp, body) for s in secrets),
        "Content-Type": "application/json",
    }


def verify_signature(
    settings: Settings, headers: RequestHeaders, body: bytes, now: datetime
) -> str:
    """Check id, timestamp tolerance and any of the signatures; return the webhook id."""
    webhook_id = headers.get("webhook-id", "")
    timestamp_header = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not webhook_id or not timestamp_header or not signatures:
        raise Unauthorized("Missing webhook signature headers.")
    if len(webhook_id) > MAX_WEBHOOK_ID_LENGTH or not webhook_id.isprintable():
        raise Unauthorized("Invalid webhook-id.")
    # Digits only, as the spec's reference implementations parse it: int() would also take
    # "+1795902519", " 17", "1_7" or Unicode digits, each a second spelling of one signed value.
    if (
        not (timestamp_header.isascii() and timestamp_header.isdigit())
        or len(timestamp_header) > 12
    ):
        raise Unauthorized("Invalid webhook-timestamp.")
    timestamp = int(timestamp_header)
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
        event = strict_loads(body)
    except ValueError:
        raise BadRequest("The body is not valid JSON.") from None
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        raise BadRequest('Expected {"type": ..., "data": {"ticket_ref": ...}}.')
    event_type = event.get("type")
    # isinstance first: `{} in EVENT_TYPES` raises TypeError (unhashable), a 500.
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise BadRequest("type must be ticket.closed or ticket.reopened.")
    return event_type, validate_ticket_ref(event["data"].get("ticket_ref"))


def _is_json(content_type: str) -> bool:
    """Whether a Content-Type is JSON, as Flask's `request.is_json` decides."""
    mimetype = parse_options_header(content_type)[0].lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


class StandardWebhooks(InboundProvider):
    """The ticket system signing per Standard Webhooks with VAULT_SERVICE_WEBHOOK_SECRET."""

    # The v1 contract's path; the webhook ids are kept as sent (earlier deliveries are recorded so).
    name = "ticket-events"
    native = False

    def is_enabled(self, settings: Settings) -> bool:
        return bool(settings.webhook_secrets)

    def read_event(
        self, settings: Settings, headers: RequestHeaders, body: bytes, now: datetime
    ) -> TicketEvent:
        webhook_id = verify_signature(settings, headers, body, now)
        if not _is_json(headers.get("Content-Type", "")):
            raise UnsupportedMediaType()
        event_type, ticket_ref = parse_event(body)
        return TicketEvent(webhook_id, EVENT_TYPES[event_type], ticket_ref)


PROVIDER = StandardWebhooks()
