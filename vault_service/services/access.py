"""Agents' access to a ticket's credentials: time-limited grants and audited reveals."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, exists, select

from ..clock import utcnow
from ..config import Settings
from ..errors import (
    BadRequest,
    Conflict,
    CredentialsMissing,
    Forbidden,
    NotFound,
    ServiceUnavailable,
)
from ..extensions import db
from ..models import (
    GRANTS,
    ITEMS,
    LEASES,
    LIVE_LEASE_STATES,
    TICKETS,
    AccessRequest,
    AccessRequestStatus,
    Agent,
    CredentialItem,
    Grant,
    GrantState,
    Lease,
    LeaseStatus,
    Ticket,
    TicketStatus,
)
from ..transactions import read_only, transaction
from ..vault import (
    IssuedToken,
    Vault,
    VaultError,
    VaultForbidden,
    VaultNotFound,
    VaultRequestFailed,
)
from . import audit, events
from .agents import actor_of
from .events import EventType
from .lifecycle import get_ticket, grant_state, is_serving, live_lease, validate_ticket_ref

log = logging.getLogger(__name__)

MAX_REASON_LENGTH = 500
# A Core row of the reveal's reads (each query names its columns; Core columns are untyped).
_Row = Row[*tuple[Any, ...]]


# Built once, values bound at execution (see lifecycle.py on why a built statement is kept).
_ACTIVE_GRANT = (
    select(Grant)
    .where(
        Grant.agent_id == bindparam("agent_id"),
        Grant.lease_id == bindparam("lease_id"),
        Grant.revoked_at.is_(None),
        Grant.expires_at > bindparam("now"),
    )
    .order_by(Grant.expires_at.desc())
    .limit(1)
)


# The lease row, locked as a close locks it (a grant or a request never lands on a closing lease).
_LOCK_LEASE = select(Lease).where(Lease.id == bindparam("lease_id")).with_for_update()


def active_grant(agent: Agent, lease_id: str) -> Grant | None:
    """The agent's unexpired, unrevoked grant on a lease, if any."""
    values = {"agent_id": agent.id, "lease_id": lease_id, "now": utcnow()}
    return db.session.scalar(_ACTIVE_GRANT, values)


def _serving_lease(ticket_ref: str) -> tuple[Ticket, Lease, bool]:
    """The ticket, its lease if it serves reveals, and whether the lease holds items; NotFound
    or Conflict otherwise. One query: on PostgreSQL each would be a round trip."""
    ref = validate_ticket_ref(ticket_ref)
    # The newest live lease, as lifecycle.live_lease picks it (outer join: none is a Conflict).
    row = db.session.execute(
        select(Ticket, Lease, exists().where(CredentialItem.lease_id == Lease.id))
        .outerjoin(Lease, and_(Lease.ticket_id == Ticket.id, Lease.status.in_(LIVE_LEASE_STATES)))
        .where(Ticket.ref == ref)
        .order_by(Lease.created_at.desc())
        .limit(1)
    ).first()
    if row is None:
        raise NotFound("Unknown ticket.")
    ticket, lease, has_items = row
    if lease is None or not is_serving(lease.status, ticket.status):
        raise Conflict("This ticket is closed; its credentials are no longer available.")
    return ticket, lease, bool(has_items)


def agent_name(agent: Agent) -> str:
    """How events (and the customer) name an agent: a display name where there is one."""
    return getattr(agent, "display_name", None) or agent.username


def record_refusal(
    agent: Agent, action: str, ticket_ref: str | None, reason: str, **details: object
) -> None:
    """Record a refusal in its own transaction, so the refusal survives the request failing
    (access requests, reveals, and approvals' decisions)."""
    with transaction():
        audit.record(
            action,
            actor=actor_of(agent),
            outcome="denied",
            ticket_ref=ticket_ref,
            reason=reason,
            **details,
        )


