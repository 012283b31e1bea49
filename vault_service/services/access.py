"""Agents' access to a ticket's credentials: time-limited grants and audited reveals."""

from __future__ import annotations

import json
import logging
from concurrent.futures import wait
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from ..clock import utcnow
from ..config import Settings
from ..errors import BadRequest, Conflict, Forbidden, NotFound, ServiceUnavailable
from ..extensions import db, release_transaction
from ..models import Agent, CredentialItem, Grant, Lease, Ticket
from ..vault import Vault, VaultError, VaultForbidden, VaultNotFound
from . import audit
from .tickets import get_ticket, live_lease, validate_ticket_ref

log = logging.getLogger(__name__)

MAX_REASON_LENGTH = 500
_GRANTS = Grant.__table__
_LEASES = Lease.__table__
_TICKETS = Ticket.__table__
_ITEMS = CredentialItem.__table__


def _actor(agent: Agent) -> str:
    return f"agent:{agent.username}"


def active_grant(agent: Agent, lease_id: str) -> Grant | None:
    """The agent's unexpired, unrevoked grant on a lease, if any."""
    return db.session.scalar(
        select(Grant)
        .where(
            Grant.agent_id == agent.id,
            Grant.lease_id == lease_id,
            Grant.revoked_at.is_(None),
            Grant.expires_at > utcnow(),
        )
        .order_by(Grant.expires_at.desc())
        .limit(1)
    )


def _open_ticket_with_items(ticket_ref: str, *, for_update: bool = False) -> tuple[Ticket, Lease]:
    ticket = get_ticket(validate_ticket_ref(ticket_ref))
    if ticket is None:
        raise NotFound("Unknown ticket.")
    lease = live_lease(ticket, for_update=for_update)
    if ticket.status != "open" or lease is None or lease.status != "active":
        raise Conflict("This ticket is closed; its credentials are no longer available.")
    return ticket, lease


def _deny(agent: Agent, action: str, ticket_ref: str, reason: str, **details: object) -> None:
    """Record a refusal in its own transaction, so the refusal survives the request failing."""
    db.session.rollback()
    audit.record(
        action,
        actor=_actor(agent),
        outcome="denied",
        ticket_ref=ticket_ref,
        reason=reason,
        **details,
    )
    db.session.commit()


def request_access(
    settings: Settings,
    vault: Vault,
    agent: Agent,
    ticket_ref: str,
    *,
    reason: str,
    duration_seconds: int,
) -> Grant:
    """Grant an agent a window on a ticket: a Vault child token of the lease with that TTL."""
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
    try:
        ticket, lease = _open_ticket_with_items(ticket_ref)
    except Conflict:
        _deny(agent, "access.requested", ticket_ref, "ticket closed")
        raise
    if not lease.items:
        db.session.rollback()
        raise Conflict("This ticket has no credentials yet.")
    lease_id, lease_ciphertext = lease.id, lease.token_ciphertext
    agent_id, actor, ticket_ref = agent.id, _actor(agent), ticket.ref
    # The grant never outlives the lease (Vault would end it with the lease anyway).
    ttl = min(duration_seconds, int((lease.expires_at - utcnow()).total_seconds()))
    release_transaction()  # no database transaction is held across the Vault calls below
    if ttl < settings.grant_min_seconds or lease_ciphertext is None:
        _deny(agent, "access.requested", ticket_ref, "retention ending")
        raise Conflict("The ticket's retention period is about to end.")

    try:
        lease_token = vault.decrypt_token(lease_ciphertext)
        issued = vault.mint_grant_token(lease_token, lease_id, ttl)
        sealed = vault.encrypt_token(issued.token)
    except VaultError as error:
        _deny(agent, "access.requested", ticket_ref, "vault unavailable", error=str(error))
        raise ServiceUnavailable(
            "The secure store is unavailable; no access was granted."
        ) from error

    now = utcnow()
    locked = db.session.scalar(select(Lease).where(Lease.id == lease_id).with_for_update())
    if locked is None or locked.status != "active":
        # Closed while we were minting: the token must not survive this call.
        db.session.rollback()
        vault.revoke_accessor(issued.accessor)
        _deny(agent, "access.requested", ticket_ref, "ticket closed")
        raise Conflict("This ticket is closed; its credentials are no longer available.")
    grant = Grant(
        lease_id=lease_id,
        agent_id=agent_id,
        reason=reason,
        created_at=now,
        expires_at=now + timedelta(seconds=issued.ttl_seconds),
        token_accessor=issued.accessor,
        token_ciphertext=sealed,
    )
    db.session.add(grant)
    db.session.flush()
    audit.record(
        "access.granted",
        actor=actor,
        ticket_ref=ticket_ref,
        grant_id=grant.id,
        reason=reason,
        expires_at=grant.expires_at.isoformat(),
        token_accessor=issued.accessor,
    )
    db.session.commit()
    return grant


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


