"""Zammad webhooks, verified against Zammad's own source, zammad/zammad at commit
bfa96f03ea45e9b204e56a568b1a1c3eef67caf2: app/jobs/trigger_webhook_job.rb (headers, payload,
retries) and lib/user_agent.rb (`set_signature`, `set_params`); and against the admin
documentation "Webhook Payload" (https://admin-docs.zammad.org/en/latest/manage/webhook/
payload.html, the same text in the 5.x, 6.3 and pre-release versions).

Signature: with an "HMAC SHA1 Signature Token" set, `X-Hub-Signature: sha1=<hex
HMAC-SHA1(token, raw body)>` (`OpenSSL::HMAC.hexdigest('sha1', token, request.body)`).
Delivery id: `X-Zammad-Delivery` = the ActiveJob's `job_id`, unchanged when `retry_on`
re-enqueues the job (4 retries, 10 s apart times the attempt). Zammad signs no timestamp:
replays are stopped by the delivery id. Other headers: `X-Zammad-Trigger` (the trigger's
name), `User-Agent: Zammad User Agent`, `Content-Type: application/json; charset=utf-8`.

Body: the default payload is `{ticket:, article:}.to_json` (compact), each record's attributes
with association names, keys sorted; `ticket.state` is the state's name ("closed"), while
owner, customer, group, priority and the like are nested objects. A custom payload needs at
least `ticket.id` and `ticket.state` (a state object with a `name` is accepted too). The
ticket reference is `ticket.id`, the id Zammad's API (and our connector) uses. States: closed
closes; new, open, pending reminder and pending close reopen (defaults).
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