def _check_access_request(settings: Settings, reason: str, duration_seconds: int) -> str:
    """The stripped reason, if it and the duration are acceptable."""
    reason = (reason or "").strip()
    if not reason:
        raise BadRequest("A reason is required.", fields={"reason": "Say why you need access."})
    if len(reason) > MAX_REASON_LENGTH or "\x00" in reason:
        raise BadRequest(
            "The reason is too long.", fields={"reason": f"At most {MAX_REASON_LENGTH} characters."}
        )
    if not settings.grant_min_seconds <= duration_seconds <= settings.grant_max_seconds:
        raise BadRequest(
            "Invalid duration.",
            fields={
                "duration": f"Between {settings.grant_min_seconds // 60} and "
                f"{settings.grant_max_seconds // 60} minutes."
            },
        )
    return reason


@dataclass(frozen=True)
class GrantTarget:
    """The lease a grant is asked for, read before Vault is called."""

    ticket_ref: str
    ticket_id: str
    lease_id: str
    lease_token_ciphertext: str | None
    ttl_seconds: int


def read_grant_target(
    agent: Agent, ticket_ref: str, duration_seconds: int, *, action: str = "access.requested"
) -> GrantTarget:
    """The ticket's serving lease, with items; a closed ticket's refusal is audited (as `action`,
    with `agent` as actor)."""
    try:
        with read_only():
            ticket, lease, has_items = _serving_lease(ticket_ref)
    except Conflict:
        record_refusal(agent, action, ticket_ref, "ticket closed")
        raise
    if not has_items:
        raise Conflict("This ticket has no credentials yet.")
    # The grant never outlives the lease (Vault would end it with the lease anyway).
    ttl = min(duration_seconds, int((lease.expires_at - utcnow()).total_seconds()))
    return GrantTarget(ticket.ref, ticket.id, lease.id, lease.token_ciphertext, ttl)


def _mint_grant_token(
    vault: Vault, agent: Agent, target: GrantTarget, lease_token_ciphertext: str, action: str
) -> tuple[IssuedToken, str]:
    """A child token of the lease with the grant's TTL, and its wrapped copy."""
    try:
        lease_token = vault.decrypt_token(lease_token_ciphertext)
        issued = vault.mint_grant_token(lease_token, target.ttl_seconds)
        return issued, vault.encrypt_token(issued.token)
    except VaultError as error:
        record_refusal(agent, action, target.ticket_ref, "vault unavailable", error=str(error))
        raise ServiceUnavailable(
            "The secure store is unavailable; no access was granted."
        ) from error


# Called in the grant's transaction, under the lease's lock, once the grant row exists: the
# approval of a four-eyes request records itself there (services/approvals.py); raising undoes all.
OnRecord = Callable[[Grant], None]


def _record_grant(
    agent: Agent,
    target: GrantTarget,
    reason: str,
    issued: IssuedToken,
    sealed: str,
    on_record: OnRecord | None = None,
) -> Grant | None:
    """Write the grant and its audit record if the lease is still active; None if it closed."""
    now = utcnow()
    with transaction() as session:
        locked = session.scalar(_LOCK_LEASE, {"lease_id": target.lease_id})
        if locked is None or locked.status != LeaseStatus.ACTIVE:
            return None
        grant = Grant(
            lease_id=target.lease_id,
            agent_id=agent.id,
            reason=reason,
            created_at=now,
            expires_at=now + timedelta(seconds=issued.ttl_seconds),
            token_accessor=issued.accessor,
            token_ciphertext=sealed,
        )
        session.add(grant)
        session.flush()
        if on_record is not None:
            on_record(grant)
        audit.record(
            "access.granted",
            actor=actor_of(agent),
            ticket_ref=target.ticket_ref,
            grant_id=grant.id,
            reason=reason,
            expires_at=grant.expires_at.isoformat(),
            token_accessor=issued.accessor,
        )
        events.emit(
            EventType.ACCESS_GRANTED,
            target.ticket_ref,
            ticket_id=target.ticket_id,
            agent=agent_name(agent),
            reason=reason,
            expires_at=grant.expires_at,
        )
    return grant


