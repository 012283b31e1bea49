"""A ticket's audit records for the ticket system: who did what, when, with which outcome.

Audit records never hold a submitted value (services/audit.py refuses anything but scalars, and
no caller passes one); this view still shows only the detail keys it names, so a detail added
later (a token accessor, an error text) stays out until someone decides it belongs here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ..errors import NotFound
from ..models import AuditEvent, JsonObject
from ..transactions import read_only
from . import lifecycle
from .lifecycle import validate_ticket_ref

# Details the ticket system may see: ids, counts, kinds, times, reasons and outcomes. Left out on
# purpose: token accessors (a handle on a Vault token) and Vault error texts (internals).
SAFE_DETAILS = frozenset(
    {
        "lease_id",
        "link_id",
        "expires_at",
        "item_count",
        "kinds",
        "grant_id",
        "item_ids",
        "reason",
        "purge_jobs",
        "kv_entries",
        "tokens_revoked",
        "transit_key",
        "receipt_jti",
        "access_request_id",
        "duration_seconds",
    }
)


class AccessRecord(TypedDict):
    """One audit record as the ticket system sees it (GET /api/v1/tickets/<ref>/access-log)."""

    id: int
    occurred_at: str
    action: str
    actor: str
    outcome: str
    # Only the SAFE_DETAILS keys.
    details: JsonObject


# A ticket's history is a few dozen records; this bounds one answer all the same.
MAX_RECORDS = 1000


# Built once (the ticket page reads it on every view; see lifecycle.py).
_TICKET_RECORDS = (
    select(AuditEvent)
    .where(AuditEvent.ticket_ref == bindparam("ref"))
    .order_by(AuditEvent.id)
    .limit(MAX_RECORDS)
)


def ticket_records(session: Session, ticket_ref: str) -> Sequence[AuditEvent]:
    """A ticket's audit records in chain order, which is the order things happened (capped)."""
    return session.scalars(_TICKET_RECORDS, {"ref": ticket_ref}).all()


def access_log(ticket_ref: str) -> list[AccessRecord]:
    """The ticket's audit records, oldest first, across reopen cycles; NotFound if unknown."""
    ref = validate_ticket_ref(ticket_ref)
    with read_only() as session:
        if lifecycle.get_ticket(ref) is None:
            raise NotFound("Unknown ticket.")
        events = ticket_records(session, ref)
    return [
        AccessRecord(
            id=event.id,
            occurred_at=event.occurred_at.isoformat(),
            action=event.action,
            actor=event.actor,
            outcome=event.outcome,
            details={k: v for k, v in (event.details or {}).items() if k in SAFE_DETAILS},
        )
        for event in events
    ]
