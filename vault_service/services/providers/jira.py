"""Jira Cloud (and Jira Service Management) admin webhooks.

Sources. Atlassian's page "Webhooks" (https://developer.atlassian.com/cloud/jira/platform/
webhooks/, last updated Dec 13, 2024) is stored here only as its overview: the sections "Secure
admin webhooks" and "Example callback for an issue-related event" are not in the copies this
project could read, so the details below come from these instead:
- the signature: Atlassian's own "Managing webhooks" for Jira Data Center
  (https://confluence.atlassian.com/adminjiraserver/managing-webhooks-938846912.html): a
  webhook with a secret sends `X-Hub-Signature: sha256=<HMAC-SHA256 of the received body,
  keyed with the secret>`; Jira Cloud sends the same header (WebSub method=signature) for
  admin webhooks with a secret, as client libraries that verify it document (jira.js
  `verifyWebhookSignature`, trigger.dev's Jira source, n8n PR #8822);
- the delivery id: `X-Atlassian-Webhook-Identifier`, "unique within the site and unchanged
  across retries" (jira.js `WebhookHeaders`, captured from a real site), and Atlassian's
  announcement of the retry policy (https://community.developer.atlassian.com/t/
  new-jira-cloud-webhook-retry-policy/30554: retries on 408, 409, 425, 429, 5xx or no
  answer, for up to 30 minutes, with `X-Atlassian-Webhook-Retry`). Jira signs no timestamp:
  replays are stopped by that id alone.

Body: `{"webhookEvent": "jira:issue_updated", "issue": {"key": "SD-5", "fields": {"status":
{"statusCategory": {"key": "done"}}}}, "changelog": {"items": [{"field": "status", ...}]}}`
(the issue as the REST API returns it; the changelog of the update). Only an update whose
changelog changes the status counts; the new status's category decides: done closes, new and
indeterminate reopen (defaults; status categories are the same on every Jira site, status
names are not). The ticket reference is the issue key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
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

ISSUE_UPDATED = "jira:issue_updated"


def sign(secret: bytes, body: bytes) -> str:
    """Jira's X-Hub-Signature value."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _changes_status(payload: Mapping[str, object]) -> bool:
    items = field(payload, "changelog", "items")
    return isinstance(items, list) and any(
        isinstance(item, dict) and item.get("field") == "status" for item in items
    )


class Jira(NativeProvider):
    """Jira admin webhooks for jira:issue_updated."""

    name = "jira"
    default_close_statuses = frozenset({"done"})
    default_reopen_statuses = frozenset({"new", "indeterminate"})

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
        if payload.get("webhookEvent") != ISSUE_UPDATED or not _changes_status(payload):
            return None
        category = field(payload, "issue", "fields", "status", "statusCategory", "key")
        event_type = self.classify(settings, category)
        ref = validate_ticket_ref(ticket_id(field(payload, "issue", "key")))
        delivery_id = vendor_delivery_id(
            self.name, headers.get("X-Atlassian-Webhook-Identifier")
        ) or content_delivery_id(self.name, body)
        return None if event_type is None else TicketEvent(delivery_id, event_type, ref)


PROVIDER = Jira()
