"""Signed deletion receipts: what a purge destroyed and who had access, as a JWS signed by a Vault
transit ed25519 key that never leaves Vault, verifiable by anyone against the published JWKS.

The purge job (services/purge.py) reads the accesses before anything is erased, signs in its
Vault phase (no transaction open), and stores the receipt in its completing transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

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


def read_accesses(session, lease_id: str, ticket_ref: str) -> list[dict]:
    """Every grant of the lease (agent, reason, times) with its reveals from the audit trail.

    Runs in the purge's read step: the grants' rows stay, but this is the moment the receipt's
    facts are fixed, before the purge changes anything.
    """
    grants = session.execute(
        select(Grant.id, Agent.username, Grant.reason, Grant.created_at, Grant.expires_at)
        .join(Agent, Agent.id == Grant.agent_id)
        .where(Grant.lease_id == lease_id)
        .order_by(Grant.created_at, Grant.id)
    ).all()
    if not grants:
        return []
    revealed: dict[str, list[str]] = {grant.id: [] for grant in grants}
    # Reveals name their grant in the audit record's details; the ticket's records are few.
    reveals = session.execute(
        select(AuditEvent.occurred_at, AuditEvent.details)
        .where(
            AuditEvent.ticket_ref == ticket_ref,
            AuditEvent.action == REVEAL_ACTION,
            AuditEvent.outcome == "success",
        )
        .order_by(AuditEvent.id)
    ).all()
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


def sign_claims(vault: Vault, claims: dict) -> str:
    """The claims as a compact JWS, signed by Vault with the receipt key's latest version."""
    key = vault.read_receipt_key()
    if key.get("type") != "ed25519":
        raise VaultRequestFailed("sign receipt: the receipt key is not ed25519")
    version = int(key["latest_version"])
    signed_input = jws.signing_input(jws.protected_header(jws.key_id(RECEIPT_KEY, version)), claims)
    return jws.compact(signed_input, vault.sign_receipt(signed_input, version).signature)


def claims_for(
    settings: Settings, *, issued_at: datetime, reason: str, body: dict, accesses: list[dict]
) -> dict:
    """The receipt's claims: the purge's facts plus the JWT registered claims."""
    return {
        **body,
        "reason": reason,
        "accesses": accesses,
        "iss": settings.public_url,
        "iat": int(issued_at.timestamp()),
        "jti": str(uuid.uuid4()),
    }


def store_receipt(
    ticket_id: str, lease_id: str, claims: dict, token: str, audit_record_hash: str
) -> dict:
    """Keep the receipt in the caller's transaction; returns its JSON form (purge_receipt)."""
    receipt = Receipt(
        ticket_id=ticket_id,
        lease_id=lease_id,
        reason=claims["reason"],
        payload=claims,
        jws=token,
        audit_record_hash=audit_record_hash,
    )
    db.session.add(receipt)
    db.session.flush()
    return as_json(receipt)


def as_json(receipt: Receipt) -> dict:
    """The receipt as the API shows it: the signed claims plus the hash of its audit record."""
    return {**receipt.payload, "audit_record_hash": receipt.audit_record_hash}


@dataclass(frozen=True)
class ReceiptView:
    """One receipt as the ticket API lists it."""

    receipt: dict
    receipt_jws: str | None
    created_at: datetime

    def as_json(self) -> dict:
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
    from .tickets import validate_ticket_ref  # tickets reads receipts: imported when used

    ref = validate_ticket_ref(ticket_ref)
    with read_only():
        ticket = lifecycle.get_ticket(ref)
        if ticket is None:
            raise NotFound("Unknown ticket.")
        return _views(ticket)


def public_jwks(vault: Vault) -> dict:
    """Every version of the receipt key's public half, as a JWKS."""
    return jws.jwks_from_vault_key(RECEIPT_KEY, vault.read_receipt_key())
