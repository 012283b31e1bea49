"""The ticket and lease lifecycle: every state transition, named, in one place.

A ticket is open -> closing (close acknowledged, purge pending) -> purged, and open again when
reopened. Each ticket has one Vault generation at a time, its lease: provisioning (row written,
Vault material being created) -> active -> purging (a purge job holds it) -> purged. A reopened
ticket gets a new lease, so a purge in flight for the old one never touches the new one.

Every function here runs in the caller's transaction and calls no Vault: the callers end the
transaction before Vault and come back here, under the row locks, to record what happened.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from sqlalchemy import bindparam, exists, select, update

from ..clock import utcnow
from ..config import Settings
from ..errors import BadRequest, Conflict
from ..extensions import db
from ..models import (
    LIVE_LEASE_STATES,
    AccessRequest,
    AccessRequestStatus,
    Grant,
    GrantState,
    Lease,
    LeaseStatus,
    LinkState,
    Ticket,
    TicketStatus,
)
from ..transactions import rows_matched
from ..upserts import insert_on_conflict
from . import audit, events, jobs
from .events import EventType

# The job kind that destroys a purging lease's Vault material (services/job_kinds/purge.py).
PURGE_JOB = "purge"


# The ticket system's reference, as the contract allows it.
TICKET_REF_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def validate_ticket_ref(ticket_ref: object) -> str:
    """The ticket system's reference, as the contract allows it."""
    if not isinstance(ticket_ref, str) or not TICKET_REF_PATTERN.fullmatch(ticket_ref):
        raise BadRequest("ticket_ref must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    return ticket_ref


class PurgeReason(StrEnum):
    """Why everything of a ticket is purged: named in its audit record, job and receipt."""

    TICKET_CLOSED = "ticket_closed"  # the ticket system closed the ticket
    RETENTION_EXPIRED = "retention_expired"  # the maximum retention ran out
    CUSTOMER_DELETED = "customer_deleted"  # the customer asked for deletion on the status page


class CloseOutcome(StrEnum):
    """What close_ticket did."""

    UNKNOWN_TICKET = "unknown_ticket"
    ALREADY_CLOSED = "already_closed"
    CLOSING = "closing"


class ReopenOutcome(StrEnum):
    """What reopen_ticket did."""

    UNKNOWN_TICKET = "unknown_ticket"
    ALREADY_OPEN = "already_open"
    REOPENED = "reopened"


# The lookups nearly every request makes, built once with their values bound at execution:
# building a statement and computing its cache key cost more CPU than SQLite takes to run it
# (README "Performance"). SQLAlchemy statements are immutable, so sharing them is safe.
_TICKET_BY_REF = select(Ticket).where(Ticket.ref == bindparam("ref"))
_LIVE_LEASE = (
    select(Lease)
    .where(Lease.ticket_id == bindparam("ticket_id"), Lease.status.in_(LIVE_LEASE_STATES))
    .order_by(Lease.created_at.desc())
    .limit(1)
)
_LIVE_LEASE_FOR_UPDATE = _LIVE_LEASE.with_for_update()
_LIVE_LEASE_BY_REF_FOR_UPDATE = (
    select(Lease, Ticket)
    .join(Ticket, Lease.ticket_id == Ticket.id)
    .where(Ticket.ref == bindparam("ref"), Lease.status.in_(LIVE_LEASE_STATES))
    .order_by(Lease.created_at.desc())
    .limit(1)
    .with_for_update(of=Lease)
)
# A close's first write: every live lease of the ticket to purging (locking it, as a reveal's
# check does), read back in the same statement. "fetch" keeps loaded Lease objects in step
# from the RETURNING rows, with no statement of its own.
_PURGE_LIVE_LEASES = (
    update(Lease)
    .where(Lease.ticket_id == bindparam("of_ticket"), Lease.status.in_(LIVE_LEASE_STATES))
    .values(status=LeaseStatus.PURGING)
    .returning(Lease.id)
    .execution_options(synchronize_session="fetch")
)
# A close's read: a lease's pending access requests.
_PENDING_REQUEST_IDS = select(AccessRequest.id).where(
    AccessRequest.lease_id == bindparam("lease_id"),
    AccessRequest.status == AccessRequestStatus.PENDING,
)


def get_ticket(ticket_ref: str) -> Ticket | None:
    """The ticket with this reference, if the service knows it."""
    return db.session.scalar(_TICKET_BY_REF, {"ref": ticket_ref})


def live_lease(ticket: Ticket, *, for_update: bool = False) -> Lease | None:
    """The ticket's current Vault generation, if it has one that is not being purged."""
    query = _LIVE_LEASE_FOR_UPDATE if for_update else _LIVE_LEASE
    return db.session.scalar(query, {"ticket_id": ticket.id})


def is_serving(lease_status: LeaseStatus | None, ticket_status: TicketStatus | None) -> bool:
    """Whether a lease in this state, of a ticket in this state, takes submissions and reveals."""
    return lease_status == LeaseStatus.ACTIVE and ticket_status == TicketStatus.OPEN


CLOSED_TICKET_REFUSAL = "The ticket is closed or purged; reopen it before asking for new links."


def get_or_create_open_ticket(ticket_ref: str) -> tuple[Ticket, bool]:
    """The open ticket with this reference, and whether this call created it; Conflict if it is
    closed."""
    session = db.session()
    # The insert is the existence check (one statement for a new ticket, the common case). A
    # request creating the same ticket concurrently makes it wait for that one's commit, then
    # insert nothing and read theirs below.
    new_ticket = session.scalar(
        insert_on_conflict(session, Ticket)
        .values(ref=ticket_ref)
        .on_conflict_do_nothing(index_elements=[Ticket.ref])
        .returning(Ticket)
    )
    if new_ticket is not None:
        return new_ticket, True
    ticket = get_ticket(ticket_ref)
    if ticket is None:
        raise RuntimeError(f"ticket {ticket_ref!r} conflicted on insert but cannot be read")
    if ticket.status != TicketStatus.OPEN:
        raise Conflict(CLOSED_TICKET_REFUSAL)
    return ticket, False


def reserve_lease(settings: Settings, ticket: Ticket, *, new_ticket: bool = False) -> Lease:
    """The ticket's live lease, or a new one recorded before anything exists in Vault.

    Writing the row first means the database knows every Vault object it might create, so a
    crash half-way leaves nothing a purge or sweep cannot find. A ticket this transaction
    created has no lease yet (no other transaction can see it), so none is looked for.
    """
    lease = None if new_ticket else live_lease(ticket, for_update=True)
    if lease is None:
        lease = Lease(
            ticket_id=ticket.id,
            status=LeaseStatus.PROVISIONING,
            expires_at=utcnow() + timedelta(seconds=settings.max_retention_seconds),
        )
        db.session.add(lease)
        db.session.flush()
        audit.record("lease.reserved", actor="system", ticket_ref=ticket.ref, lease_id=lease.id)
    return lease


def lock_live_lease_by_ref(ticket_ref: str) -> tuple[Lease, Ticket] | None:
    """The ticket's current Vault generation, row-locked, with its ticket: one statement where
    get_ticket and live_lease(for_update=True) would be two. None without a live lease."""
    row = db.session.execute(_LIVE_LEASE_BY_REF_FOR_UPDATE, {"ref": ticket_ref}).first()
    return None if row is None else (row[0], row[1])


def activate_lease(
    lease_id: str,
    *,
    token_accessor: str,
    entity_id: str,
    token_ciphertext: str,
    expires_at: datetime,
) -> bool:
    """provisioning -> active, with its Vault token; False if it is no longer provisioning."""
    activated = db.session.execute(
        update(Lease)
        .where(Lease.id == lease_id, Lease.status == LeaseStatus.PROVISIONING)
        .values(
            status=LeaseStatus.ACTIVE,
            token_accessor=token_accessor,
            entity_id=entity_id,
            token_ciphertext=token_ciphertext,
            expires_at=expires_at,
        )
    )
    return rows_matched(activated) == 1


def lease_status(lease_id: str) -> LeaseStatus | None:
    """A lease's current status, read from the database."""
    return db.session.scalar(select(Lease.status).where(Lease.id == lease_id))


def _has_purging_lease(ticket_id: str) -> bool:
    # A lease is purging exactly while its purge job is unfinished (both change together).
    return bool(
        db.session.scalar(
            select(
                exists().where(Lease.ticket_id == ticket_id, Lease.status == LeaseStatus.PURGING)
            )
        )
    )


def _purge_lease(ticket: Ticket, lease_id: str, reason: PurgeReason, now: datetime) -> str:
    """For a lease just moved to purging: revoke its grants, enqueue the purge of its Vault
    material."""
    db.session.execute(
        update(Grant)
        .where(Grant.lease_id == lease_id, Grant.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    _close_pending_requests(ticket, lease_id, now)
    payload = {"lease_id": lease_id, "reason": reason}
    return jobs.enqueue(PURGE_JOB, payload, ticket_id=ticket.id, dedupe_key=lease_id).id


def _close_pending_requests(ticket: Ticket, lease_id: str, now: datetime) -> None:
    """pending -> closed for the lease's four-eyes requests: a request dies with its ticket, so
    no approval can mint a grant on a closing lease (approvals lock the lease first, as here)."""
    pending = db.session.scalars(_PENDING_REQUEST_IDS, {"lease_id": lease_id}).all()
    if not pending:
        return
    db.session.execute(
        update(AccessRequest)
        .where(AccessRequest.id.in_(pending))
        .values(status=AccessRequestStatus.CLOSED, decided_at=now)
    )
    for request_id in pending:
        audit.record(
            "access.request_closed",
            actor="system",
            ticket_ref=ticket.ref,
            access_request_id=request_id,
            reason="ticket closed",
        )


def schedule_purge(ticket: Ticket, reason: PurgeReason, actor: str) -> list[str]:
    """open -> closing: every live lease to purging, each with a durable purge job.

    From the caller's commit on, no reveal succeeds: reveals check the lease state under its
    row lock, which this takes too.
    """
    now = utcnow()
    # Leases first, then the ticket (flushed with the next statement): the order in which
    # the customer's deletion locks them too.
    purging = db.session.scalars(_PURGE_LIVE_LEASES, {"of_ticket": ticket.id}).all()
    ticket.status = TicketStatus.CLOSING
    ticket.closed_at = now
    job_ids = [_purge_lease(ticket, lease_id, reason, now) for lease_id in purging]
    audit.record(
        "ticket.closed", actor=actor, ticket_ref=ticket.ref, reason=reason, purge_jobs=job_ids
    )
    # One event per close: the customer's deletion is told as such, any other close as closed.
    if reason == PurgeReason.CUSTOMER_DELETED:
        events.emit(EventType.CREDENTIALS_DELETED_BY_CUSTOMER, ticket.ref, ticket_id=ticket.id)
    else:
        events.emit(EventType.TICKET_CLOSED, ticket.ref, ticket_id=ticket.id, reason=reason)
    if not job_ids and not _has_purging_lease(ticket.id):
        # Nothing was ever stored, or everything already purged: the ticket is purged now, and
        # no purge runs to produce a receipt.
        ticket.status = TicketStatus.PURGED
        ticket.purged_at = now
        events.emit(EventType.TICKET_PURGED, ticket.ref, ticket_id=ticket.id, receipt=None)
    return job_ids


def close_ticket(
    ticket_ref: str, *, actor: str, reason: PurgeReason = PurgeReason.TICKET_CLOSED
) -> CloseOutcome:
    """Close a ticket in the caller's transaction; returns what happened."""
    ticket = get_ticket(ticket_ref)
    if ticket is None:
        return CloseOutcome.UNKNOWN_TICKET
    if ticket.status != TicketStatus.OPEN:
        return CloseOutcome.ALREADY_CLOSED
    schedule_purge(ticket, reason, actor)
    return CloseOutcome.CLOSING


def reopen_ticket(ticket_ref: str, *, actor: str) -> ReopenOutcome:
    """Reopen a ticket in the caller's transaction: new links get a fresh lease."""
    ticket = get_ticket(ticket_ref)
    if ticket is None:
        return ReopenOutcome.UNKNOWN_TICKET
    if ticket.status == TicketStatus.OPEN:
        return ReopenOutcome.ALREADY_OPEN
    ticket.status = TicketStatus.OPEN
    ticket.closed_at = None
    ticket.purged_at = None
    audit.record("ticket.reopened", actor=actor, ticket_ref=ticket.ref)
    events.emit(EventType.TICKET_REOPENED, ticket.ref, ticket_id=ticket.id)
    return ReopenOutcome.REOPENED


def complete_lease_purge(ticket_id: str, lease_id: str, now: datetime) -> None:
    """purging -> purged for the lease; closing -> purged for the ticket once none is left."""
    db.session.execute(
        update(Lease)
        .where(Lease.id == lease_id)
        .values(status=LeaseStatus.PURGED, purged_at=now, token_ciphertext=None)
    )
    # One guarded statement: a ticket reopened meanwhile (open again) is left alone.
    db.session.execute(
        update(Ticket)
        .where(
            Ticket.id == ticket_id,
            Ticket.status == TicketStatus.CLOSING,
            ~exists().where(Lease.ticket_id == Ticket.id, Lease.status == LeaseStatus.PURGING),
        )
        .values(status=TicketStatus.PURGED, purged_at=now)
    )


def tickets_past_retention(now: datetime) -> list[Ticket]:
    """Open tickets whose live lease has reached its maximum retention."""
    return list(
        db.session.scalars(
            select(Ticket)
            .join(Lease, Lease.ticket_id == Ticket.id)
            .where(
                Ticket.status == TicketStatus.OPEN,
                Lease.status.in_(LIVE_LEASE_STATES),
                Lease.expires_at <= now,
            )
            .distinct()
        )
    )


class LinkTimes(Protocol):
    """What a link's state is derived from (an entity or a Core row)."""

    consumed_at: datetime | None
    expires_at: datetime
    revoked_at: datetime | None


class GrantTimes(Protocol):
    """What a grant's state is derived from (an entity or a Core row)."""

    revoked_at: datetime | None
    expires_at: datetime
    token_ciphertext: str | None


def link_state(link: LinkTimes, now: datetime, *, serving: bool) -> LinkState:
    """A link's state from its timestamps; `serving`: its lease and ticket take submissions."""
    if link.consumed_at is not None:
        return LinkState.USED
    if link.revoked_at is not None or not serving:
        return LinkState.REVOKED
    if link.expires_at <= now:
        return LinkState.EXPIRED
    return LinkState.OPEN


def grant_state(grant: GrantTimes, now: datetime) -> GrantState:
    """A grant's state from its timestamps; a grant whose token is erased reveals nothing."""
    if grant.revoked_at is not None:
        return GrantState.REVOKED
    # Before the token check: the sweep erases an expired grant's token, and the audit trail
    # must still say it expired (not that someone revoked it).
    if grant.expires_at <= now:
        return GrantState.EXPIRED
    if grant.token_ciphertext is None:
        return GrantState.REVOKED
    return GrantState.ACTIVE


class AccessRequestTimes(Protocol):
    """What a four-eyes request's state is derived from (an entity or a Core row)."""

    status: AccessRequestStatus
    expires_at: datetime


def access_request_state(request: AccessRequestTimes, now: datetime) -> AccessRequestStatus:
    """A request's state: its stored status, except that a pending one past its deadline has
    expired (nothing stores that: the deadline alone decides, at the second)."""
    if request.status == AccessRequestStatus.PENDING and request.expires_at <= now:
        return AccessRequestStatus.EXPIRED
    return request.status
