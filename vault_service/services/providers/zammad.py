"""Zammad webhooks, as documented in the admin documentation "Webhook" > "Adding Webhooks" and
"Webhook Payload" (https://admin-docs.zammad.org/en/latest/manage/webhook/add.html and
.../payload.html, Zammad 6.x, read 2026-11). The `sha1=` prefix of the signature is as
Zammad's source sends it to our knowledge, not confirmed in those pages: re-check it.

Signature: with an "HMAC SHA1 Signature Token" set, `X-Hub-Signature: sha1=<hex
HMAC-SHA1(token, raw body)>`. Delivery id: `X-Zammad-Delivery` (unique per delivery, kept by
Zammad's retries). Zammad signs no timestamp: replays are stopped by the delivery id.

Body: the default payload `{"ticket": {"id": 123, "number": "31001", "state": "closed", ...},
"article": {...}}` (a custom payload needs at least `ticket.id` and `ticket.state`). The ticket
reference is `ticket.id`, the id Zammad's API (and our connector) uses. States: closed closes;
new, open, pending reminder and pending close reopen (defaults).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from ...config import Settings
from ..inbound import TicketEvent
from ..lifecycle import validate_ticket_ref
from .base import (
    NativeProvider,
    RequestHeaders,
    content_delivery_id,
    field,
    json_object,
    require_json,
    require_signature,
    ticket_id,
    vendor_delivery_id,
)


def sign(secret: bytes, body: bytes) -> str:
    """Zammad's X-Hub-Signature value."""
    return "sha1=" + hmac.new(secret, body, hashlib.sha1).hexdigest()


class Zammad(NativeProvider):
    """Zammad trigger/scheduler webhooks."""

    name = "zammad"
    default_close_statuses = frozenset({"closed"})
    default_reopen_statuses = frozenset({"new", "open", "pending reminder", "pending close"})

    def read_event(
        self, settings: Settings, headers: RequestHeaders, body: bytes, now: datetime
    ) -> TicketEvent | None:
        require_signature(
            headers.get("X-Hub-Signature"),
            self.secrets(settings),
            lambda secret: sign(secret, body),
        )
        require_json(headers)
        payload = json_object(body)
        state = field(payload, "ticket", "state")
        if isinstance(state, dict):  # a custom payload may pass the state object
            state = state.get("name")
        event_type = self.classify(settings, state)
        ref = validate_ticket_ref(ticket_id(field(payload, "ticket", "id")))
        delivery_id = vendor_delivery_id(
            self.name, headers.get("X-Zammad-Delivery")
        ) or content_delivery_id(self.name, body)
        return None if event_type is None else TicketEvent(delivery_id, event_type, ref)


PROVIDER = Zammad()
