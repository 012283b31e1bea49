"""Ticket events from the ticket system, whoever the provider: applied once per delivery id."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

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


def receive_event(event: TicketEvent) -> Receipt:
    """Apply an event once per delivery id, in one transaction with its delivery record.

    The state change and the durable purge job are committed together before the caller
    answers, so an acknowledged close is never lost.
    """
    recorded, outcome = False, None
    try:
        with transaction() as session:
            if session.get(WebhookDelivery, event.delivery_id) is not None:
                return ALREADY_PROCESSED
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
