"""Outbound events: what happened to a ticket, told to the ticket system (DESIGN.md, v1.1).

`emit` enqueues one delivery job in the caller's transaction (the outbox): an event exists
exactly when the change it reports is committed, and only the worker delivers it
(services/job_kinds/event_delivery.py), signed per Standard Webhooks, at least once, in order
per ticket. The job's payload is the event itself, its webhook-id and its body, so every retry
and every replay sends the same event under the same id.

No event carries a credential value or a token: each type names its data fields in FIELDS, and
`emit` refuses any other, so a new field is a decision made here, in review, not a side effect.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import Enum, StrEnum

from sqlalchemy import bindparam, select

from ..clock import utcnow
from ..extensions import current_settings, db
from ..models import Job, Ticket
from ..transactions import transaction
from . import jobs

# The job kind that delivers one event (services/job_kinds/event_delivery.py).
EVENT_DELIVERY_JOB = "event_delivery"


class EventType(StrEnum):
    """Every event the service sends; the contract's names."""

    CREDENTIALS_SUBMITTED = "credentials.submitted"
    ACCESS_GRANTED = "access.granted"
    CREDENTIALS_REVEALED = "credentials.revealed"
    LINK_EXPIRED = "link.expired"
    CREDENTIALS_DELETED_BY_CUSTOMER = "credentials.deleted_by_customer"
    TICKET_CLOSED = "ticket.closed"
    TICKET_REOPENED = "ticket.reopened"
    TICKET_PURGED = "ticket.purged"
    # Four-eyes approval (VAULT_SERVICE_ACCESS_APPROVAL=required): asked, then decided.
    ACCESS_REQUESTED = "access.requested"
    ACCESS_APPROVED = "access.approved"
    ACCESS_DENIED = "access.denied"


# The fields of each type's `data`, besides `ticket_ref` (openapi.yaml describes each one).
FIELDS: dict[EventType, frozenset[str]] = {
    EventType.CREDENTIALS_SUBMITTED: frozenset(
        {"link_id", "kinds", "item_count", "retention_until"}
    ),
    EventType.ACCESS_GRANTED: frozenset({"agent", "reason", "expires_at"}),
    EventType.CREDENTIALS_REVEALED: frozenset({"agent"}),
    EventType.LINK_EXPIRED: frozenset({"link_id"}),
    EventType.CREDENTIALS_DELETED_BY_CUSTOMER: frozenset(),
    # Why: ticket_closed (the ticket system) or retention_expired (the sweep).
    EventType.TICKET_CLOSED: frozenset({"reason"}),
    EventType.TICKET_REOPENED: frozenset(),
    # The purge's receipt: what was destroyed, verified absent through Vault's API.
    EventType.TICKET_PURGED: frozenset({"receipt"}),
    # `pending_until`: unapproved by then, the request lapses; `duration_seconds`: the window
    # asked for, counted from the approval. An approval is followed by `access.granted`.
    EventType.ACCESS_REQUESTED: frozenset(
        {"access_request_id", "agent", "reason", "duration_seconds", "pending_until"}
    ),
    EventType.ACCESS_APPROVED: frozenset({"access_request_id", "agent", "approved_by"}),
    EventType.ACCESS_DENIED: frozenset({"access_request_id", "agent", "denied_by"}),
}


def ordering_key(ticket_id: str) -> str:
    """The queue's ordering key of a ticket's events: delivered one at a time, oldest first.

    Prefixed, so another kind ordered per ticket (a help-desk note) never waits on an event.
    """
    return f"events:{ticket_id}"


def _plain(value: object) -> object:
    """JSON for what a caller has at hand: datetimes as ISO 8601, enums as their value."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"an event cannot carry a {type(value).__name__}")


def encode_body(body: Mapping[str, object]) -> bytes:
    """The bytes delivered (and signed) for an event body."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


_TICKET_ID_BY_REF = select(Ticket.id).where(Ticket.ref == bindparam("ref"))


def emit(
    event_type: str, ticket_ref: str, *, ticket_id: str | None = None, **data: object
) -> Job | None:
    """Enqueue an event in the caller's transaction; nothing when events are not configured.

    A caller that has read the ticket's id passes it with its ref (the pair it read together),
    which saves the statement that would look it up: a round trip on PostgreSQL.
    """
    if not current_settings().events_url:
        return None
    event_type = EventType(event_type)
    if set(data) != FIELDS[event_type]:
        raise TypeError(f"{event_type} carries exactly {sorted(FIELDS[event_type])}")
    if ticket_id is None:
        ticket_id = db.session.scalar(_TICKET_ID_BY_REF, {"ref": ticket_ref})
        if ticket_id is None:
            raise ValueError("an event names a ticket the service knows")
    body = {
        "type": event_type.value,
        "timestamp": utcnow().isoformat(),
        "data": {"ticket_ref": ticket_ref, **json.loads(json.dumps(data, default=_plain))},
    }
    # The id a receiver deduplicates on: one per event, kept through every retry and replay.
    payload = {"webhook_id": f"msg_{uuid.uuid4().hex}", "body": body}
    return jobs.enqueue(
        EVENT_DELIVERY_JOB, payload, ticket_id=ticket_id, ordering_key=ordering_key(ticket_id)
    )


class UnknownTicket(LookupError):
    """events-replay was asked for a ticket the service does not know."""


def replay_events(*, ticket_ref: str | None = None, since: datetime | None = None) -> int:
    """Enqueue again every delivered event (of one ticket, from `since` on), each under its
    own webhook-id and in its original order; returns how many.

    An event still waiting for delivery is not replayed: it is coming anyway. Events replayed
    before count once (the same webhook-id is one event).
    """
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    with transaction() as session:
        query = select(Job).where(Job.kind == EVENT_DELIVERY_JOB)
        if ticket_ref is not None:
            ticket_id = session.scalar(select(Ticket.id).where(Ticket.ref == ticket_ref))
            if ticket_id is None:
                raise UnknownTicket(ticket_ref)
            query = query.where(Job.ticket_id == ticket_id)
        if since is not None:
            # A copy is always enqueued after its original: this keeps every original in reach.
            query = query.where(Job.created_at >= since)
        candidates = session.scalars(query.order_by(Job.created_at, Job.id)).all()
        waiting = {job.payload["webhook_id"] for job in candidates if job.completed_at is None}
        replayed: set[str] = set()
        for job in candidates:
            webhook_id = job.payload["webhook_id"]
            if job.completed_at is None or webhook_id in waiting or webhook_id in replayed:
                continue
            occurred = datetime.fromisoformat(job.payload["body"]["timestamp"])
            if since is not None and occurred < since:
                continue
            jobs.enqueue(
                EVENT_DELIVERY_JOB,
                job.payload,
                ticket_id=job.ticket_id,
                ordering_key=job.ordering_key,
            )
            replayed.add(webhook_id)
    return len(replayed)
