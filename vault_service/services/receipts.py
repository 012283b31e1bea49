"""Signed deletion receipts: what a purge destroyed and who had access, as a JWS signed by a Vault
transit ed25519 key that never leaves Vault, verifiable by anyone against the published JWKS.

The purge job (services/purge.py) reads the accesses before anything is erased, signs in its
Vault phase (no transaction open), and stores the receipt in its completing transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import NotRequired, TypedDict, cast

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from .. import jws
from ..config import Settings
from ..errors import NotFound
from ..extensions import db
from ..models import Agent, AuditEvent, Grant, Receipt, Ticket
from ..transactions import read_only
from ..vault import RECEIPT_KEY, Vault, VaultRequestFailed
from . import lifecycle

# The audit action of a reveal that happened (services/access.py writes it).
REVEAL_ACTION = "credentials.revealed"


class ReceiptAccess(TypedDict):
    """One grant of the purged lease, with the times its holder revealed the credentials."""

    agent: str
    reason: str
    granted_at: str
    expires_at: str
    revealed_at: list[str]


class DestroyedInVault(TypedDict):
    """What the purge destroyed, each looked up again through Vault's API and found absent."""

    kv_entries: int
    credential_records: int
    transit_key: str
    identity_entity: str | None
    tokens_revoked: int
    token_accessors: list[str]


class PurgeFacts(TypedDict):
    """What a purge did, as its receipt states it (services/purge.py builds it)."""

    ticket_ref: str
    lease_id: str
    requested_at: str
    completed_at: str
    destroyed: DestroyedInVault
    verified_absent_in_vault: bool


class PurgeClaims(PurgeFacts):
    """What every receipt states, the unsigned ones of purges before migration 0007 too."""

    reason: str


class ReceiptClaims(PurgeClaims):
    """The signed claims: the purge's facts, who had access, and the JWT registered claims."""

    accesses: list[ReceiptAccess]
    iss: str
    iat: int
    jti: str


class PurgeReceipt(PurgeClaims):
    """The receipt as the API and the purge job's result show it (`purge_receipt`): the claims
    plus the hash of its audit record. A legacy unsigned receipt (migration 0007 copied it from
    its purge job) has neither the access summary nor the JWT claims, and may lack the hash."""

    accesses: NotRequired[list[ReceiptAccess]]
    iss: NotRequired[str]
    iat: NotRequired[int]
    jti: NotRequired[str]
    audit_record_hash: str | None


# A purge's reads of its accesses, built once with their values bound per call (see purge.py).
_LEASE_GRANTS = (
    select(Grant.id, Agent.username, Grant.reason, Grant.created_at, Grant.expires_at)
    .join(Agent, Agent.id == Grant.agent_id)
    .where(Grant.lease_id == bindparam("lease_id"))
    .order_by(Grant.created_at, Grant.id)
)
_TICKET_REVEALS = (
    select(AuditEvent.occurred_at, AuditEvent.details)
    .where(
        AuditEvent.ticket_ref == bindparam("ticket_ref"),
        AuditEvent.action == REVEAL_ACTION,
        AuditEvent.outcome == "success",
    )
    .order_by(AuditEvent.id)
)


def read_accesses(session: Session, lease_id: str, ticket_ref: str) -> list[ReceiptAccess]:
    """Every grant of the lease (agent, reason, times) with its reveals from the audit trail.

    Runs in the purge's read step: the grants' rows stay, but this is the moment the receipt's
    facts are fixed, before the purge changes anything.
    """
    grants = session.execute(_LEASE_GRANTS, {"lease_id": lease_id}).all()
    if not grants:
        return []
    revealed: dict[str, list[str]] = {grant.id: [] for grant in grants}
    # Reveals name their grant in the audit record's details; the ticket's records are few.
    reveals = session.execute(_TICKET_REVEALS, {"ticket_ref": ticket_ref}).all()
    for occurred_at, details in reveals:
        grant_id = (details or {}).get("grant_id")
        if grant_id in revealed:
            revealed[grant_id].append(occurred_at.isoformat())
    return [
        {
            "agent": grant.username,
            "reason": grant.reason,
            "granted_at": grant.created_at.isoformat(),
            "expires_at": grant.expires_at.isoformat(),
            "revealed_at": revealed[grant.id],
        }
        for grant in grants
    ]


# Signatures a purge asks for before giving up on a receipt key that keeps changing under it (the
# first after a rotation comes back from the new version; a second rotation meanwhile is rarer
# still): the attempt fails and is retried like any other.
SIGN_ATTEMPTS = 3


