"""A new agent's first password, chosen by the agent on a one-time set-up link instead of typed by
an admin: the admin never knows it, and the link is a capability (its token kept only as a keyed
hash, services/capabilities.py) that works once and expires. Every step is audited."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, func, select, update

from ..clock import utcnow
from ..config import Settings
from ..errors import BadRequest, NotFound, ServiceError
from ..extensions import db
from ..models import Agent, AgentSetupLink
from ..transactions import read_only, rows_matched, transaction
from . import audit, capabilities
from .agents import actor_of, check_new_password, create_agent, get_agent, hash_password

# How long a set-up link works: a working day and a night, so a link sent in the evening still
# opens the next morning; an admin issues a new one after that.
SETUP_LINK_TTL = timedelta(hours=24)
SETUP_TOKEN_BYTES = 32
_PURPOSE = b"agent-setup-token/v1"


class SetupLinkGone(ServiceError):
    # One answer for unknown, used, replaced and expired links: no oracle for which it was.
    status, code = 410, "setup_link_unavailable"
    message = "This set-up link is no longer valid. Ask an administrator for a new one."


@dataclass(frozen=True)
class IssuedSetupLink:
    """A set-up link as the admin sees it, once: the URL holds the token."""

    username: str
    url: str
    expires_at: datetime


def setup_url(settings: Settings, token: str) -> str:
    """The agent's URL for a set-up token."""
    return f"{settings.public_url}/setup/{token}"


def _issue(settings: Settings, agent: Agent, *, actor: str) -> IssuedSetupLink:
    """A new link for the agent inside the caller's transaction; an older unused one is deleted
    (its token then finds nothing: the same 410 as any dead link)."""
    now = utcnow()
    token = secrets.token_urlsafe(SETUP_TOKEN_BYTES)
    db.session.execute(
        delete(AgentSetupLink).where(
            AgentSetupLink.agent_id == agent.id, AgentSetupLink.used_at.is_(None)
        )
    )
    link = AgentSetupLink(
        agent_id=agent.id,
        token_hash=capabilities.token_hash(settings.signing_key, _PURPOSE, token),
        created_at=now,
        expires_at=now + SETUP_LINK_TTL,
    )
    db.session.add(link)
    db.session.flush()
    audit.record(
        "agent.setup_link_issued",
        actor=actor,
        agent=agent.username,
        link_id=link.id,
        expires_at=link.expires_at.isoformat(),
    )
    return IssuedSetupLink(agent.username, setup_url(settings, token), link.expires_at)


def create_agent_with_setup_link(
    settings: Settings, username: str, role: str = "agent", *, actor: str
) -> IssuedSetupLink:
    """Create an agent with no usable password yet, and the link on which they choose one."""
    with transaction():
        agent = create_agent(username, None, role, actor=actor)
        return _issue(settings, agent, actor=actor)


def _live_link(settings: Settings, token: str) -> tuple[AgentSetupLink, Agent]:
    """The unused, unexpired link of this token and its enabled agent; SetupLinkGone otherwise."""
    if not token or len(token) > 128:
        raise SetupLinkGone()
    hashes = capabilities.token_hashes(settings, _PURPOSE, token)
    row = db.session.execute(
        select(AgentSetupLink, Agent)
        .join(Agent, Agent.id == AgentSetupLink.agent_id)
        .where(AgentSetupLink.token_hash.in_(hashes))
    ).first()
    if row is None:
        raise SetupLinkGone()
    link, agent = row
    if link.used_at is not None or link.expires_at <= utcnow() or agent.disabled_at is not None:
        raise SetupLinkGone()
    return link, agent


def open_setup_link(settings: Settings, token: str) -> str:
    """The username the link sets up. A GET changes nothing, so a mail scanner's visit is
    harmless; SetupLinkGone if the link cannot be used."""
    with read_only():
        _, agent = _live_link(settings, token)
        return agent.username


def complete_setup(settings: Settings, token: str, password: str, confirmation: str) -> Agent:
    """The agent's chosen password replaces the unusable one and the link is spent, in one
    transaction; a refused password leaves the link working. The caller then signs the agent
    in, and the second factor's enrolment follows as at any first login."""
    with read_only():
        _, pending = _live_link(settings, token)
        username = pending.username
    check_new_password(password, username=username)
    if password != confirmation:
        message = "The two passwords differ."
        raise BadRequest(message, fields={"confirm_password": message})
    # The slow hash before the transaction: on SQLite an open one holds the write lock.
    password_hash = hash_password(password)
    now = utcnow()
    with transaction():
        link, agent = _live_link(settings, token)
        # Spent only if still unused: of two submissions racing, one wins, the other is gone.
        spent = rows_matched(
            db.session.execute(
                update(AgentSetupLink)
                .where(AgentSetupLink.id == link.id, AgentSetupLink.used_at.is_(None))
                .values(used_at=now)
            )
        )
        if not spent:
            raise SetupLinkGone()
        agent.password_hash = password_hash
        audit.record("agent.setup_completed", actor=actor_of(agent), link_id=link.id)
        return agent


def _pending() -> Select[int]:
    # count(used_at) counts the used links only: zero means none was used yet.
    return (
        select(AgentSetupLink.agent_id)
        .group_by(AgentSetupLink.agent_id)
        .having(func.count(AgentSetupLink.used_at) == 0)
    )


def setup_pending(agent_id: int) -> bool:
    """Whether the agent was created with a set-up link and has not used one yet."""
    return db.session.scalar(_pending().where(AgentSetupLink.agent_id == agent_id)) is not None


def pending_agent_ids() -> set[int]:
    """Every agent still to choose a password on a set-up link (one grouped query)."""
    return set(db.session.scalars(_pending()))


def reissue_setup_link(settings: Settings, username: str, *, actor: str) -> IssuedSetupLink:
    """A fresh link for an agent who has not finished setting up (the first one expired or was
    lost); the older one stops working."""
    with transaction():
        agent = get_agent(username) if len(username) <= 64 else None
        if agent is None:
            raise NotFound("No agent with that username.")
        if not setup_pending(agent.id):
            raise BadRequest(f"{agent.username} has already chosen a password.")
        return _issue(settings, agent, actor=actor)
