"""Tickets, their Vault leases, and the one-time submission links the ticket system asks for."""

from __future__ import annotations

import logging
import secrets
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from ..clock import utcnow
from ..config import Settings
from ..errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from ..models import (
    LINK_MESSAGE_MAX_LENGTH,
    LIVE_LEASE_STATES,
    CredentialItem,
    JsonObject,
    Lease,
    LeaseStatus,
    SubmissionLink,
    TicketStatus,
)
from ..transactions import read_only, transaction
from ..vault import IssuedToken, Vault, VaultError
from . import audit, capabilities, connectors, deployment, lifecycle, receipts
from .lifecycle import validate_ticket_ref
from .receipts import PurgeReceipt

log = logging.getLogger(__name__)

# 256 bits: far beyond guessing, and short enough for a URL.
LINK_TOKEN_BYTES = 32


def _link_token_hash(secret_key: str, token: str) -> str:
    return capabilities.token_hash(secret_key, b"link-token/v1", token)


def hash_link_token(settings: Settings, token: str) -> str:
    """Keyed hash of a link token: a stolen database cannot be turned back into working links."""
    return _link_token_hash(settings.signing_key, token)


def link_token_hashes(settings: Settings, token: str) -> list[str]:
    """The token's hash under every configured secret key (services/capabilities.py)."""
    return capabilities.token_hashes(settings, b"link-token/v1", token)


def link_url(settings: Settings, token: str) -> str:
    """The customer's URL for a link token."""
    return f"{settings.public_url}/s/{token}"


@dataclass(frozen=True)
class TicketReport:
    """What the ticket API reports."""

    ticket_ref: str
    status: TicketStatus
    credential_count: int
    purge_receipt: PurgeReceipt | None
    # The same receipt as a JWS signed in Vault (None before the first purge, and for receipts
    # of purges completed before receipts were signed).
    purge_receipt_jws: str | None = None

    def as_json(self) -> JsonObject:
        return {
            "ticket_ref": self.ticket_ref,
            "status": self.status,
            "credential_count": self.credential_count,
            "purge_receipt": self.purge_receipt,
            "purge_receipt_jws": self.purge_receipt_jws,
        }


def describe_ticket(ticket_ref: str) -> TicketReport:
    """Status, live credential count and latest purge receipt of a ticket."""
    ref = validate_ticket_ref(ticket_ref)
    with read_only() as session:
        ticket = lifecycle.get_ticket(ref)
        if ticket is None:
            raise NotFound("Unknown ticket.")
        count = session.scalar(
            select(func.count(CredentialItem.id))
            .join(Lease, CredentialItem.lease_id == Lease.id)
            .where(Lease.ticket_id == ticket.id)
        )
        latest = receipts.latest_receipt(ticket)
    if latest is None:
        return TicketReport(ticket.ref, ticket.status, count or 0, None)
    return TicketReport(ticket.ref, ticket.status, count or 0, latest.receipt, latest.receipt_jws)


def _check_link_ttl(settings: Settings, ttl_seconds: int | None) -> int:
    if ttl_seconds is None:
        return settings.link_ttl_seconds
    if not isinstance(ttl_seconds, int) or isinstance(ttl_seconds, bool):
        raise BadRequest("ttl_seconds must be an integer")
    if not 60 <= ttl_seconds <= settings.link_max_ttl_seconds:
        raise BadRequest(f"ttl_seconds must be between 60 and {settings.link_max_ttl_seconds}")
    return ttl_seconds


def check_link_presentation(message: object, locale: object) -> tuple[str | None, str | None]:
    """The link's customer-facing message (plain text, capped) and locale (a BCP 47 tag)."""
    from ..i18n import LOCALE_TAG

    if message is not None:
        if not isinstance(message, str):
            raise BadRequest("message must be a string")
        if len(message) > LINK_MESSAGE_MAX_LENGTH:
            raise BadRequest(f"message must be at most {LINK_MESSAGE_MAX_LENGTH} characters")
        if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in message) or "\x7f" in message:
            raise BadRequest("message must be plain text without control characters")
        message = message.strip() or None
    if locale is not None:
        if not isinstance(locale, str) or not LOCALE_TAG.fullmatch(locale) or len(locale) > 35:
            raise BadRequest("locale must be a language tag such as de, fr-CA or es")
    return message, locale


def _record_lease_token(
    lease_id: str, issued: IssuedToken, sealed: str, expires_at: datetime
) -> bool:
    """Activate the lease with its token, in one transaction; False if it left provisioning."""
    with transaction():
        return lifecycle.activate_lease(
            lease_id,
            token_accessor=issued.accessor,
            entity_id=issued.entity_id,
            token_ciphertext=sealed,
            # Vault may grant less than asked (its role or mount maximum): what it granted is
            # the real end of the lease, and everything we promise is bounded by it.
            expires_at=min(expires_at, utcnow() + timedelta(seconds=issued.ttl_seconds)),
        )


def _issue_sealed_token(vault: Vault, lease_id: str, ttl_seconds: int) -> tuple[IssuedToken, str]:
    """The lease token and its ciphertext under the app key; a token that cannot be sealed (and
    so never recorded) is revoked at once."""
    issued = vault.create_lease_token(lease_id, ttl_seconds)
    try:
        return issued, vault.encrypt_token(issued.token)
    except BaseException:
        vault.revoke_accessor(issued.accessor)
        raise


def _revoke_once_issued(vault: Vault, token_call: Future[tuple[IssuedToken, str]]) -> None:
    """The key failed: wait for the token begun beside it, and revoke it if it was issued (an
    unrecorded token must not outlive the request)."""
    try:
        issued, _ = token_call.result()
    except Exception:  # noqa: BLE001 - not issued, or already revoked by _issue_sealed_token
        return
    vault.revoke_accessor(issued.accessor)


