"""Freshdesk: the "Trigger webhook" action of an automation rule, as described in "Using
Webhooks in automation rules" (https://support.freshdesk.com/support/solutions/articles/
132589-using-webhooks-in-automation-rules). That article is not available to this project's
reading itself; the copies that are (a partner's mirror dated 2026-01-29 and a 2022 Portuguese
translation) cover what the action is for but not its configuration fields. So two details
rest on our knowledge of the product, not on a page read: that the action can send custom
headers, and the placeholder names. Freshdesk documents no signature for these webhooks
(nothing to verify was found in any source).

Freshdesk signs nothing. The rule sends a custom header, `X-Vault-Service-Webhook-Secret:
<VAULT_SERVICE_FRESHDESK_WEBHOOK_SECRET>`, compared in constant time: a bearer secret, so
anyone who sees one request (HTTPS only) can forge more, and no replay protection is
possible. Freshdesk sends no delivery id either: a delivery is recognised by the hash of its
body for an hour (retries), after which the same bytes count as a new event (a ticket closed,
reopened and closed again sends identical bodies).

Body (content type JSON): advanced `{"ticket_id": "{{ticket.id}}", "status":
"{{ticket.status}}"}`, or simple `{"freshdesk_webhook": {"ticket_id": ..., "ticket_status":
...}}`. Statuses by name or code: Closed (5) closes; Open (2) and Pending (3) reopen (defaults;
4 is Resolved).
"""

from __future__ import annotations

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
    json_object,
    require_json,
    ticket_id,
)

SECRET_HEADER = "X-Vault-Service-Webhook-Secret"  # noqa: S105 - a header's name, not a secret
# Freshdesk retries a failed webhook within minutes; an hour covers them.
DEDUPE_SECONDS = 3600


class Freshdesk(NativeProvider):
    """Freshdesk automation-rule webhooks, authenticated by a secret header."""

    name = "freshdesk"
    default_close_statuses = frozenset({"closed", "5"})
    default_reopen_statuses = frozenset({"open", "pending", "2", "3"})

    def read_event(
        self, settings: Settings, headers: RequestHeaders, body: bytes, now: datetime
    ) -> TicketEvent | None:
        offered = headers.get(SECRET_HEADER, "").encode()
        matches = [hmac.compare_digest(offered, s) for s in self.secrets(settings)]
        if not offered or not any(matches):
            raise Unauthorized("Invalid or missing webhook secret.")
        require_json(headers)
        payload = json_object(body)
        simple = payload.get("freshdesk_webhook")
        if isinstance(simple, dict):
            ref, status = simple.get("ticket_id"), simple.get("ticket_status")
        else:
            ref, status = payload.get("ticket_id"), payload.get("status")
        event_type = self.classify(settings, status)
        ref = validate_ticket_ref(ticket_id(ref))
        delivery_id = content_delivery_id(self.name, body)
        if event_type is None:
            return None
        return TicketEvent(delivery_id, event_type, ref, dedupe_seconds=DEDUPE_SECONDS)


PROVIDER = Freshdesk()