def reveal_credentials(
    settings: Settings, vault: Vault, agent: Agent, ticket_ref: str, grant_id: str
) -> Reveal:
    """Decrypt a ticket's credentials with the agent's grant token, audited first (fail closed)."""
    ref = validate_ticket_ref(ticket_ref)
    now = utcnow()
    connection = db.session.connection()
    # The agent's grant, its lease and the ticket in one read, the lease row locked: a close
    # (which locks it too) waits for this reveal's record. Core, as the statements that follow:
    # plain values, none of the ORM's per-statement cost on the path every reveal takes.
    grant = (
        connection.execute(
            select(
                _GRANTS.c.id,
                _GRANTS.c.lease_id,
                _GRANTS.c.expires_at,
                _GRANTS.c.revoked_at,
                _GRANTS.c.token_ciphertext,
                _LEASES.c.status.label("lease_status"),
                _TICKETS.c.status.label("ticket_status"),
            )
            .join(_LEASES, _LEASES.c.id == _GRANTS.c.lease_id)
            .join(_TICKETS, _TICKETS.c.id == _LEASES.c.ticket_id)
            .where(_GRANTS.c.id == grant_id, _GRANTS.c.agent_id == agent.id, _TICKETS.c.ref == ref)
            .with_for_update(of=_LEASES)
        ).first()
        if isinstance(grant_id, str)
        else None
    )
    refusal = None
    if grant is None:
        if get_ticket(ref) is None:
            db.session.rollback()
            raise NotFound("Unknown ticket.")
        refusal = "no such grant"
    elif grant.revoked_at is not None or grant.token_ciphertext is None:
        refusal = "grant revoked"
    elif grant.expires_at <= now:
        refusal = "grant expired"
    elif grant.ticket_status != "open" or grant.lease_status != "active":
        refusal = "ticket closed"
    if refusal is not None:
        _deny(agent, "credentials.revealed", ref, refusal)
        raise Forbidden("Access to these credentials has ended. Request access again if needed.")

    lease_id, expires_at = grant.lease_id, grant.expires_at
    # The grant token is unwrapped (the app key's decrypt: the app's own material, nothing of
    # the customer's) while the items are listed and the audit record is written, so the one
    # Vault call the record does not guard costs no time of its own. The transaction never
    # waits on it.
    unwrapping = vault.in_background(vault.decrypt_token, grant.token_ciphertext)
    try:
        items = connection.execute(
            select(_ITEMS.c.id, _ITEMS.c.created_at)
            .where(_ITEMS.c.lease_id == lease_id)
            .order_by(_ITEMS.c.created_at, _ITEMS.c.position)
        ).all()
        # Fail closed: the audit record is committed before any item is read from Vault. If
        # this commit fails, the exception propagates and nothing is read or revealed.
        audit.record(
            "credentials.revealed",
            actor=_actor(agent),
            ticket_ref=ref,
            grant_id=grant.id,
            item_ids=[item.id for item in items],
        )
        db.session.commit()
    except BaseException:
        wait([unwrapping])  # the token is dropped with the future, never used
        raise

    try:
        grant_token = unwrapping.result()
        plaintexts = vault.read_items(grant_token, lease_id, [item.id for item in items])
    except (VaultForbidden, VaultNotFound) as error:
        _deny(agent, "credentials.revealed", ref, "refused by vault", error=str(error))
        raise Forbidden("Vault refused this access: the grant has ended.") from error
    except VaultError as error:
        _deny(agent, "credentials.revealed", ref, "vault unavailable", error=str(error))
        raise ServiceUnavailable(
            "The secure store is unavailable; nothing was revealed."
        ) from error
    revealed = []
    for item, plaintext in zip(items, plaintexts, strict=True):
        document = json.loads(plaintext)
        revealed.append(RevealedItem(document["kind"], document["fields"], item.created_at))
    return Reveal(ref, revealed, expires_at)


def ticket_overview(agent: Agent, ticket_ref: str) -> dict:
    """What an agent sees of a ticket before any reveal: kinds, dates, their own grant."""
    ticket = get_ticket(validate_ticket_ref(ticket_ref))
    if ticket is None:
        raise NotFound("Unknown ticket.")
    lease = live_lease(ticket)
    items = list(lease.items) if lease is not None and lease.status == "active" else []
    grant = active_grant(agent, lease.id) if lease is not None else None
    if ticket.status != "open":
        grant = None
    overview = {
        "ticket": ticket,
        "lease": lease,
        "items": sorted(items, key=lambda item: (item.created_at, item.position)),
        "grant": grant,
    }
    # End the read transaction without expiring what the template reads (a rollback would, and
    # each object would be loaded again, one query each, while the page renders).
    db.session.commit()
    return overview


def dashboard_tickets(limit: int = 200) -> list[dict]:
    """Open tickets holding credentials, newest first: kinds and dates, never values."""
    # Plain columns, not entities: cheaper to load, and nothing to reload once the transaction
    # has ended (entities would be expired by the rollback and loaded again one by one).
    rows = db.session.execute(
        select(Ticket.id, Ticket.ref, CredentialItem.kind, CredentialItem.created_at)
        .join(Lease, Lease.ticket_id == Ticket.id)
        .join(CredentialItem, CredentialItem.lease_id == Lease.id)
        .where(Ticket.status == "open", Lease.status == "active")
        .order_by(CredentialItem.created_at.desc())
    ).all()
    tickets: dict[str, dict] = {}
    for ticket_id, ref, kind, created_at in rows:
        entry = tickets.setdefault(
            ticket_id, {"ref": ref, "kinds": [], "last_submission": created_at}
        )
        if kind not in entry["kinds"]:
            entry["kinds"].append(kind)
    db.session.rollback()
    return list(tickets.values())[:limit]