def _provision_lease(vault: Vault, lease_id: str, expires_at: datetime, database: str) -> None:
    """Create the lease's key and lease token in Vault (each step is repeatable)."""
    ttl_seconds = int((expires_at - utcnow()).total_seconds())
    if ttl_seconds < 60:
        raise Conflict("The ticket's retention period has ended.")
    # Never create material under a deployment id another database owns: its sweep would take
    # ours for orphans (DeploymentConflict is a VaultError: the link is refused, 503).
    deployment.require_own_deployment(vault, database)
    # The key (create, then configure) and the lease token (create, then seal with the app key)
    # need nothing of each other: the token's two calls run on the Vault pool while this thread
    # makes the key's, so a new ticket's link waits for two round trips instead of four.
    token_call = vault.in_background(_issue_sealed_token, vault, lease_id, ttl_seconds)
    try:
        vault.create_lease_key(lease_id)
    except BaseException:
        _revoke_once_issued(vault, token_call)
        raise
    issued, sealed = token_call.result()
    try:
        activated = _record_lease_token(lease_id, issued, sealed, expires_at)
    except BaseException:
        vault.revoke_accessor(issued.accessor)
        raise
    if not activated:
        # A concurrent request finished provisioning first, or the ticket closed meanwhile:
        # our token is surplus, and an unrecorded token must not outlive this call.
        vault.revoke_accessor(issued.accessor)
        with read_only():
            status = lifecycle.lease_status(lease_id)
        if status not in LIVE_LEASE_STATES:
            # Closed while we provisioned: its purge may have run before our key and entity
            # existed, so they are ours to destroy (both steps tolerate "already gone").
            vault.delete_lease_key(lease_id)
            vault.delete_entity(issued.entity_id)


def _provision_or_unavailable(vault: Vault, ticket_ref: str, lease: Lease, database: str) -> None:
    try:
        _provision_lease(vault, lease.id, lease.expires_at, database)
    except VaultError as error:
        log.warning(
            "link not created: vault error",
            extra={"fields": {"ticket_ref": ticket_ref, "error": str(error)}},
        )
        raise ServiceUnavailable(
            "The secure store is unavailable; no link was created. Please retry."
        ) from error


_TICKET_CHANGED = "The ticket changed while the link was being created; please retry."


def _issue_link(
    settings: Settings,
    vault: Vault,
    ticket_ref: str,
    lease_id: str,
    ttl_seconds: int,
    actor: str,
    presentation: tuple[str | None, str | None] = (None, None),
) -> tuple[SubmissionLink, str]:
    """Record a link on the ticket's active lease, re-checked under its row lock."""
    token = secrets.token_urlsafe(LINK_TOKEN_BYTES)
    sealed_url = connectors.seal_link(settings, vault, ticket_ref, link_url(settings, token))
    now = utcnow()
    with transaction() as session:
        locked = lifecycle.lock_live_lease_by_ref(ticket_ref)
        if locked is None:
            # Without a live lease, the ticket alone says which refusal applies (a rare path).
            ticket = lifecycle.get_ticket(ticket_ref)
            closed = ticket is not None and ticket.status != TicketStatus.OPEN
            raise Conflict(lifecycle.CLOSED_TICKET_REFUSAL if closed else _TICKET_CHANGED)
        lease, ticket = locked
        if ticket.status != TicketStatus.OPEN:
            raise Conflict(lifecycle.CLOSED_TICKET_REFUSAL)
        if lease.id != lease_id or lease.status != LeaseStatus.ACTIVE:
            raise Conflict(_TICKET_CHANGED)
        link = SubmissionLink(
            ticket_id=ticket.id,
            lease_id=lease.id,
            token_hash=hash_link_token(settings, token),
            created_at=now,
            # A link never outlives the lease that would hold what it collects.
            expires_at=min(now + timedelta(seconds=ttl_seconds), lease.expires_at),
            message=presentation[0],
            locale=presentation[1],
        )
        session.add(link)
        session.flush()
        audit.record(
            "link.created",
            actor=actor,
            ticket_ref=ticket.ref,
            link_id=link.id,
            expires_at=link.expires_at.isoformat(),
        )
        connectors.enqueue_link_reply(ticket.ref, ticket.id, sealed_url, link.expires_at)
    return link, token


def create_submission_link(
    settings: Settings,
    vault: Vault,
    ticket_ref: str,
    *,
    ttl_seconds: int | None = None,
    actor: str = "ticket-system",
    message: str | None = None,
    locale: str | None = None,
) -> tuple[SubmissionLink, str]:
    """Issue a one-time link for a ticket (creating the ticket and its lease on first use).

    Returns the link row and the token, which exists only in the returned URL.
    """
    validate_ticket_ref(ticket_ref)
    ttl_seconds = _check_link_ttl(settings, ttl_seconds)
    presentation = check_link_presentation(message, locale)
    # The database's identity is written before its first lease: every lease is then either
    # older than it (from before deployment ids, maybe the legacy layout) or surely current,
    # which spares probing Vault for the layout (deployment.legacy_leases_live).
    # Read once: the claim below, before any material is created, is made for this id.
    database = deployment.database_id()
    with transaction():
        ticket, new_ticket = lifecycle.get_or_create_open_ticket(ticket_ref)
        lease = lifecycle.reserve_lease(settings, ticket, new_ticket=new_ticket)
    if lease.status == LeaseStatus.PROVISIONING:
        _provision_or_unavailable(vault, ticket_ref, lease, database)
    return _issue_link(settings, vault, ticket_ref, lease.id, ttl_seconds, actor, presentation)
