"""The agents' dashboard: every open ticket a page at a time (paged and searched in SQL, so it
stays as fast with a hundred thousand tickets as with ten), and the agent's own live grants."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select

from ..clock import utcnow
from ..errors import BadRequest
from ..models import (
    LIVE_LEASE_STATES,
    AuditEvent,
    CredentialItem,
    Grant,
    Lease,
    LeaseStatus,
    Ticket,
    TicketStatus,
)
from ..transactions import read_only
from .lifecycle import TICKET_REF_PATTERN

PAGE_SIZE = 50


@dataclass(frozen=True)
class DashboardTicket:
    """One open ticket: its state, kinds, last activity and retention deadline; never values."""

    ref: str
    # "credentials" (the customer submitted) or "waiting" (a link is out, nothing received yet).
    status: str
    kinds: list[str]
    last_activity: datetime
    retention_until: datetime


@dataclass(frozen=True)
class OwnGrant:
    """One of the agent's live grants."""

    id: str
    ticket_ref: str
    reason: str
    expires_at: datetime


@dataclass(frozen=True)
class DashboardPage:
    """One page of open tickets, the search that chose them, and the agent's live grants."""

    tickets: list[DashboardTicket]
    query: str
    page: int
    pages: int
    total: int
    grants: list[OwnGrant]


def parse_page(value: str | None) -> int:
    """A 1-based page number from the query string; BadRequest for anything else."""
    if value is None or value == "":
        return 1
    if not value.isdigit() or len(value) > 9 or int(value) < 1:
        raise BadRequest("page must be a positive whole number.")
    return int(value)


def parse_query(value: str | None) -> str:
    """A ticket-reference prefix to search by ("" = all); BadRequest unless it could begin one."""
    query = (value or "").strip()
    if query and not TICKET_REF_PATTERN.fullmatch(query):
        raise BadRequest("Search by the start of a ticket reference: letters, digits, . _ -")
    return query


def _open_tickets(query: str) -> ColumnElement[bool]:
    """Open tickets with a live lease (waiting for the customer or holding credentials)."""
    condition = (Ticket.status == TicketStatus.OPEN) & Lease.status.in_(LIVE_LEASE_STATES)
    if query:
        # autoescape: a "_" in a reference is a literal, not LIKE's any-character.
        condition = condition & Ticket.ref.startswith(query, autoescape=True)
    return condition


def dashboard_page(agent_id: int, *, query: str = "", page: int = 1) -> DashboardPage:
    """Page `page` (PAGE_SIZE a page) of the open tickets whose reference starts with `query`."""
    last_activity = (
        select(func.max(AuditEvent.occurred_at))
        .where(AuditEvent.ticket_ref == Ticket.ref)
        .scalar_subquery()
    )
    with read_only() as session:
        total = session.scalar(
            select(func.count())
            .select_from(Ticket)
            .join(Lease, Lease.ticket_id == Ticket.id)
            .where(_open_tickets(query))
        )
        # Newest lease first, the reference breaking ties: a stable order for LIMIT/OFFSET that
        # the leases' index serves; last activity is computed for this page's rows only.
        rows = session.execute(
            select(
                Ticket.ref,
                Lease.id,
                Lease.status,
                Lease.created_at,
                Lease.expires_at,
                last_activity,
            )
            .join(Lease, Lease.ticket_id == Ticket.id)
            .where(_open_tickets(query))
            .order_by(Lease.created_at.desc(), Ticket.ref)
            .limit(PAGE_SIZE)
            .offset((page - 1) * PAGE_SIZE)
        ).all()
        lease_ids = [row[1] for row in rows]
        kinds: dict[str, list[str]] = {}
        for lease_id, kind in session.execute(
            select(CredentialItem.lease_id, CredentialItem.kind)
            .where(CredentialItem.lease_id.in_(lease_ids))
            .order_by(CredentialItem.created_at, CredentialItem.position)
        ):
            found = kinds.setdefault(lease_id, [])
            if kind not in found:
                found.append(kind)
        grants = [
            OwnGrant(*row)
            for row in session.execute(
                select(Grant.id, Ticket.ref, Grant.reason, Grant.expires_at)
                .join(Lease, Lease.id == Grant.lease_id)
                .join(Ticket, Ticket.id == Lease.ticket_id)
                .where(
                    Grant.agent_id == agent_id,
                    Grant.revoked_at.is_(None),
                    Grant.expires_at > utcnow(),
                    Ticket.status == TicketStatus.OPEN,
                )
                .order_by(Grant.expires_at)
            )
        ]
    tickets = [
        DashboardTicket(
            ref=ref,
            status="credentials"
            if status == LeaseStatus.ACTIVE and kinds.get(lease_id)
            else "waiting",
            kinds=kinds.get(lease_id, []),
            # A ticket with no audited event yet was last active when its lease was reserved.
            last_activity=activity if activity is not None else reserved_at,
            retention_until=expires_at,
        )
        for ref, lease_id, status, reserved_at, expires_at, activity in rows
    ]
    total = total or 0
    return DashboardPage(
        tickets=tickets,
        query=query,
        page=page,
        pages=max(1, math.ceil(total / PAGE_SIZE)),
        total=total,
        grants=grants,
    )
