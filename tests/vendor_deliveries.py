"""Deliveries shaped as each help desk's documentation (or, for the open-source ones, its code)
shows them, signed the vendor's way.

The signatures are computed here with the standard library, not with the adapters' own `sign`
helpers, so a wrong formula in an adapter fails. Where the vendor's sending code is public
(Zammad, GLPI) the signer below is a transliteration of it, cited line by line; elsewhere it
follows the vendor's documented formula (each adapter's docstring names the source)."""

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
    # "Verifying webhook authenticity": "base64(HMACSHA256(TIMESTAMP + BODY))", the timestamp
    # as Zendesk sends it (ISO 8601, the page's example being 2021-07-25T10:00:00Z).
    stamp = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = hmac.new(secret.encode(), stamp.encode() + body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
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
    # Atlassian's "Managing webhooks": X-Hub-Signature: sha256=<HMAC-SHA256 of the body>.
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json; charset=utf-8",
        "X-Atlassian-Webhook-Identifier": delivery_id,
        "X-Atlassian-Webhook-Flow": "Primary",
        "X-Hub-Signature": f"sha256={signature}",
    }


def _ruby_to_json(value: object) -> bytes:
    """Ruby's `Hash#to_json` as Zammad calls it: compact, UTF-8 (the payloads here carry none
    of the characters ActiveSupport escapes, `<`, `>`, `&`, U+2028/9)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _zammad_record(attributes: dict) -> dict:
    """`attributes_with_association_names.sort.to_h` (RecordPayload::Base): keys sorted."""
    return dict(sorted(attributes.items()))


def zammad(ref, state, secret, timestamp, delivery_id):
    """A trigger's webhook with the default payload, as zammad/zammad (commit bfa96f03)
    app/jobs/trigger_webhook_job.rb and lib/user_agent.rb send it."""
    group = {"active": True, "id": 1, "name": "Users"}
    priority = {"id": 2, "name": "2 normal", "ui_color": None}
    customer = {"email": "nicole.braun@zammad.org", "firstname": "Nicole", "id": 2}
    # default_payload: {ticket: RecordPayload.generate(ticket), article: ...}; `state` is the
    # state's name, the ASSOCIATIONS (owner customer ... priority group) nested objects.
    payload = {
        "ticket": _zammad_record(
            {
                "id": int(ref),
                "number": f"3100{ref}",
                "title": "Cannot upload to the FTP server",
                "state": state,
                "state_id": 4,
                "priority": priority,
                "priority_id": 2,
                "group": group,
                "group_id": 1,
                "customer": customer,
                "customer_id": 2,
                "article_count": 2,
                "updated_at": "2020-11-13T14:34:35.282Z",
            }
        ),
        "article": _zammad_record(
            {"id": 104, "ticket_id": int(ref), "type": "note", "internal": True}
        ),
    }
    # UserAgent.set_params (json: true): body = params.to_json, with this Content-Type.
    body = _ruby_to_json(payload)
    # UserAgent.set_signature: OpenSSL::HMAC.hexdigest('sha1', signature_token, request.body)
    # sent as X-Hub-Signature: "sha1=#{signature}".
    signature = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return body, {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Zammad User Agent",  # UserAgent.set_headers' default
        "X-Zammad-Trigger": "vault_service close",  # trigger.name
        "X-Zammad-Delivery": delivery_id,  # the job's job_id, kept on retry_on
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
    # developer.helpscout.com/webhooks: base64_encode(hash_hmac('sha1', $data, $key, true)).
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha1).digest())
    return body, {
        "Content-Type": "application/json",
        "X-HelpScout-Event": "convo.status",
        "X-HelpScout-Signature": signature.decode(),
    }


def _php_json_encode_pretty(value: object) -> bytes:
    """PHP's `json_encode($value, JSON_PRETTY_PRINT)`: four-space indents, `": "` after keys,
    `/` escaped as `\\/` and non-ASCII as `\\uXXXX` (no JSON_UNESCAPED_* flag is passed).
    JSON has `/` only inside strings, so escaping every one is exact."""
    return json.dumps(value, indent=4, ensure_ascii=True).replace("/", "\\/").encode()


def glpi(ref, status, secret, timestamp, delivery_id):
    """A Ticket / update webhook with the default payload, as glpi-project/glpi (commit
    0042059c) src/Webhook.php `raise()` queues it and src/QueuedWebhook.php `sendById()`
    sends it."""
    names = {"6": "Closed", "2": "Processing (assigned)", "5": "Solved"}
    # The item as the high-level API's GET /Assistance/Ticket/{id} returns it (the Ticket
    # schema of src/Api/HL/Controller/ITILController.php: status as {id, name}).
    api_data = {
        "id": int(ref),
        "name": "Cannot upload to the FTP server",
        "content": "<p>The upload stops at 80 %.</p>",
        "is_deleted": False,
        "status": {"id": int(status), "name": names.get(status, "New")},
        "entity": {"id": 0, "name": "Root entity", "completename": "Root entity"},
        "team": [],
        "date_mod": datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
    }
    # getWebhookBody(): $data = ['item' => $api_data, 'event' => $event];
    # return json_encode($data, JSON_PRETTY_PRINT);   (use_default_payload)
    body = _php_json_encode_pretty({"item": api_data, "event": "update"})
    # raise(): $timestamp = time();
    # 'X-GLPI-signature' => self::getSignature($body . $timestamp, $secret), where
    # getSignature() is hash_hmac('sha256', $data, $secret): lowercase hex.
    stamp = str(timestamp)
    signature = hmac.new(secret.encode(), body + stamp.encode(), hashlib.sha256).hexdigest()
    # sendById() sends exactly the queued headers (these two and the webhook's custom ones,
    # none here) with the body as a raw string: no Content-Type.
    return body, {"X-GLPI-signature": signature, "X-GLPI-timestamp": stamp}


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