def request_access(
    settings: Settings,
    vault: Vault,
    agent: Agent,
    ticket_ref: str,
    *,
    reason: str,
    duration_seconds: int,
) -> Grant | AccessRequest:
    """Grant an agent a window on a ticket: a Vault child token of the lease with that TTL. With
    four-eyes approval required, a pending request instead: nothing is minted until an admin
    approves it (services/approvals.py), so Vault counts the window from the approval."""
    reason = _check_access_request(settings, reason, duration_seconds)
    target = read_grant_target(agent, ticket_ref, duration_seconds)
    if settings.approval_required:
        return _open_request(settings, agent, target, reason, duration_seconds)
    return mint_grant(settings, vault, agent, target, reason)


def mint_grant(
    settings: Settings,
    vault: Vault,
    agent: Agent,
    target: GrantTarget,
    reason: str,
    *,
    action: str = "access.requested",
    refused_by: Agent | None = None,
    on_record: OnRecord | None = None,
) -> Grant:
    """Mint the grant token in Vault (outside any transaction), then record the grant; the one
    path every grant takes, at once or at a four-eyes approval. Refusals are audited as
    `action` by `refused_by` (the approver), else by the agent."""
    actor = refused_by or agent
    ciphertext = target.lease_token_ciphertext
    if target.ttl_seconds < settings.grant_min_seconds or ciphertext is None:
        record_refusal(actor, action, target.ticket_ref, "retention ending")
        raise Conflict("The ticket's retention period is about to end.")
    issued, sealed = _mint_grant_token(vault, actor, target, ciphertext, action)
    try:
        grant = _record_grant(agent, target, reason, issued, sealed, on_record)
    except BaseException:
        # The approval refused under the lease's lock (or the write failed): nothing recorded
        # it, so the token must not survive this call. Its TTL bounds it if Vault is down too.
        _revoke_quietly(vault, issued.accessor)
        raise
    if grant is None:
        # Closed while we were minting: the token must not survive this call.
        vault.revoke_accessor(issued.accessor)
        record_refusal(actor, action, target.ticket_ref, "ticket closed")
        raise Conflict("This ticket is closed; its credentials are no longer available.")
    return grant


def _revoke_quietly(vault: Vault, accessor: str) -> None:
    """Revoke an unrecorded token while another error is on its way up (which must win)."""
    try:
        vault.revoke_accessor(accessor)
    except VaultError:
        log.warning(
            "unrecorded grant token left to its TTL", extra={"fields": {"token_accessor": accessor}}
        )


def _open_request(
    settings: Settings, agent: Agent, target: GrantTarget, reason: str, duration_seconds: int
) -> AccessRequest:
    """Four-eyes: record a pending request, audited and reported; nothing is asked of Vault."""
    if target.ttl_seconds < settings.grant_min_seconds or target.lease_token_ciphertext is None:
        record_refusal(agent, "access.requested", target.ticket_ref, "retention ending")
        raise Conflict("The ticket's retention period is about to end.")
    now = utcnow()
    refusal = None
    with transaction() as session:
        # The lease's lock, as a close takes it: a request never lands on a closing lease.
        lease = session.scalar(_LOCK_LEASE, {"lease_id": target.lease_id})
        waiting = session.scalar(
            select(AccessRequest.id).where(
                AccessRequest.lease_id == target.lease_id,
                AccessRequest.agent_id == agent.id,
                AccessRequest.status == AccessRequestStatus.PENDING,
                AccessRequest.expires_at > now,
            )
        )
        if lease is None or lease.status != LeaseStatus.ACTIVE:
            refusal = "ticket closed"
        elif waiting is not None:
            refusal = "already pending"
        else:
            request = AccessRequest(
                lease_id=target.lease_id,
                agent_id=agent.id,
                reason=reason,
                duration_seconds=duration_seconds,
                status=AccessRequestStatus.PENDING,
                created_at=now,
                expires_at=now + timedelta(seconds=settings.access_request_ttl_seconds),
            )
            session.add(request)
            session.flush()
            audit.record(
                "access.requested",
                actor=actor_of(agent),
                ticket_ref=target.ticket_ref,
                access_request_id=request.id,
                reason=reason,
                duration_seconds=duration_seconds,
                expires_at=request.expires_at.isoformat(),
            )
            events.emit(
                EventType.ACCESS_REQUESTED,
                target.ticket_ref,
                access_request_id=request.id,
                agent=agent_name(agent),
                reason=reason,
                duration_seconds=duration_seconds,
                pending_until=request.expires_at,
            )
    if refusal == "ticket closed":
        record_refusal(agent, "access.requested", target.ticket_ref, refusal)
        raise Conflict("This ticket is closed; its credentials are no longer available.")
    if refusal is not None:
        record_refusal(agent, "access.requested", target.ticket_ref, refusal)
        raise Conflict("Your request is already waiting for approval.")
    return request


