"""GLPI webhooks (GLPI 11; the webhook feature was developed as "10.1"), verified against GLPI's
own source, glpi-project/glpi at commit 0042059c82075d3223c145cb3609a83019fc0cd2:
src/Webhook.php (`raise()`, `getSignature()`, `getWebhookBody()`) and src/QueuedWebhook.php
(`sendById()`, `getPendings()`, `cronQueuedWebhook()`). GLPI's help page "Webhook"
(https://help.glpi-project.org/documentation/modules/configuration/webhook) is not available
to this project's reading; the source is the authority followed here.

Signature: `X-GLPI-signature` = hex(HMAC-SHA256(secret, body . X-GLPI-timestamp)), i.e.
`hash_hmac('sha256', $body . $timestamp, $secret)` with `$timestamp = time()` (Unix seconds)
taken when the webhook is *queued*. GLPI stores body and headers in its queue and its cron task
(`queuedwebhook`, at least a minute after queuing) sends them as stored, retrying every
delivery that got no answer or a 4xx/5xx up to the webhook's retry count: deliveries arrive
late and a retry carries the same timestamp, so the window is wide
(VAULT_SERVICE_GLPI_TIMESTAMP_TOLERANCE_SECONDS, default 86400). GLPI sends no delivery id: a
delivery is recognised by the hash of body and timestamp (identical on every retry).

Headers: GLPI sends only X-GLPI-signature, X-GLPI-timestamp and the webhook's custom headers,
with the body as a raw string: no Content-Type unless the administrator adds one. A delivery
with no Content-Type is therefore read as JSON; one labelled otherwise is 415.

Body: the default payload is `json_encode(['item' => <the item as the high-level API's GET
/Assistance/Ticket/{id} returns it>, 'event' => 'update'], JSON_PRETTY_PRINT)`; the API's
Ticket schema gives `status` as `{"id": 6, "name": "Closed"}` (src/Api/HL/Controller/
ITILController.php). A custom payload passing the status as a plain number is accepted too.
Statuses by id (CommonITILObject): 6 (Closed) closes; 1 (New), 2 (Processing, assigned), 3
(Processing, planned) and 4 (Pending) reopen (defaults; 5 is Solved). Other events are ignored.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from ...config import Settings
from ...errors import Unauthorized
from ..inbound import TicketEvent
from ..lifecycle import validate_ticket_ref
from .base import (
    NativeProvider,
    RequestHeaders,
    content_delivery_id,
    field,
    json_object,
    require_fresh,
    require_json,
    require_signature,
    ticket_id,
)


def sign(secret: bytes, body: bytes, timestamp: str) -> str:
    """GLPI's X-GLPI-signature value."""
    return hmac.new(secret, body + timestamp.encode(), hashlib.sha256).hexdigest()


class Glpi(NativeProvider):
    """GLPI webhooks on the Ticket itemtype, update event."""

    name = "glpi"
    default_close_statuses = frozenset({"6"})
    default_reopen_statuses = frozenset({"1", "2", "3", "4"})
    default_tolerance_seconds = 24 * 3600

    def read_event(
        self, settings: Settings, headers: RequestHeaders, body: bytes, now: datetime
    ) -> TicketEvent | None:
        timestamp = headers.get("X-GLPI-timestamp", "")
        require_signature(
            headers.get("X-GLPI-signature"),
            self.secrets(settings),
            lambda secret: sign(secret, body, timestamp),
        )
        if not timestamp.isdigit():
            raise Unauthorized("Invalid webhook timestamp.")
        require_fresh(self, settings, int(timestamp), now)
        require_json(headers, unlabelled_is_json=True)
        payload = json_object(body)
        if payload.get("event") != "update":
            return None
        status = field(payload, "item", "status")
        if isinstance(status, dict):
            status = status.get("id")
        event_type = self.classify(settings, status)
        ref = validate_ticket_ref(ticket_id(field(payload, "item", "id")))
        delivery_id = content_delivery_id(self.name, body, timestamp.encode())
        return None if event_type is None else TicketEvent(delivery_id, event_type, ref)


PROVIDER = Glpi()
