"""Four-eyes approval (VAULT_SERVICE_ACCESS_APPROVAL=required): another agent with the admin role
approves or denies an agent's pending access request, never the requester.

The request itself is opened by access.request_access and holds no Vault material. Approving
mints the grant through access.mint_grant, the path every grant takes, so the token's TTL is the
window counted from the approval and Vault enforces it; the approval is recorded in the grant's
own transaction, under the lease's lock, so it either lands with its grant or not at all. A
pending request lapses at its deadline (lifecycle.access_request_state) and ends with its ticket
(lifecycle.schedule_purge). Every decision and every refusal is audited; decisions are events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import aliased

from ..clock import utcnow
from ..config import Settings
from ..errors import Conflict, Forbidden, NotFound
from ..extensions import db
from ..models import (
    AccessRequest,
    AccessRequestStatus,
    Agent,
    Grant,
    Lease,
    LeaseStatus,
    Ticket,
    TicketStatus,
)
from ..transactions import read_only, transaction
from ..vault import Vault
from . import access, audit, events
from .agents import actor_of
from .events import EventType
from .lifecycle import access_request_state, validate_ticket_ref

ADMIN_ROLE = "admin"

# Why a decision is refused: the audit record's reason, and what the admin is told.
_GONE = {
    AccessRequestStatus.EXPIRED: "This request expired before anyone approved it; "
    "the agent must ask again.",
    AccessRequestStatus.APPROVED: "This request was already approved.",
    AccessRequestStatus.DENIED: "This request was already denied.",
    AccessRequestStatus.CLOSED: "This ticket is closed; the request ended with it.",
}


@dataclass(frozen=True)
class PendingRequest:
    """A request waiting for a decision, as the admin console and the ticket page list it."""

    id: str
    ticket_ref: str
    agent: str
    reason: str
    duration_seconds: int
    created_at: datetime
    expires_at: datetime

    @property
    def duration_minutes(self) -> int:
        return self.duration_seconds // 60


@dataclass(frozen=True)
class OwnRequest:
    """The signed-in agent's latest request on a ticket's live lease, for its ticket page."""

    id: str
    state: AccessRequestStatus
    duration_seconds: int
    created_at: datetime
    expires_at: datetime
    decided_by: str | None


@dataclass(frozen=True)
class TicketRequests:
    """What the ticket page shows of four-eyes approval."""

    own: OwnRequest | None
    # Everyone's pending requests on the ticket (an admin decides them from the page).
    pending: list[PendingRequest]


# Built once, values bound at execution (the ticket page runs both on every view; see
# lifecycle.py on why a built statement is kept).
_PENDING = (
    select(
        AccessRequest.id,
        Ticket.ref,
        Agent.username,
        AccessRequest.reason,
        AccessRequest.duration_seconds,
        AccessRequest.created_at,
        AccessRequest.expires_at,
    )
    .join(Lease, Lease.id == AccessRequest.lease_id)
    .join(Ticket, Ticket.id == Lease.ticket_id)
    .join(Agent, Agent.id == AccessRequest.agent_id)
    .where(
        AccessRequest.status == AccessRequestStatus.PENDING,
        AccessRequest.expires_at > bindparam("now"),
        Lease.status == LeaseStatus.ACTIVE,
        Ticket.status == TicketStatus.OPEN,
    )
    .order_by(AccessRequest.created_at, AccessRequest.id)
)
_TICKET_PENDING = _PENDING.where(Ticket.ref == bindparam("ref"))
_DECIDER = aliased(Agent)
_OWN_LATEST = (
    select(AccessRequest, _DECIDER.username)
    .join(Lease, Lease.id == AccessRequest.lease_id)
    .join(Ticket, Ticket.id == Lease.ticket_id)
    .outerjoin(_DECIDER, _DECIDER.id == AccessRequest.decided_by_id)
    .where(Ticket.ref == bindparam("ref"), AccessRequest.agent_id == bindparam("agent_id"))
    .where(Lease.status == LeaseStatus.ACTIVE)
    .order_by(AccessRequest.created_at.desc(), AccessRequest.id.desc())
    .limit(1)
)


def pending_requests(ticket_ref: str | None = None) -> list[PendingRequest]:
    """Requests still waiting (not expired, ticket open), oldest first; one ticket's if named."""
    values: dict[str, object] = {"now": utcnow()}
    statement = _PENDING
    if ticket_ref is not None:
        statement, values["ref"] = _TICKET_PENDING, ticket_ref
    with read_only() as session:
        return [PendingRequest(*row) for row in session.execute(statement, values)]


def ticket_requests(agent: Agent, ticket_ref: str) -> TicketRequests:
    """The agent's latest request on the ticket's live lease, and the ticket's pending ones."""
    ref = validate_ticket_ref(ticket_ref)
    with read_only() as session:
        row = session.execute(_OWN_LATEST, {"ref": ref, "agent_id": agent.id}).first()
    own = None
    if row is not None:
        request, decided_by = row
        own = OwnRequest(
            request.id,
            access_request_state(request, utcnow()),
            request.duration_seconds,
            request.created_at,
            request.expires_at,
            decided_by,
        )
    return TicketRequests(own, pending_requests(ref))


@dataclass(frozen=True)
class _Decidable:
    """A request read before a decision: its ticket, its requester (loaded), its window."""

    id: str
    ticket_ref: str
    requester: Agent
    reason: str
    duration_seconds: int


