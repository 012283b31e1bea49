"""A ticket's story for its agents, told from the audit trail: link, submission, grants (who,
why, until when), reveals, refusals, close and purge with its receipt; and who holds access now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from ..clock import utcnow
from ..errors import NotFound
from ..kinds import kind_label
from ..models import Agent, Grant, Lease
from ..transactions import read_only
from . import lifecycle, receipts
from .access_log import ticket_records
from .lifecycle import validate_ticket_ref
from .receipts import PurgeReceipt

_TITLES = {
    "lease.reserved": "Secure storage prepared",
    "link.created": "Submission link issued",
    "link.revoked": "Submission link revoked",
    "sweep.link_expired": "Submission link expired unused",
    "submission.received": "Credentials submitted by the customer",
    "access.requested": "Access requested",
    "access.granted": "Access granted",
    "access.approved": "Access request approved",
    "access.denied": "Access request denied",
    "access.request_closed": "Access request ended with the ticket",
    "access.revoked": "Access ended early",
    "credentials.revealed": "Credentials revealed",
    "ticket.closed": "Ticket closed",
    "ticket.reopened": "Ticket reopened",
    "purge.completed": "Credentials purged from the secure store",
}


@dataclass(frozen=True)
class TimelineEntry:
    """One step of the story; only metadata, as in the audit record it comes from."""

    occurred_at: datetime
    action: str
    title: str
    actor: str
    outcome: str
    detail: str


@dataclass(frozen=True)
class ActiveGrant:
    """A grant that still lets its agent reveal."""

    grant_id: str
    agent: str
    reason: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class TicketStory:
    """The timeline, the live grants of every agent and the latest purge receipt."""

    entries: list[TimelineEntry]
    active_grants: list[ActiveGrant]
    receipt: PurgeReceipt | None


def _detail(action: str, details: dict[str, Any]) -> str:
    """A short human line from a record's safe details (kinds, counts, reasons, times)."""
    parts = []
    if "kinds" in details:
        parts.append("kinds: " + ", ".join(kind_label(str(kind)) for kind in details["kinds"]))
    if "item_count" in details:
        parts.append(f"{details['item_count']} item(s)")
    if "reason" in details:
        parts.append(f"reason: {details['reason']}")
    if action == "access.requested" and "duration_seconds" in details:
        parts.append(f"for {details['duration_seconds'] // 60} min, awaiting approval")
    if action in ("access.approved", "access.denied") and "agent" in details:
        parts.append(f"requested by {details['agent']}")
    if "expires_at" in details and action in ("access.granted", "link.created"):
        parts.append(f"until {details['expires_at'][:19].replace('T', ' ')} UTC")
    if action == "purge.completed" and "kv_entries" in details:
        parts.append(f"{details['kv_entries']} stored item(s) destroyed")
    return "; ".join(parts)


# The ticket's live grants, built once (see lifecycle.py on why a built statement is kept).
_LIVE_GRANTS = (
    select(Grant.id, Agent.username, Grant.reason, Grant.created_at, Grant.expires_at)
    .join(Agent, Agent.id == Grant.agent_id)
    .join(Lease, Lease.id == Grant.lease_id)
    .where(
        Lease.ticket_id == bindparam("ticket_id"),
        Grant.revoked_at.is_(None),
        Grant.expires_at > bindparam("now"),
        Grant.token_ciphertext.is_not(None),
    )
    .order_by(Grant.expires_at)
)


def ticket_story(ticket_ref: str) -> TicketStory:
    """The ticket's story in audit order (the chain's order is the order things happened)."""
    ref = validate_ticket_ref(ticket_ref)
    with read_only() as session:
        ticket = lifecycle.get_ticket(ref)
        if ticket is None:
            raise NotFound("Unknown ticket.")
        events = ticket_records(session, ref)
        grants = session.execute(_LIVE_GRANTS, {"ticket_id": ticket.id, "now": utcnow()}).all()
        latest = receipts.latest_receipt(ticket)
        entries = [
            TimelineEntry(
                e.occurred_at,
                e.action,
                _TITLES.get(e.action, e.action),
                e.actor,
                e.outcome,
                _detail(e.action, e.details or {}),
            )
            for e in events
        ]
    active = [ActiveGrant(*row) for row in grants] if ticket.status == "open" else []
    return TicketStory(entries, active, latest.receipt if latest else None)
