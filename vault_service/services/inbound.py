"""Ticket events from the ticket system, whoever the provider: applied once per delivery id."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from ..clock import utcnow
from ..models import WebhookDelivery
from ..transactions import transaction
from ..upserts import insert_on_conflict
from .lifecycle import close_ticket, reopen_ticket

ACTOR = "ticket-system"


class TicketEventType(enum.StrEnum):
    """What happened to the ticket in the ticket system."""

    CLOSED = "closed"
    REOPENED = "reopened"


@dataclass(frozen=True)
class TicketEvent:
    """A verified delivery, in our words: a provider adapter's only output."""

    # The sender's id of this message, the same on every redelivery; unique across providers
    # (an adapter other than Standard Webhooks prefixes it with its name).
    delivery_id: str
    type: TicketEventType
    ticket_ref: str
    # For a content-hash id of a vendor that signs nothing and numbers nothing (Freshdesk): a
    # record older than this no longer marks the same bytes as a redelivery, so the ticket's
    # next identical close (after a reopen) is applied. None: recognised for ever.
    dedupe_seconds: int | None = None


@dataclass(frozen=True)
class Receipt:
    """What receiving an event did: `first_time` False for a delivery id already processed."""

    first_time: bool
    outcome: str


ALREADY_PROCESSED = Receipt(first_time=False, outcome="already_processed")
HANDLERS: dict[TicketEventType, Callable[..., str]] = {
    TicketEventType.CLOSED: close_ticket,
    TicketEventType.REOPENED: reopen_ticket,
}


def _record_delivery(session: Session, event: TicketEvent) -> bool:
    """Record the delivery id; False if it is recorded already (and has not lapsed).

    One statement: the insert is the check. A concurrent delivery of the same id waits for the
    first one's transaction, then finds its row (or, if that rolled back, inserts its own).
    """
    now = utcnow()
    name = f"ticket.{event.type}"
    key = [WebhookDelivery.webhook_id]
    insert = insert_on_conflict(session, WebhookDelivery).values(
        webhook_id=event.delivery_id, event_type=name, received_at=now
    )
    if event.dedupe_seconds is None:
        statement = insert.on_conflict_do_nothing(index_elements=key)
    else:
        # A lapsed record no longer marks these bytes as a redelivery: it becomes this one's.
        lapsed = WebhookDelivery.received_at <= now - timedelta(seconds=event.dedupe_seconds)
        statement = insert.on_conflict_do_update(
            index_elements=key, set_={"event_type": name, "received_at": now}, where=lapsed
        )
    return session.execute(statement.returning(WebhookDelivery.webhook_id)).first() is not None


def receive_event(event: TicketEvent) -> Receipt:
    """Apply an event once per delivery id, in one transaction with its delivery record.

    The state change and the durable purge job are committed together before the caller
    answers, so an acknowledged close is never lost.
    """
    with transaction() as session:
        if not _record_delivery(session, event):
            return ALREADY_PROCESSED
        outcome = HANDLERS[event.type](event.ticket_ref, actor=ACTOR)
    return Receipt(first_time=True, outcome=outcome)