@dataclass(frozen=True)
class RevealedItem:
    """One decrypted credential, only ever rendered into a no-store response."""

    kind: str
    fields: dict[str, str]
    submitted_at: datetime


@dataclass(frozen=True)
class Reveal:
    """The outcome of a reveal: the items, and until when the grant lasts."""

    ticket_ref: str
    items: list[RevealedItem]
    grant_expires_at: datetime


# A reveal's reads, built once (see lifecycle.py on why a built statement is kept).
_LOCK_GRANT = (
    select(
        GRANTS.c.id,
        GRANTS.c.lease_id,
        GRANTS.c.expires_at,
        GRANTS.c.revoked_at,
        GRANTS.c.token_ciphertext,
        LEASES.c.ticket_id,
        LEASES.c.status.label("lease_status"),
        TICKETS.c.status.label("ticket_status"),
    )
    .join(LEASES, LEASES.c.id == GRANTS.c.lease_id)
    .join(TICKETS, TICKETS.c.id == LEASES.c.ticket_id)
    .where(
        GRANTS.c.id == bindparam("grant_id"),
        GRANTS.c.agent_id == bindparam("agent_id"),
        TICKETS.c.ref == bindparam("ref"),
    )
    .with_for_update(of=LEASES)
)
_LEASE_ITEMS = (
    select(ITEMS.c.id, ITEMS.c.created_at)
    .where(ITEMS.c.lease_id == bindparam("lease_id"))
    .order_by(ITEMS.c.created_at, ITEMS.c.position)
)


def _lock_grant(connection: Connection, agent: Agent, ref: str, grant_id: object) -> _Row | None:
    """The agent's grant, its lease and the ticket in one read, the lease row locked: a close
    (which locks it too) waits for this reveal's record. Core, as the statements that follow:
    plain values, none of the ORM's per-statement cost on the path every reveal takes."""
    if not isinstance(grant_id, str):
        return None
    values = {"grant_id": grant_id, "agent_id": agent.id, "ref": ref}
    return connection.execute(_LOCK_GRANT, values).first()


_REFUSALS = {GrantState.REVOKED: "grant revoked", GrantState.EXPIRED: "grant expired"}


def _refusal(grant: _Row | None, ref: str, now: datetime) -> str | None:
    """Why this grant may not reveal now, or None; NotFound for an unknown ticket."""
    if grant is None:
        if get_ticket(ref) is None:
            raise NotFound("Unknown ticket.")
        return "no such grant"
    state = grant_state(grant, now)
    if state != GrantState.ACTIVE:
        return _REFUSALS[state]
    if not is_serving(grant.lease_status, grant.ticket_status):
        return "ticket closed"
    return None


