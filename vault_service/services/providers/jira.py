"""Jira Cloud (and Jira Service Management) admin webhooks, as documented in "Webhooks"
(https://developer.atlassian.com/cloud/jira/platform/webhooks/, "Secure admin webhooks" and
"Example callback for an issue-related event"). In 2026-11 this page was known here only
through secondary sources quoting it (integration libraries' docs), not read itself: re-check
the header names and the status-category field against it.

Signature: `X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>` (WebSub
method=signature), sent when the admin webhook has a secret. Delivery id:
`X-Atlassian-Webhook-Identifier` (the same on every retry); Jira signs no timestamp, so replays
are stopped by that id alone.

Body: `{"webhookEvent": "jira:issue_updated", "issue": {"key": "SD-5", "fields": {"status":
{"statusCategory": {"key": "done"}}}}, "changelog": {"items": [{"field": "status", ...}]}}`.
Only an update whose changelog changes the status counts; the new status's category decides:
done closes, new and indeterminate reopen (defaults; status categories are the same on every
Jira site, status names are not). The ticket reference is the issue key.
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
