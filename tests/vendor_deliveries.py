"""Deliveries shaped as each help desk's documentation shows them, signed the vendor's way.

The signatures are computed here from the vendors' documented formulas with the standard
library, not with the adapters' own `sign` helpers, so a wrong formula in an adapter fails."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Vendor:
    """One help desk: how it builds and signs a status-change delivery, and its statuses."""

    name: str  # the provider's path segment
    deliver: Callable[..., tuple[bytes, dict]]  # (ref, status, secret, timestamp, id) -> ...
    ref: Callable[[int], str]  # the vendor's ticket id for a number
    close: str
    reopen: str
    unmapped: str  # a genuine status that neither closes nor reopens by default
    signs_timestamp: bool
    tolerance: int | None = None


def _json(payload: dict) -> bytes:
    return json.dumps(payload, indent=2).encode()


def zendesk_event(ref, status, secret, timestamp, delivery_id):
    """The "Ticket status changed" event (zendesk_event_version 2022-11-06)."""
    body = _json(
        {
            "account_id": 12514403,
            "detail": {
                "actor_id": "8447388090494",
                "assignee_id": "8447388090494",
                "brand_id": "8447346621310",
                "created_at": "2025-01-08T10:12:07Z",
                "description": "ticket_description",
                "external_id": None,
                "form_id": "8646151517822",
                "group_id": "8447346622462",
                "id": ref,
                "is_public": True,
                "organization_id": "8447346622846",
                "priority": "LOW",
                "requester_id": "8447388090494",
                "status": status.upper(),
                "subject": "ticket_subject",
                "submitter_id": "8447388090494",
                "tags": ["tag1"],
                "type": "TASK",
                "updated_at": "2025-01-08T10:12:07Z",
                "via": {"channel": "web_form"},
            },
            "event": {"current": status.upper(), "previous": "OPEN"},
            "id": delivery_id,
            "subject": f"zen:ticket:{ref}",
            "time": "2025-01-08T10:12:07.672717030Z",
            "type": "zen:event-type:ticket.status_changed",
            "zendesk_event_version": "2022-11-06",
        }
    )
    return body, _zendesk_headers(body, secret, timestamp)


def zendesk_trigger(ref, status, secret, timestamp, delivery_id):
    """A trigger's JSON body with {{ticket.id}} and {{ticket.status}} rendered."""
    body = json.dumps({"ticket_id": ref, "status": status.capitalize()}).encode()
    return body, _zendesk_headers(body, secret, timestamp)


def _zendesk_headers(body: bytes, secret: str, timestamp: int) -> dict:
    # "base64(HMACSHA256(TIMESTAMP + BODY))", the timestamp as Zendesk sends it (ISO 8601).
    stamp = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = hmac.new(secret.encode(), stamp.encode() + body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "X-Zendesk-Webhook-Id": "01GQX6Y8R9TT5S8J3SBX8YZT3T",
        "X-Zendesk-Webhook-Signature": base64.b64encode(digest).decode(),
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
    }


def jira(ref, category, secret, timestamp, delivery_id):
    """An admin webhook's jira:issue_updated callback whose changelog changes the status."""
    names = {"done": "Done", "indeterminate": "In Progress", "new": "To Do"}
    body = _json(
        {
            "timestamp": timestamp * 1000,
            "webhookEvent": "jira:issue_updated",
            "issue_event_type_name": "issue_generic",
            "user": {"accountId": "5b10a2844c20165700ede21g", "displayName": "Mia Krystof"},
            "issue": {
                "id": "10004",
                "self": "https://example.atlassian.net/rest/api/2/10004",
                "key": ref,
                "fields": {
                    "summary": "Cannot upload to the FTP server",
                    "status": {
                        "name": names.get(category, "Triage"),
                        "id": "10001",
                        "statusCategory": {"id": 3, "key": category, "name": "Done"},
                    },
                },
            },
            "changelog": {
                "id": "10100",
                "items": [
                    {
                        "field": "status",
                        "fieldtype": "jira",
                        "fieldId": "status",
                        "from": "3",
                        "fromString": "In Progress",
                        "to": "10001",
                        "toString": names.get(category, "Triage"),
                    }
                ],
            },
        }
    )
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json; charset=utf-8",
        "X-Atlassian-Webhook-Identifier": delivery_id,
        "X-Atlassian-Webhook-Flow": "Primary",
        "X-Hub-Signature": f"sha256={signature}",
    }