def sign_claims(vault: Vault, claims: ReceiptClaims) -> str:
    """The claims as a compact JWS, signed by Vault with the receipt key's latest version.

    The header names that version (its kid) and is signed with the claims, so it is chosen before
    Vault signs: it is the latest this process has read. Vault signs with its latest and says
    which it used; only when the two differ (the key was rotated since) is the key read again
    and the claims signed again, so a rotation's very next receipt carries the new kid, and a
    purge costs one Vault call here instead of two.
    """
    key = vault.last_receipt_key()
    for _ in range(SIGN_ATTEMPTS):
        if key.get("type") != "ed25519":
            raise VaultRequestFailed("sign receipt: the receipt key is not ed25519")
        version = int(key["latest_version"])
        header = jws.protected_header(jws.key_id(RECEIPT_KEY, version))
        signed_input = jws.signing_input(header, claims)
        signature = vault.sign_receipt(signed_input)
        token = jws.compact(signed_input, signature.signature)
        if signature.key_version == version and _verifies(token, key, claims["iss"]):
            return token
        key = vault.read_receipt_key()
    raise VaultRequestFailed("sign receipt: the receipt key changed while signing")


def _verifies(token: str, key: dict[str, object], issuer: str) -> bool:
    """Whether the receipt verifies as anyone would verify it, against the public keys the read
    of the receipt key gave (the JWKS): a key replaced under the same version is caught here."""
    try:
        jws.verify(token, jws.jwks_from_vault_key(RECEIPT_KEY, key), issuer=issuer)
    except jws.InvalidReceipt:
        return False
    return True


def claims_for(
    settings: Settings,
    *,
    issued_at: datetime,
    reason: str,
    body: PurgeFacts,
    accesses: list[ReceiptAccess],
) -> ReceiptClaims:
    """The receipt's claims: the purge's facts plus the JWT registered claims."""
    return ReceiptClaims(
        **body,
        reason=reason,
        accesses=accesses,
        iss=settings.public_url,
        iat=int(issued_at.timestamp()),
        jti=str(uuid.uuid4()),
    )


def store_receipt(
    ticket_id: str, lease_id: str, claims: ReceiptClaims, token: str, audit_record_hash: str
) -> PurgeReceipt:
    """Keep the receipt in the caller's transaction; returns its JSON form (purge_receipt)."""
    receipt = Receipt(
        ticket_id=ticket_id,
        lease_id=lease_id,
        reason=claims["reason"],
        payload=dict(claims),
        jws=token,
        audit_record_hash=audit_record_hash,
    )
    db.session.add(receipt)
    db.session.flush()
    return as_json(receipt)


def as_json(receipt: Receipt) -> PurgeReceipt:
    """The receipt as the API shows it: the signed claims plus the hash of its audit record."""
    # The JSON column holds what store_receipt wrote (ReceiptClaims) or a legacy receipt's claims.
    return cast(PurgeReceipt, {**receipt.payload, "audit_record_hash": receipt.audit_record_hash})


class ReceiptListing(TypedDict):
    """One receipt in the ticket API's list (GET /api/v1/tickets/<ref>/receipts)."""

    purge_receipt: PurgeReceipt
    purge_receipt_jws: str | None
    created_at: str


@dataclass(frozen=True)
class ReceiptView:
    """One receipt as the ticket API lists it."""

    receipt: PurgeReceipt
    receipt_jws: str | None
    created_at: datetime

    def as_json(self) -> ReceiptListing:
        return {
            "purge_receipt": self.receipt,
            "purge_receipt_jws": self.receipt_jws,
            "created_at": self.created_at.isoformat(),
        }


def _views(ticket: Ticket, limit: int | None = None) -> list[ReceiptView]:
    query = (
        select(Receipt)
        .where(Receipt.ticket_id == ticket.id)
        .order_by(Receipt.created_at.desc(), Receipt.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return [ReceiptView(as_json(r), r.jws, r.created_at) for r in db.session.scalars(query)]


def latest_receipt(ticket: Ticket) -> ReceiptView | None:
    """The ticket's newest receipt (of its latest purge), in the caller's read."""
    views = _views(ticket, limit=1)
    return views[0] if views else None


def list_receipts(ticket_ref: str) -> list[ReceiptView]:
    """Every receipt of a ticket across reopen cycles, newest first; NotFound if unknown."""
    from .lifecycle import validate_ticket_ref

    ref = validate_ticket_ref(ticket_ref)
    with read_only():
        ticket = lifecycle.get_ticket(ref)
        if ticket is None:
            raise NotFound("Unknown ticket.")
        return _views(ticket)


def public_jwks(vault: Vault) -> jws.Jwks:
    """Every version of the receipt key's public half, as a JWKS."""
    return jws.jwks_from_vault_key(RECEIPT_KEY, vault.read_receipt_key())
