"""GLPI webhooks (GLPI 10.1/11), as documented in "Webhook" (https://help.glpi-project.org/
documentation/modules/configuration/webhook, read 2026-11) and implemented in GLPI's
src/Webhook.php (branch 11.0: the headers are computed when the webhook is queued).

Signature: `X-GLPI-signature` = hex(HMAC-SHA256(secret, raw body + `X-GLPI-timestamp`)), the
timestamp in Unix seconds. GLPI queues webhooks and sends them from its cron task
(QueuedWebhook), retries included, with the timestamp of the queuing: deliveries arrive late,
so the window is wide (VAULT_SERVICE_GLPI_TIMESTAMP_TOLERANCE_SECONDS, default 86400). GLPI
sends no delivery id: a delivery is recognised by the hash of body and timestamp.

Body: `{"event": "update", "item": {"id": 42, "status": {"id": 6, "name": "Closed"}, ...}}`
for an itemtype Ticket webhook (the status as the high-level API gives it; a plain number is
accepted too). Statuses by id: 6 (Closed) closes; 1 (New), 2 (Processing, assigned), 3
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
        require_json(headers)
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
