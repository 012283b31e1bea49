"""An agent's view of one grant (is it still live, and why not) and ending it early: the reveal
page polls the first, "End my access now" and the admin console call the second."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from ..clock import utcnow
from ..errors import NotFound
from ..models import Grant, GrantState, Lease, Ticket
from ..transactions import read_only, rows_matched, transaction
from ..vault import Vault
from . import audit
from .lifecycle import grant_state, is_serving, validate_ticket_ref

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GrantStatus:
    """Whether a grant still lets its agent see the values, and if not, why; never a value."""

    active: bool
    # "closed" (the ticket was closed or purged), "revoked" (ended early) or "expired".
    reason: str | None
    expires_at: datetime

    def as_json(self) -> dict[str, object]:
        return {
            "active": self.active,
            "reason": self.reason,
            "expires_at": self.expires_at.isoformat(),
        }


@dataclass  # not frozen: lifecycle.GrantTimes (a protocol of plain attributes) accepts it
class _GrantRow:
    id: str
    agent_id: int
    ticket_ref: str
    expires_at: datetime
    revoked_at: datetime | None
    token_ciphertext: str | None
    token_accessor: str
    lease_status: object
    ticket_status: object


def _read_grant(ticket_ref: str, grant_id: object) -> _GrantRow | None:
    """The grant with its lease's and ticket's status, if it belongs to this ticket."""
    if not isinstance(grant_id, str) or len(grant_id) > 64:
        return None
    row = (
        select(
            Grant.id,
            Grant.agent_id,
            Ticket.ref,
            Grant.expires_at,
            Grant.revoked_at,
            Grant.token_ciphertext,
            Grant.token_accessor,
            Lease.status,
            Ticket.status,
        )
        .join(Lease, Lease.id == Grant.lease_id)
        .join(Ticket, Ticket.id == Lease.ticket_id)
        .where(Grant.id == grant_id, Ticket.ref == ticket_ref)
    )
    with read_only() as session:
        found = session.execute(row).first()
    return None if found is None else _GrantRow(*found)


def _status_of(grant: _GrantRow, now: datetime) -> GrantStatus:
    # The ticket first: a close also marks its grants revoked, and the agent must be told the
    # ticket closed (the values are being deleted), not that someone took their access away.
    if not is_serving(grant.lease_status, grant.ticket_status):  # type: ignore[arg-type]
        return GrantStatus(False, "closed", grant.expires_at)
    state = grant_state(grant, now)
    if state == GrantState.ACTIVE:
        return GrantStatus(True, None, grant.expires_at)
    return GrantStatus(
        False, "expired" if state == GrantState.EXPIRED else "revoked", grant.expires_at
    )


def grant_status(agent_id: int, ticket_ref: str, grant_id: object) -> GrantStatus:
    """The agent's own grant's status; NotFound for anyone else's (no oracle on other grants)."""
    ref = validate_ticket_ref(ticket_ref)
    grant = _read_grant(ref, grant_id)
    if grant is None or grant.agent_id != agent_id:
        raise NotFound("Unknown grant.")
    return _status_of(grant, utcnow())


def end_grant(
    vault: Vault, ticket_ref: str, grant_id: object, *, actor: str, owner_id: int | None
) -> bool:
    """Revoke the grant's token in Vault now, then mark it revoked, audited. `owner_id` limits it
    to that agent's own grants (None: an admin's revoke). False if it had already ended."""
    ref = validate_ticket_ref(ticket_ref)
    grant = _read_grant(ref, grant_id)
    if grant is None or (owner_id is not None and grant.agent_id != owner_id):
        raise NotFound("Unknown grant.")
    if grant.revoked_at is not None:
        return False
    # Vault first, outside any transaction: once this returns, the token reads nothing, whatever
    # happens to the write below (a failed write leaves a grant the DB still calls live but
    # Vault refuses: fail closed). Revoking an expired token's accessor is harmless (204).
    vault.revoke_accessor(grant.token_accessor)
    with transaction() as session:
        changed = rows_matched(
            session.execute(
                update(Grant)
                .where(Grant.id == grant.id, Grant.revoked_at.is_(None))
                .values(revoked_at=utcnow(), token_ciphertext=None)
            )
        )
        if changed:
            audit.record(
                "access.revoked",
                actor=actor,
                ticket_ref=ref,
                grant_id=grant.id,
                token_accessor=grant.token_accessor,
            )
    return bool(changed)