def _audit_reveal(
    vault: Vault, agent: Agent, ref: str, grant_id: object
) -> tuple[_Row, list[_Row], Future[str]]:
    """Check the grant under its lease's lock and commit the reveal's audit record (fail closed:
    if this commit fails, nothing is read); returns the grant, its items and its token's unwrap.

    The grant token is unwrapped (the app key's decrypt: the app's own material, nothing of the
    customer's) while the items are listed and the record is written, so the one Vault call the
    record does not guard costs no time of its own. The transaction never waits on it, and the
    Vault guard allows it: it runs on a pool thread, outside the request's session.
    """
    unwrapping: Future[str] | None = None
    items: list[_Row] = []
    try:
        with transaction() as session:
            connection = session.connection()
            grant = _lock_grant(connection, agent, ref, grant_id)
            refusal = _refusal(grant, ref, utcnow())
            if refusal is None and grant is not None:
                unwrapping = vault.in_background(vault.decrypt_token, grant.token_ciphertext)
                items = list(connection.execute(_LEASE_ITEMS, {"lease_id": grant.lease_id}).all())
                audit.record(
                    "credentials.revealed",
                    actor=actor_of(agent),
                    ticket_ref=ref,
                    grant_id=grant.id,
                    item_ids=[item.id for item in items],
                )
                events.emit(
                    EventType.CREDENTIALS_REVEALED,
                    ref,
                    ticket_id=grant.ticket_id,
                    agent=agent_name(agent),
                )
    except BaseException:
        if unwrapping is not None:
            wait([unwrapping])  # the token is dropped with the future, never used
        raise
    if refusal is not None or grant is None or unwrapping is None:
        record_refusal(agent, "credentials.revealed", ref, refusal or "no such grant")
        raise Forbidden("Access to these credentials has ended. Request access again if needed.")
    return grant, items, unwrapping


def _read_revealed(
    vault: Vault, agent: Agent, ref: str, grant: _Row, items: list[_Row], unwrapping: Future[str]
) -> list[RevealedItem]:
    """Read the audited items from Vault with the grant token; Vault's refusal is audited too."""
    try:
        plaintexts = vault.read_items(unwrapping.result(), grant.lease_id, [i.id for i in items])
    except VaultForbidden as error:
        record_refusal(agent, "credentials.revealed", ref, "refused by vault", error=str(error))
        raise Forbidden("Vault refused this access: the grant has ended.") from error
    except (VaultNotFound, VaultRequestFailed) as error:
        # The item (404) or the lease's key (transit's 400) is gone from Vault while the
        # database says the ticket holds it: removed outside this service (another deployment's
        # sweep, an operator, a restore). Said as such, never as an ended grant.
        record_refusal(agent, "credentials.revealed", ref, "missing in vault", error=str(error))
        raise CredentialsMissing() from error
    except VaultError as error:
        record_refusal(agent, "credentials.revealed", ref, "vault unavailable", error=str(error))
        raise ServiceUnavailable(
            "The secure store is unavailable; nothing was revealed."
        ) from error
    revealed = []
    for item, plaintext in zip(items, plaintexts, strict=True):
        document = json.loads(plaintext)
        revealed.append(RevealedItem(document["kind"], document["fields"], item.created_at))
    return revealed


def reveal_credentials(
    settings: Settings, vault: Vault, agent: Agent, ticket_ref: str, grant_id: str
) -> Reveal:
    """Decrypt a ticket's credentials with the agent's grant token, audited first (fail closed)."""
    ref = validate_ticket_ref(ticket_ref)
    grant, items, unwrapping = _audit_reveal(vault, agent, ref, grant_id)
    return Reveal(
        ref, _read_revealed(vault, agent, ref, grant, items, unwrapping), grant.expires_at
    )


@dataclass(frozen=True)
class TicketOverview:
    """What an agent sees of a ticket before any reveal: kinds, dates, their own grant."""

    ticket: Ticket
    lease: Lease | None
    items: list[CredentialItem]
    grant: Grant | None


def ticket_overview(agent: Agent, ticket_ref: str) -> TicketOverview:
    """The ticket, its live lease's items in submission order, and the agent's active grant."""
    ref = validate_ticket_ref(ticket_ref)
    # read_only ends the read without expiring what the template reads (a rollback would, and
    # each object would be loaded again, one query each, while the page renders).
    with read_only():
        ticket = get_ticket(ref)
        if ticket is None:
            raise NotFound("Unknown ticket.")
        lease = live_lease(ticket)
        serving = lease is not None and lease.status == LeaseStatus.ACTIVE
        items = list(lease.items) if lease is not None and serving else []
        grant = active_grant(agent, lease.id) if lease is not None else None
        if ticket.status != TicketStatus.OPEN:
            grant = None
    items.sort(key=lambda item: (item.created_at, item.position))
    return TicketOverview(ticket, lease, items, grant)
