"""Ticket events from the ticket system, whoever the provider: applied once per delivery id."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError

from ..clock import utcnow
from ..models import WebhookDelivery
from ..transactions import transaction
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


def _dedupe_lapsed(earlier: WebhookDelivery, event: TicketEvent) -> bool:
    if event.dedupe_seconds is None:
        return False
    return earlier.received_at <= utcnow() - timedelta(seconds=event.dedupe_seconds)


def receive_event(event: TicketEvent) -> Receipt:
    """Apply an event once per delivery id, in one transaction with its delivery record.

    The state change and the durable purge job are committed together before the caller
    answers, so an acknowledged close is never lost.
    """
    recorded, outcome = False, None
    try:
        with transaction() as session:
            earlier = session.get(WebhookDelivery, event.delivery_id)
            if earlier is not None:
                if not _dedupe_lapsed(earlier, event):
                    return ALREADY_PROCESSED
                session.delete(earlier)
                session.flush()
            name = f"ticket.{event.type}"
            session.add(WebhookDelivery(webhook_id=event.delivery_id, event_type=name))
            session.flush()
            recorded = True
            outcome = HANDLERS[event.type](event.ticket_ref, actor=ACTOR)
    except IntegrityError:
        if recorded and outcome is None:
            raise  # the handler's own failure, not a duplicate: the sender must retry
        # A concurrent delivery of the same id inserted (at the flush) or committed (at the
        # commit) first; nothing of ours was committed.
        return ALREADY_PROCESSED
    return Receipt(first_time=True, outcome=outcome)
