"""What an admin may do beyond an agent: manage agents' accounts, end anyone's grant, retry
failing jobs. Every action is audited with the admin as actor; views/admin.py and the CLI are
thin over these functions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from ..clock import utcnow
from ..errors import BadRequest, NotFound
from ..models import Agent, Grant, Job, Lease, Ticket, new_uuid
from ..transactions import read_only, rows_matched, transaction
from ..vault import Vault
from . import agent_setup, audit, grants, jobs
from .agents import ROLES, get_agent, lock_agent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentSummary:
    """One agent as the admin console lists it; never a hash or a secret."""

    username: str
    role: str
    disabled: bool
    locked_until: datetime | None
    failed_logins: int
    second_factor: bool
    created_at: datetime
    # Created with a set-up link and no password chosen on it yet (services/agent_setup.py).
    setup_pending: bool = False


@dataclass(frozen=True)
class LiveGrant:
    """A grant whose window is still open, on any ticket."""

    id: str
    ticket_ref: str
    agent: str
    reason: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class FailingJob:
    """A job that has failed too often and is still retried; its error, never a secret."""

    id: str
    kind: str
    ticket_ref: str | None
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime


def list_agents() -> list[AgentSummary]:
    """Every agent, by username."""
    with read_only() as session:
        rows = session.scalars(select(Agent).order_by(Agent.username)).all()
        pending = agent_setup.pending_agent_ids()
        return [
            AgentSummary(
                username=agent.username,
                role=agent.role,
                disabled=agent.disabled_at is not None,
                locked_until=agent.locked_until,
                failed_logins=agent.failed_logins,
                second_factor=agent.totp_enrolled,
                created_at=agent.created_at,
                setup_pending=agent.id in pending,
            )
            for agent in rows
        ]


def _locked(username: object) -> Agent:
    """The agent's row locked for this transaction; NotFound for an unknown or malformed name."""
    if not isinstance(username, str) or not 0 < len(username) <= 64:
        raise NotFound("No agent with that username.")
    found = get_agent(username)
    agent = lock_agent(found.id) if found is not None else None
    if agent is None:
        raise NotFound("No agent with that username.")
    return agent


def live_grants(agent_username: str | None = None) -> list[LiveGrant]:
    """Unrevoked, unexpired grants across tickets (one agent's, if named), ending soonest first."""
    statement = (
        select(
            Grant.id,
            Ticket.ref,
            Agent.username,
            Grant.reason,
            Grant.created_at,
            Grant.expires_at,
        )
        .join(Lease, Lease.id == Grant.lease_id)
        .join(Ticket, Ticket.id == Lease.ticket_id)
        .join(Agent, Agent.id == Grant.agent_id)
        .where(Grant.revoked_at.is_(None), Grant.expires_at > utcnow())
        .order_by(Grant.expires_at, Grant.id)
    )
    if agent_username is not None:
        statement = statement.where(Agent.username == agent_username)
    with read_only() as session:
        return [LiveGrant(*row) for row in session.execute(statement)]


def revoke_grant(vault: Vault, ticket_ref: str, grant_id: object, *, actor: str) -> bool:
    """End anyone's grant now (Vault first); False if it had already ended."""
    return grants.end_grant(vault, ticket_ref, grant_id, actor=actor, owner_id=None)


def disable_agent(vault: Vault, username: str, *, actor: str) -> int:
    """Disable an agent: their sessions stop at once (the nonce rotates in the same commit), then
    every live grant's token is revoked in Vault. Returns how many grants were ended."""
    with transaction():
        agent = _locked(username)
        if agent.disabled_at is None:
            agent.disabled_at = utcnow()
            audit.record("agent.disabled", actor=actor, agent=agent.username)
        # Rotated even when already disabled: a repeated disable still ends any session.
        agent.session_nonce = new_uuid()
        name = agent.username
    # After the commit and outside any transaction (the gateway refuses Vault calls inside
    # one): the account can no longer ask for a grant, so this list cannot grow behind us.
    ended = 0
    for grant in live_grants(name):
        ended += revoke_grant(vault, grant.ticket_ref, grant.id, actor=actor)
    return ended


def enable_agent(username: str, *, actor: str) -> bool:
    """Let a disabled agent sign in again (with a new login; old sessions stay ended)."""
    with transaction():
        agent = _locked(username)
        if agent.disabled_at is None:
            return False
        agent.disabled_at = None
        agent.session_nonce = new_uuid()
        audit.record("agent.enabled", actor=actor, agent=agent.username)
    return True


def unlock_agent(username: str, *, actor: str) -> bool:
    """Lift a lockout after failed logins; False if the account was not locked."""
    with transaction():
        agent = _locked(username)
        if agent.locked_until is None and not agent.failed_logins:
            return False
        agent.locked_until = None
        agent.failed_logins = 0
        audit.record("agent.unlocked", actor=actor, agent=agent.username, reason="admin")
    return True


def change_role(username: str, role: object, *, actor: str, acting_username: str) -> bool:
    """Give an agent another role; ends their sessions so no page keeps the old one's view.
    An admin cannot demote themselves (the last admin would lock everyone out of the console)."""
    if role not in ROLES:
        raise BadRequest(f"Role must be one of: {', '.join(ROLES)}.", fields={"role": "Unknown."})
    with transaction():
        agent = _locked(username)
        if agent.username == acting_username and role != "admin":
            raise BadRequest("You cannot remove your own admin role.")
        if agent.role == role:
            return False
        audit.record(
            "agent.role_changed", actor=actor, agent=agent.username, old=agent.role, new=role
        )
        agent.role = str(role)
        agent.session_nonce = new_uuid()
    return True


def failing_jobs() -> list[FailingJob]:
    """Unfinished jobs of every kind that have failed too often, oldest first."""
    with read_only() as session:
        rows = session.execute(
            select(
                Job.id,
                Job.kind,
                Ticket.ref,
                Job.attempts,
                Job.next_attempt_at,
                Job.last_error,
                Job.created_at,
            )
            .outerjoin(Ticket, Ticket.id == Job.ticket_id)
            .where(Job.completed_at.is_(None), Job.attempts >= jobs.FAILING_AFTER_ATTEMPTS)
            .order_by(Job.created_at)
        ).all()
    return [FailingJob(*row) for row in rows]


def retry_job(job_id: object, *, actor: str) -> None:
    """Make an unfinished job due now (the worker picks it up on its next pass), audited."""
    if not isinstance(job_id, str) or len(job_id) > 36:
        raise NotFound("Unknown job.")
    with transaction() as session:
        job = session.get(Job, job_id)
        if job is None or job.completed_at is not None:
            raise NotFound("Unknown job, or it has finished.")
        ticket_ref = session.scalar(select(Ticket.ref).where(Ticket.id == job.ticket_id))
        changed = rows_matched(
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.completed_at.is_(None))
                .values(next_attempt_at=utcnow())
            )
        )
        if changed:
            audit.record(
                "job.retried",
                actor=actor,
                ticket_ref=ticket_ref,
                job_id=job_id,
                kind=job.kind,
                attempts=job.attempts,
            )
