"""Agent accounts: creation, the second factor's enrolment and reset, passwords set by an admin,
and disabling. Every change is audited; no password, code or secret ever is. Logging in and the
sessions are services/authentication.py's."""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from sqlalchemy import delete, select
from werkzeug.security import generate_password_hash

from ..clock import utcnow
from ..config import Settings
from ..errors import BadRequest, Conflict, NotFound, ValidationFailed
from ..extensions import db
from ..models import Agent, RecoveryCode, new_uuid
from ..transactions import transaction
from . import audit, totp
from .passwords import password_problem

ROLES = ("agent", "admin")
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


def actor_of(agent: Agent) -> str:
    """How the audit trail names an agent acting."""
    return f"agent:{agent.username}"


def hash_password(password: str) -> str:
    """scrypt, salted (werkzeug's default parameters)."""
    return generate_password_hash(password, method="scrypt")


def check_new_password(password: str, field: str = "password", *, username: str) -> None:
    """BadRequest, naming `field` and saying why, unless the password is acceptable for this
    user (services/passwords.py)."""
    message = password_problem(password, username)
    if message is not None:
        raise BadRequest(message, fields={field: message})


def create_agent(username: str, password: str | None, role: str = "agent", *, actor: str) -> Agent:
    """Create an agent; the password is stored only as an scrypt hash. None: no usable password
    yet (services/agent_setup.py gives the agent a link to choose one): the hash is then of 256
    random bits nobody keeps, so a login fails as a wrong password does, after the same scrypt
    check (no timing difference marks a pending account)."""
    username = username.strip().lower()
    if not USERNAME_PATTERN.fullmatch(username):
        raise BadRequest("Username: 2-64 of a-z, 0-9, '.', '_' or '-', starting alphanumeric.")
    if role not in ROLES:
        raise BadRequest(f"Role must be one of: {', '.join(ROLES)}.")
    if password is not None:
        check_new_password(password, username=username)
    stored = hash_password(password if password is not None else secrets.token_urlsafe(32))
    with transaction() as session:
        if session.scalar(select(Agent).where(Agent.username == username)) is not None:
            raise Conflict("An agent with that username exists.")
        agent = Agent(username=username, password_hash=stored, role=role)
        session.add(agent)
        session.flush()
        setup = {"password": "set-up link"} if password is None else {}
        audit.record("agent.created", actor=actor, agent=username, role=role, **setup)
    return agent


def get_agent(username: str) -> Agent | None:
    """The agent with that username, if any."""
    return db.session.scalar(select(Agent).where(Agent.username == username.strip().lower()))


def lock_agent(agent_id: int) -> Agent | None:
    """The agent's row, locked for this transaction (PostgreSQL; SQLite's writers queue anyway)
    and re-read, so concurrent attempts cannot both spend one code or lose a failure count."""
    return db.session.scalar(
        select(Agent)
        .where(Agent.id == agent_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _lock_by_username(username: str) -> Agent:
    found = get_agent(username)
    agent = lock_agent(found.id) if found is not None else None
    if agent is None:
        raise NotFound("No agent with that username.")
    return agent


def _store_second_factor(
    settings: Settings,
    agent: Agent,
    secret: str,
    now: datetime,
    *,
    last_step: int | None,
    actor: str,
    method: str,
) -> list[str]:
    replaced = agent.totp_enrolled
    agent.totp_secret_ciphertext = totp.encrypt_secret(settings.secret_keys, secret)
    agent.totp_enrolled_at = now
    agent.totp_last_step = last_step
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.agent_id == agent.id))
    codes = totp.new_recovery_codes()
    for code in codes:
        db.session.add(
            RecoveryCode(agent_id=agent.id, code_hash=totp.hash_recovery_code(code), created_at=now)
        )
    # A changed factor ends every other session (the caller re-issues its own).
    agent.session_nonce = new_uuid()
    audit.record(
        "agent.totp_enrolled",
        actor=actor,
        agent=agent.username,
        method=method,
        replaced=replaced,
        recovery_codes=len(codes),
    )
    return codes


def enrol_totp(settings: Settings, agent: Agent, secret: str, code: str) -> list[str]:
    """The agent confirms a new secret with a code from their app; returns the recovery codes,
    in clear this once (only their hashes are kept). The confirming code is spent."""
    now = utcnow()
    with transaction():
        locked = lock_agent(agent.id)
        step = totp.matching_step(secret, code or "", now)
        if locked is not None and step is not None:
            return _store_second_factor(
                settings, locked, secret, now, last_step=step, actor=actor_of(agent), method="app"
            )
        audit.record(
            "agent.totp_enrolled", actor=actor_of(agent), outcome="failure", reason="wrong code"
        )
    # Raised after the commit: the failed attempt stays in the audit trail.
    message = "That code does not match. Check the time on your device and try again."
    raise ValidationFailed(message, fields={"code": message})


def provision_totp(settings: Settings, agent: Agent, secret: str, *, actor: str) -> list[str]:
    """An operator sets the agent's TOTP secret (make dev's demo agent, test fixtures); returns
    the recovery codes. No code is spent: the secret came from the operator, not a device."""
    with transaction():
        locked = lock_agent(agent.id)
        if locked is None:
            raise NotFound("No agent with that username.")
        return _store_second_factor(
            settings, locked, secret, utcnow(), last_step=None, actor=actor, method="provisioned"
        )


def reset_totp(username: str, *, actor: str) -> Agent:
    """An admin removes an agent's second factor (a lost device and no recovery code left):
    every session ends, and the next login leads to a new enrolment."""
    with transaction():
        agent = _lock_by_username(username)
        agent.totp_secret_ciphertext = None
        agent.totp_enrolled_at = None
        agent.totp_last_step = None
        db.session.execute(delete(RecoveryCode).where(RecoveryCode.agent_id == agent.id))
        agent.session_nonce = new_uuid()
        audit.record("agent.totp_reset", actor=actor, agent=agent.username)
    return agent


def totp_secret_matches(settings: Settings, agent: Agent, secret: str) -> bool:
    """Whether the agent's stored secret is this one (make dev keeps its demo agent's)."""
    stored = totp.decrypt_secret(settings.secret_keys, agent.totp_secret_ciphertext or "")
    return agent.totp_enrolled and stored == secret


def set_password(username: str, password: str, *, actor: str) -> Agent:
    """An admin sets an agent's password: every session ends and a lockout is lifted."""
    with transaction():
        agent = _lock_by_username(username)
        check_new_password(password, username=agent.username)
        agent.password_hash = hash_password(password)
        agent.session_nonce = new_uuid()
        audit.record("agent.password_changed", actor=actor, agent=agent.username, by="admin")
        if agent.locked_until is not None or agent.failed_logins:
            audit.record(
                "agent.unlocked", actor=actor, agent=agent.username, reason="password set by admin"
            )
        agent.locked_until = None
        agent.failed_logins = 0
    return agent


def disable_agent(agent: Agent, *, actor: str) -> None:
    """Disable an agent; its sessions stop working at once (its session nonce changes)."""
    with transaction():
        agent.disabled_at = utcnow()
        agent.session_nonce = new_uuid()
        audit.record("agent.disabled", actor=actor, agent=agent.username)
