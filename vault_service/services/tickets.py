"""Tickets, their Vault leases, and the one-time submission links the ticket system asks for."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from ..clock import utcnow
from ..config import Settings
from ..errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from ..extensions import db
from ..models import CredentialItem, Lease, PurgeJob, SubmissionLink, Ticket
from ..vault import Vault, VaultError
from . import audit

log = logging.getLogger(__name__)

TICKET_REF_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LIVE_LEASE_STATES = ("provisioning", "active")
# 256 bits: far beyond guessing, and short enough for a URL.
LINK_TOKEN_BYTES = 32


def validate_ticket_ref(ticket_ref: object) -> str:
    """The ticket system's reference, as the contract allows it."""
    if not isinstance(ticket_ref, str) or not TICKET_REF_PATTERN.fullmatch(ticket_ref):
        raise BadRequest("ticket_ref must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    return ticket_ref


def hash_link_token(settings: Settings, token: str) -> str:
    """Keyed hash of a link token: a stolen database cannot be turned back into working links."""
    key = hashlib.sha256(b"vault-service/link-token/v1\x00" + settings.secret_key.encode()).digest()
    return hmac.new(key, token.encode("utf-8"), hashlib.sha256).hexdigest()


def link_url(settings: Settings, token: str) -> str:
    """The customer's URL for a link token."""
    return f"{settings.public_url}/s/{token}"


def get_ticket(ticket_ref: str) -> Ticket | None:
    """The ticket with this reference, if the service knows it."""
    return db.session.scalar(select(Ticket).where(Ticket.ref == ticket_ref))


def live_lease(ticket: Ticket, *, for_update: bool = False) -> Lease | None:
    """The ticket's current Vault generation, if it has one that is not being purged."""
    query = select(Lease).where(Lease.ticket_id == ticket.id, Lease.status.in_(LIVE_LEASE_STATES))
    if for_update:
        query = query.with_for_update()
    return db.session.scalar(query.order_by(Lease.created_at.desc()).limit(1))


@dataclass(frozen=True)
class TicketStatus:
    """What the ticket API reports."""

    ticket_ref: str
    status: str
    credential_count: int
    purge_receipt: dict | None

    def as_json(self) -> dict:
        return {
            "ticket_ref": self.ticket_ref,
            "status": self.status,
            "credential_count": self.credential_count,
            "purge_receipt": self.purge_receipt,
        }


def describe_ticket(ticket_ref: str) -> TicketStatus:
    """Status, live credential count and latest purge receipt of a ticket."""
    ticket = get_ticket(validate_ticket_ref(ticket_ref))
    if ticket is None:
        raise NotFound("Unknown ticket.")
    count = db.session.scalar(
        select(func.count(CredentialItem.id))
        .join(Lease, CredentialItem.lease_id == Lease.id)
        .where(Lease.ticket_id == ticket.id)
    )
    receipt = db.session.scalar(
        select(PurgeJob.receipt)
        .where(PurgeJob.ticket_id == ticket.id, PurgeJob.completed_at.is_not(None))
        .order_by(PurgeJob.completed_at.desc())
        .limit(1)
    )
    status = TicketStatus(ticket.ref, ticket.status, count or 0, receipt)
    db.session.rollback()  # after reading: a rollback expires the loaded ticket
    return status


def _get_or_create_open_ticket(ticket_ref: str) -> Ticket:
    ticket = get_ticket(ticket_ref)
    if ticket is None:
        ticket = Ticket(ref=ticket_ref)
        db.session.add(ticket)
        try:
            db.session.flush()
        except IntegrityError:
            # Another request created it first: use theirs.
            db.session.rollback()
            ticket = get_ticket(ticket_ref)
            if ticket is None:
                raise
    if ticket.status != "open":
        db.session.rollback()
        raise Conflict("The ticket is closed or purged; reopen it before asking for new links.")
    return ticket


def _reserve_lease(settings: Settings, ticket: Ticket) -> Lease:
    """The ticket's live lease, or a new one recorded before anything exists in Vault.

    Writing the row first means the database knows every Vault object it might create, so a
    crash half-way leaves nothing a purge or sweep cannot find.
    """
    lease = live_lease(ticket, for_update=True)
    if lease is None:
        lease = Lease(
            ticket_id=ticket.id,
            status="provisioning",
            expires_at=utcnow() + timedelta(seconds=settings.max_retention_seconds),
        )
        db.session.add(lease)
        db.session.flush()
        audit.record("lease.reserved", actor="system", ticket_ref=ticket.ref, lease_id=lease.id)
    return lease


def _provision_lease(vault: Vault, lease_id: str, expires_at: datetime) -> None:
    """Create the lease's key and lease token in Vault (each step is repeatable)."""
    now = utcnow()
    ttl_seconds = int((expires_at - now).total_seconds())
    if ttl_seconds < 60:
        raise Conflict("The ticket's retention period has ended.")
    vault.create_lease_key(lease_id)
    issued = vault.create_lease_token(lease_id, ttl_seconds)
    try:
        sealed = vault.encrypt_token(issued.token)
        claimed = db.session.execute(
            update(Lease)
            .where(Lease.id == lease_id, Lease.status == "provisioning")
            .values(
                status="active",
                token_accessor=issued.accessor,
                entity_id=issued.entity_id,
                token_ciphertext=sealed,
                # Vault may grant less than asked (its role or mount maximum): what it granted is
                # the real end of the lease, and everything we promise is bounded by it.
                expires_at=min(expires_at, now + timedelta(seconds=issued.ttl_seconds)),
            )
        ).rowcount
        db.session.commit()
    except BaseException:
        db.session.rollback()
        vault.revoke_accessor(issued.accessor)
        raise
    if claimed != 1:
        # A concurrent request finished provisioning first, or the ticket closed meanwhile:
        # our token is surplus, and an unrecorded token must not outlive this call.
        vault.revoke_accessor(issued.accessor)
        status = db.session.scalar(select(Lease.status).where(Lease.id == lease_id))
        db.session.rollback()
        if status not in LIVE_LEASE_STATES:
            # Closed while we provisioned: its purge may have run before our key and entity
            # existed, so they are ours to destroy (both steps tolerate "already gone").
            vault.delete_lease_key(lease_id)
            vault.delete_entity(issued.entity_id)


def create_submission_link(
    settings: Settings,
    vault: Vault,
    ticket_ref: str,
    *,
    ttl_seconds: int | None = None,
    actor: str = "ticket-system",
) -> tuple[SubmissionLink, str]:
    """Issue a one-time link for a ticket (creating the ticket and its lease on first use).

    Returns the link row and the token, which exists only in the returned URL.
    """
    validate_ticket_ref(ticket_ref)
    if ttl_seconds is None:
        ttl_seconds = settings.link_ttl_seconds
    if not isinstance(ttl_seconds, int) or isinstance(ttl_seconds, bool):
        raise BadRequest("ttl_seconds must be an integer")
    if not 60 <= ttl_seconds <= settings.link_max_ttl_seconds:
        raise BadRequest(f"ttl_seconds must be between 60 and {settings.link_max_ttl_seconds}")

    ticket = _get_or_create_open_ticket(ticket_ref)
    lease = _reserve_lease(settings, ticket)
    lease_id, lease_status, lease_expires = lease.id, lease.status, lease.expires_at
    db.session.commit()

    if lease_status == "provisioning":
        try:
            _provision_lease(vault, lease_id, lease_expires)
        except VaultError as error:
            log.warning(
                "link not created: vault error",
                extra={"fields": {"ticket_ref": ticket_ref, "error": str(error)}},
            )
            raise ServiceUnavailable(
                "The secure store is unavailable; no link was created. Please retry."
            ) from error

    token = secrets.token_urlsafe(LINK_TOKEN_BYTES)
    now = utcnow()
    ticket = _get_or_create_open_ticket(ticket_ref)
    lease = live_lease(ticket, for_update=True)
    if lease is None or lease.id != lease_id or lease.status != "active":
        db.session.rollback()
        raise Conflict("The ticket changed while the link was being created; please retry.")
    link = SubmissionLink(
        ticket_id=ticket.id,
        lease_id=lease.id,
        token_hash=hash_link_token(settings, token),
        created_at=now,
        # A link never outlives the lease that would hold what it collects.
        expires_at=min(now + timedelta(seconds=ttl_seconds), lease.expires_at),
    )
    db.session.add(link)
    db.session.flush()
    audit.record(
        "link.created",
        actor=actor,
        ticket_ref=ticket.ref,
        link_id=link.id,
        expires_at=link.expires_at.isoformat(),
    )
    db.session.commit()
    return link, token