def zammad(ref, state, secret, timestamp, delivery_id):
    """The default payload of a trigger's webhook (ticket and article)."""
    body = _json(
        {
            "ticket": {
                "id": int(ref),
                "number": f"3100{ref}",
                "title": "Cannot upload to the FTP server",
                "state": state,
                "state_id": 4,
                "priority": "2 normal",
                "group": "Users",
                "customer": {"email": "nicole.braun@zammad.org", "id": 2},
                "updated_at": "2020-11-13T14:34:35.282Z",
            },
            "article": {"id": 104, "ticket_id": int(ref), "type": "note", "internal": True},
        }
    )
    signature = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "User-Agent": "Zammad User Agent",
        "X-Zammad-Trigger": "vault_service close",
        "X-Zammad-Delivery": delivery_id,
        "X-Hub-Signature": f"sha1={signature}",
    }


def helpscout(ref, status, secret, timestamp, delivery_id):
    """convo.status with the v2 Conversation object."""
    modified = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = _json(
        {
            "id": int(ref),
            "number": 3,
            "type": "email",
            "folderId": 1234,
            "status": status,
            "state": "published",
            "subject": "Cannot upload to the FTP server",
            "mailboxId": 85,
            "createdAt": "2012-10-10T12:00:00Z",
            "userUpdatedAt": modified,
            "closedAt": modified if status == "closed" else None,
            "primaryCustomer": {"id": 100, "email": "bear@acme.com", "type": "customer"},
            # Different per event, as Help Scout's own fields would be.
            "_embedded": {"threads": [{"id": delivery_id}]},
        }
    )
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha1).digest())
    return body, {
        "Content-Type": "application/json",
        "X-HelpScout-Event": "convo.status",
        "X-HelpScout-Signature": signature.decode(),
    }


def glpi(ref, status, secret, timestamp, delivery_id):
    """A Ticket / update webhook: the item as the high-level API shows it."""
    names = {"6": "Closed", "2": "Processing (assigned)", "5": "Solved"}
    body = json.dumps(
        {
            "event": "update",
            "item": {
                "id": int(ref),
                "name": "Cannot upload to the FTP server",
                "status": {"id": int(status), "name": names.get(status, "New")},
                "entity": {"id": 0, "name": "Root entity"},
                "date_mod": datetime.fromtimestamp(timestamp, UTC).isoformat(),
            },
        }
    ).encode()
    stamp = str(timestamp)
    signature = hmac.new(secret.encode(), body + stamp.encode(), hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "X-GLPI-signature": signature,
        "X-GLPI-timestamp": stamp,
    }


def freshdesk(ref, status, secret, timestamp, delivery_id):
    """An automation rule's "Trigger webhook" with advanced JSON content and a custom header."""
    body = json.dumps({"ticket_id": ref, "status": status}).encode()
    return body, {
        "Content-Type": "application/json",
        "X-Vault-Service-Webhook-Secret": secret,
    }


VENDORS = [
    Vendor("zendesk", zendesk_event, str, "closed", "open", "solved", True, 300),
    Vendor("zendesk", zendesk_trigger, str, "closed", "pending", "solved", True, 300),
    Vendor("jira", jira, lambda n: f"SD-{n}", "done", "indeterminate", "undefined", False),
    Vendor("zammad", zammad, str, "closed", "open", "merged", False),
    Vendor("helpscout", helpscout, str, "closed", "active", "spam", False),
    Vendor("glpi", glpi, str, "6", "2", "5", True, 24 * 3600),
    Vendor("freshdesk", freshdesk, str, "Closed", "Open", "Resolved", False),
]
VENDOR_IDS = [
    "zendesk-event",
    "zendesk-trigger",
    "jira",
    "zammad",
    "helpscout",
    "glpi",
    "freshdesk",
]


def new_delivery_id() -> str:
    return str(uuid.uuid4())
