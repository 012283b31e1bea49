"""Agent accounts: creation, password checks, and server-side session invalidation."""

from __future__ import annotations

import re

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from ..clock import utcnow
from ..errors import BadRequest, Conflict
from ..extensions import db
from ..models import Agent, new_uuid
from . import audit

ROLES = ("agent", "admin")
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD_LENGTH = 12
# Checked against when the username is unknown, so both paths cost one scrypt verification.
_DUMMY_HASH = generate_password_hash("vault-service-timing-equaliser", method="scrypt")


def hash_password(password: str) -> str:
    """scrypt, salted (werkzeug's default parameters)."""
    return generate_password_hash(password, method="scrypt")


def create_agent(username: str, password: str, role: str = "agent", *, actor: str) -> Agent:
    """Create an agent; the password is stored only as an scrypt hash."""
    username = username.strip().lower()
    if not USERNAME_PATTERN.fullmatch(username):
        raise BadRequest("Username: 2-64 of a-z, 0-9, '.', '_' or '-', starting alphanumeric.")
    if role not in ROLES:
        raise BadRequest(f"Role must be one of: {', '.join(ROLES)}.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadRequest(f"Password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if db.session.scalar(select(Agent).where(Agent.username == username)) is not None:
        db.session.rollback()
        raise Conflict("An agent with that username exists.")
    agent = Agent(username=username, password_hash=hash_password(password), role=role)
    db.session.add(agent)
    db.session.flush()
    audit.record("agent.created", actor=actor, agent=username, role=role)
    db.session.commit()
    return agent


def authenticate(username: str, password: str) -> Agent | None:
    """The agent if the credentials match and the account is enabled; None otherwise.

    Unknown users cost the same hash check as known ones, and every failure looks the same.
    """
    agent = db.session.scalar(select(Agent).where(Agent.username == username.strip().lower()))
    password_ok = check_password_hash(agent.password_hash if agent else _DUMMY_HASH, password)
    ok = agent is not None and password_ok and agent.is_active
    audit.record(
        "agent.login",
        actor=f"agent:{agent.username}" if agent else "anonymous",
        outcome="success" if ok else "failure",
    )
    db.session.commit()
    return agent if ok else None


def load_agent(session_id: str) -> Agent | None:
    """flask-login's loader: the id must carry the agent's current session nonce."""
    agent_id, _, nonce = session_id.partition(":")
    if not agent_id.isdigit() or not nonce:
        return None
    agent = db.session.get(Agent, int(agent_id))
    if agent is None or agent.session_nonce != nonce or not agent.is_active:
        return None
    return agent


def end_sessions(agent: Agent, *, actor: str, action: str = "agent.logout") -> None:
    """Invalidate every session of the agent server-side by rotating its nonce."""
    agent.session_nonce = new_uuid()
    audit.record(action, actor=actor, agent=agent.username)
    db.session.commit()


def disable_agent(agent: Agent, *, actor: str) -> None:
    """Disable an agent; its sessions stop working at once."""
    agent.disabled_at = utcnow()
    end_sessions(agent, actor=actor, action="agent.disabled")
