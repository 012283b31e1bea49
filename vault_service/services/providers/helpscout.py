"""Help Scout webhooks, verified against Help Scout's "Webhooks" page
(https://developer.helpscout.com/webhooks/, Mailbox API 2.0; the same text at the older
developer.helpscout.net/help-desk-api/webhooks/).

Signature: `X-HelpScout-Signature` = base64(HMAC-SHA1(secret key, raw body)), the page's PHP
example being `base64_encode(hash_hmac('sha1', $data, WEBHOOK_SECRET_KEY, true))` over the
request's raw input; the event name is in `X-HelpScout-Event` (the page: "Each webhook includes
two Help Scout headers"). Help Scout signs no timestamp and sends no delivery id, so a delivery
is recognised by the hash of its event name and body (a conversation's body carries its
modification times, so two status changes never hash alike).

Events (the page's table): `convo.status` (body: the v2 Conversation object, `{"id": 123,
"status": "closed", ...}`) and `convo.deleted` (`{id: id-of-convo-that-was-deleted}`, which
closes: the conversation is gone). Statuses: closed closes; active and pending reopen
(defaults; Help Scout also has spam). The ticket reference is the conversation id. Other events
are ignored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

from ...config import Settings
from ..inbound import TicketEvent, TicketEventType
from ..lifecycle import validate_ticket_ref
from .base import (
    NativeProvider,
    RequestHeaders,
    content_delivery_id,
    json_object,
    require_json,
    require_signature,
    ticket_id,
)


def sign(secret: bytes, body: bytes) -> str:
    """Help Scout's X-HelpScout-Signature value."""
    return base64.b64encode(hmac.new(secret, body, hashlib.sha1).digest()).decode("ascii")


class HelpScout(NativeProvider):
    """Help Scout Webhooks app deliveries for conversation status changes and deletions."""

    name = "helpscout"
    default_close_statuses = frozenset({"closed"})
    default_reopen_statuses = frozenset({"active", "pending"})

    def read_event(
        self, settings: Settings, headers: RequestHeaders, body: bytes, now: datetime
    ) -> TicketEvent | None:
        require_signature(
            headers.get("X-HelpScout-Signature"),
            self.secrets(settings),
            lambda secret: sign(secret, body),
        )
        require_json(headers)
        payload = json_object(body)
        event_name = headers.get("X-HelpScout-Event", "")
        event_type: TicketEventType | None
        if event_name == "convo.deleted":
            event_type = TicketEventType.CLOSED
        elif event_name == "convo.status":
            event_type = self.classify(settings, payload.get("status"))
        else:
            return None
        ref = validate_ticket_ref(ticket_id(payload.get("id")))
        delivery_id = content_delivery_id(self.name, event_name.encode(), body)
        return None if event_type is None else TicketEvent(delivery_id, event_type, ref)


PROVIDER = HelpScout()