def _check_decidable(decider: Agent, request_id: object, action: str) -> _Decidable:
    """The request, if this agent may decide it now; every refusal audited and raised."""
    if not isinstance(request_id, str) or not 0 < len(request_id) <= 36:
        raise NotFound("Unknown access request.")
    with read_only() as session:
        found = session.execute(
            select(AccessRequest, Ticket.ref, Agent)
            .join(Lease, Lease.id == AccessRequest.lease_id)
            .join(Ticket, Ticket.id == Lease.ticket_id)
            .join(Agent, Agent.id == AccessRequest.agent_id)
            .where(AccessRequest.id == request_id)
        ).first()
    if found is None:
        raise NotFound("Unknown access request.")
    request, ticket_ref, requester = found
    if decider.role != ADMIN_ROLE:
        # The admin blueprint's guard refuses first; this holds for any other caller.
        access.record_refusal(
            decider, action, ticket_ref, "not an admin", access_request_id=request.id
        )
        raise Forbidden("Only an admin may decide access requests.")
    if requester.id == decider.id:
        access.record_refusal(
            decider, action, ticket_ref, "own request", access_request_id=request.id
        )
        raise Forbidden("You cannot decide your own access request: another admin must.")
    state = access_request_state(request, utcnow())
    if state != AccessRequestStatus.PENDING:
        access.record_refusal(
            decider, action, ticket_ref, f"request {state}", access_request_id=request.id
        )
        raise Conflict(_GONE[state])
    if not requester.is_active:
        access.record_refusal(
            decider, action, ticket_ref, "requester disabled", access_request_id=request.id
        )
        raise Conflict("The agent who asked is disabled; their request cannot be approved.")
    return _Decidable(request.id, ticket_ref, requester, request.reason, request.duration_seconds)


class DecidedMeanwhile(Conflict):
    """The request stopped being pending between the checks and the row lock."""

    def __init__(self, state: AccessRequestStatus):
        super().__init__(_GONE[state])
        self.state = state


def _lock_pending(request_id: str) -> AccessRequest:
    """The request's row, locked, if still pending and unexpired; DecidedMeanwhile otherwise."""
    request = db.session.scalar(
        select(AccessRequest).where(AccessRequest.id == request_id).with_for_update()
    )
    # Never deleted, and read a moment ago: it exists.
    assert request is not None  # noqa: S101
    state = access_request_state(request, utcnow())
    if state != AccessRequestStatus.PENDING:
        raise DecidedMeanwhile(state)
    return request


def approve_request(settings: Settings, vault: Vault, approver: Agent, request_id: object) -> Grant:
    """Approve another agent's pending request: only now is the grant token minted in Vault, its
    TTL the requested window (so Vault counts the window from this approval)."""
    pending = _check_decidable(approver, request_id, "access.approved")
    target = access.read_grant_target(
        approver, pending.ticket_ref, pending.duration_seconds, action="access.approved"
    )

    def record_approval(grant: Grant) -> None:
        # In the grant's transaction, the lease already locked by it (as a close locks it
        # before it ends the lease's requests): decided twice, or closed meanwhile, undoes all.
        request = _lock_pending(pending.id)
        request.status = AccessRequestStatus.APPROVED
        request.decided_at = grant.created_at
        request.decided_by_id = approver.id
        request.grant_id = grant.id
        audit.record(
            "access.approved",
            actor=actor_of(approver),
            ticket_ref=pending.ticket_ref,
            access_request_id=pending.id,
            agent=pending.requester.username,
            grant_id=grant.id,
            expires_at=grant.expires_at.isoformat(),
        )
        events.emit(
            EventType.ACCESS_APPROVED,
            pending.ticket_ref,
            access_request_id=pending.id,
            agent=access.agent_name(pending.requester),
            approved_by=access.agent_name(approver),
        )

    try:
        return access.mint_grant(
            settings,
            vault,
            pending.requester,
            target,
            pending.reason,
            action="access.approved",
            refused_by=approver,
            on_record=record_approval,
        )
    except DecidedMeanwhile as error:
        # Decided by someone else, lapsed or closed between the check and the lock; the token
        # minted for it is already revoked (access.mint_grant).
        access.record_refusal(
            approver,
            "access.approved",
            pending.ticket_ref,
            f"request {error.state}",
            access_request_id=pending.id,
        )
        raise


def deny_request(approver: Agent, request_id: object) -> None:
    """Deny another agent's pending request; nothing was ever minted for it."""
    pending = _check_decidable(approver, request_id, "access.denied")
    try:
        with transaction():
            request = _lock_pending(pending.id)
            request.status = AccessRequestStatus.DENIED
            request.decided_at = utcnow()
            request.decided_by_id = approver.id
            audit.record(
                "access.denied",
                actor=actor_of(approver),
                ticket_ref=pending.ticket_ref,
                access_request_id=pending.id,
                agent=pending.requester.username,
            )
            events.emit(
                EventType.ACCESS_DENIED,
                pending.ticket_ref,
                access_request_id=pending.id,
                agent=access.agent_name(pending.requester),
                denied_by=access.agent_name(approver),
            )
    except DecidedMeanwhile as error:
        access.record_refusal(
            approver,
            "access.denied",
            pending.ticket_ref,
            f"request {error.state}",
            access_request_id=pending.id,
        )
        raise
