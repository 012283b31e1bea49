"""The ticket system's view of a ticket's submission links: list them, revoke an unused one.

A link's token exists only in the URL handed out once; nothing here can show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, select, update

from ..clock import utcnow
from ..errors import Conflict, NotFound
from ..extensions import db
from ..models import JsonObject, Lease, LinkState, SubmissionLink, Ticket
from ..transactions import read_only, rows_matched, transaction
from . import audit, lifecycle
from .lifecycle import validate_ticket_ref

# Link ids are UUIDs (36 characters); anything longer is not one and is not looked up.
MAX_LINK_ID_LENGTH = 36


@dataclass(frozen=True)
class LinkReport:
    """One link as the ticket API shows it: state and times, never the token."""

    link_id: str
    state: LinkState
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None

    def as_json(self) -> JsonObject:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "link_id": self.link_id,
            "state": self.state,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "used_at": iso(self.used_at),
            "revoked_at": iso(self.revoked_at),
        }


def _report(link: SubmissionLink, lease: Lease, ticket: Ticket, now: datetime) -> LinkReport:
    serving = lifecycle.is_serving(lease.status, ticket.status)
    return LinkReport(
        link.id,
        lifecycle.link_state(link, now, serving=serving),
        link.created_at,
        link.expires_at,
        link.consumed_at,
        link.revoked_at,
    )


def _known_ticket(ticket_ref: str) -> Ticket:
    ticket = lifecycle.get_ticket(validate_ticket_ref(ticket_ref))
    if ticket is None:
        raise NotFound("Unknown ticket.")
    return ticket


def _links_of(ticket: Ticket, link_id: str | None = None) -> list[Row[SubmissionLink, Lease]]:
    query = (
        select(SubmissionLink, Lease)
        .join(Lease, Lease.id == SubmissionLink.lease_id)
        .where(SubmissionLink.ticket_id == ticket.id)
        .order_by(SubmissionLink.created_at, SubmissionLink.id)
    )
    if link_id is not None:
        query = query.where(SubmissionLink.id == link_id)
    return list(db.session.execute(query).all())


def list_links(ticket_ref: str) -> list[LinkReport]:
    """Every link of a ticket, across reopen cycles, oldest first; NotFound if unknown."""
    now = utcnow()
    with read_only():
        ticket = _known_ticket(ticket_ref)
        return [_report(link, lease, ticket, now) for link, lease in _links_of(ticket)]


def revoke_link(ticket_ref: str, link_id: str, *, actor: str = "ticket-system") -> LinkReport:
    """End an unused link at once: its holder gets the same 410 as for an unknown link.

    NotFound for an unknown ticket or a link that is not the ticket's; Conflict for a used link
    (its credentials go with the ticket's close). Revoking a revoked or expired link again
    answers as the first time and records nothing new.
    """
    with transaction() as session:
        ticket = _known_ticket(ticket_ref)
        if not isinstance(link_id, str) or len(link_id) > MAX_LINK_ID_LENGTH:
            raise NotFound("Unknown link.")
        rows = _links_of(ticket, link_id)
        if not rows:
            raise NotFound("Unknown link.")
        link, lease = rows[0]
        now = utcnow()
        # The guard decides a race with a submission: only one of them moves its column off NULL
        # (the submission's consume requires revoked_at IS NULL).
        revoked = rows_matched(
            session.execute(
                update(SubmissionLink)
                .where(
                    SubmissionLink.id == link.id,
                    SubmissionLink.consumed_at.is_(None),
                    SubmissionLink.revoked_at.is_(None),
                )
                .values(revoked_at=now)
            )
        )
        session.refresh(link)
        if link.consumed_at is not None:
            raise Conflict("The link was used; close the ticket to delete what was submitted.")
        if revoked:
            audit.record("link.revoked", actor=actor, ticket_ref=ticket.ref, link_id=link.id)
        return _report(link, lease, ticket, now)
