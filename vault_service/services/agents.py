"""Agent accounts: creation, passwords, the TOTP second factor, lockout, and server-side session
invalidation. Every authentication event is audited; no password, code or secret ever is."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from werkzeug.security import check_password_hash, generate_password_hash

from ..clock import utcnow
from ..config import Settings
from ..errors import BadRequest, Conflict, NotFound, Unauthorized, ValidationFailed
from ..extensions import db
from ..models import Agent, RecoveryCode, new_uuid
from . import audit, totp

ROLES = ("agent", "admin")
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD_LENGTH = 12
# Long passphrases are welcome (ASVS asks for at least 64); the cap only bounds the work per try.
MAX_PASSWORD_LENGTH = 1024
# Failed logins in a row (wrong password or wrong code) that lock the account.
MAX_FAILED_LOGINS = 5
# Checked against when the username is unknown, so both paths cost one scrypt verification.
_DUMMY_HASH = generate_password_hash("vault-service-timing-equaliser", method="scrypt")


class AuthenticationFailed(Unauthorized):
    """A password or code was wrong; `session_ended` when the failure locked the account and so
    ended every session of it (the caller must drop the current one too)."""

    def __init__(self, message: str, *, session_ended: bool = False, fields=None):
        super().__init__(message, fields=fields)
        self.session_ended = session_ended


@dataclass(frozen=True)
class Login:
    """A successful login: who, and with which second factor."""

    agent: Agent
    # "totp", "recovery_code", or "none" for an agent who has not enrolled yet.
    second_factor: str
    recovery_codes_left: int | None = None


def _actor(agent: Agent) -> str:
    return f"agent:{agent.username}"


def hash_password(password: str) -> str:
    """scrypt, salted (werkzeug's default parameters)."""
    return generate_password_hash(password, method="scrypt")


def _check_new_password(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        message = f"Password must have at least {MIN_PASSWORD_LENGTH} characters."
        raise BadRequest(message, fields={field: message})
    if len(password) > MAX_PASSWORD_LENGTH:
        message = f"Password must have at most {MAX_PASSWORD_LENGTH} characters."
        raise BadRequest(message, fields={field: message})


def create_agent(username: str, password: str, role: str = "agent", *, actor: str) -> Agent:
    """Create an agent; the password is stored only as an scrypt hash."""
    username = username.strip().lower()
    if not USERNAME_PATTERN.fullmatch(username):
        raise BadRequest("Username: 2-64 of a-z, 0-9, '.', '_' or '-', starting alphanumeric.")
    if role not in ROLES:
        raise BadRequest(f"Role must be one of: {', '.join(ROLES)}.")
    _check_new_password(password)
    if db.session.scalar(select(Agent).where(Agent.username == username)) is not None:
        db.session.rollback()
        raise Conflict("An agent with that username exists.")
    agent = Agent(username=username, password_hash=hash_password(password), role=role)
    db.session.add(agent)
    db.session.flush()
    audit.record("agent.created", actor=actor, agent=username, role=role)
    db.session.commit()
    return agent


def get_agent(username: str) -> Agent | None:
    """The agent with that username, if any."""
    return db.session.scalar(select(Agent).where(Agent.username == username.strip().lower()))


def _lock_row(agent_id: int) -> Agent | None:
    """The agent's row, locked for this transaction (PostgreSQL; SQLite's writers queue anyway)
    and re-read, so concurrent attempts cannot both spend one code or lose a failure count."""
    return db.session.scalar(
        select(Agent)
        .where(Agent.id == agent_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _relock_session_agent(agent: Agent, now: datetime, failure: str) -> Agent:
    """The logged-in agent's row, locked and re-read, for a step inside a session; a deleted or
    disabled account ends the session. An expired lockout is lifted on the way."""
    locked = _lock_row(agent.id)
    if locked is None or not locked.is_active:
        db.session.rollback()
        raise AuthenticationFailed(failure, session_ended=True)
    _lift_expired_lock(locked, now)
    return locked


# --- lockout --------------------------------------------------------------------------------


def is_locked(agent: Agent, now: datetime) -> bool:
    """Whether the account is locked at this moment."""
    return agent.locked_until is not None and agent.locked_until > now


def _lift_expired_lock(agent: Agent, now: datetime) -> None:
    if agent.locked_until is not None and agent.locked_until <= now:
        agent.locked_until = None
        agent.failed_logins = 0
        audit.record("agent.unlocked", actor="system", agent=agent.username, reason="expired")


def _count_failure(settings: Settings, agent: Agent, now: datetime, *, in_session: bool) -> bool:
    """One more failure; at the limit, lock the account. True if this failure locked it.

    A lock caused inside a session (wrong codes at the re-prompt, a wrong current password) also
    ends every session: whoever holds that session is guessing. A lock from the login form leaves
    live sessions alone, or anyone could log every agent out by failing on purpose.
    """
    agent.failed_logins += 1
    if agent.failed_logins < MAX_FAILED_LOGINS:
        return False
    agent.locked_until = now + timedelta(seconds=settings.lockout_seconds)
    audit.record(
        "agent.locked",
        actor="system",
        agent=agent.username,
        failures=agent.failed_logins,
        locked_until=agent.locked_until.isoformat(),
    )
    if in_session:
        agent.session_nonce = new_uuid()
    return True


# --- the second factor ----------------------------------------------------------------------


def recovery_codes_left(agent: Agent) -> int:
    """How many of the agent's recovery codes are unused."""
    return db.session.scalar(
        select(func.count(RecoveryCode.id)).where(
            RecoveryCode.agent_id == agent.id, RecoveryCode.used_at.is_(None)
        )
    )


def _check_second_factor(
    settings: Settings, agent: Agent, code: str, now: datetime
) -> tuple[str | None, str | None]:
    """("totp" or "recovery_code", None) when the code is good and now spent; (None, reason)."""
    code = (code or "").strip()
    if not code:
        return None, "missing code"
    if totp.is_totp_code(code):
        secret = totp.decrypt_secret(settings.secret_key, agent.totp_secret_ciphertext or "")
        if secret is None:
            # Encrypted under another secret key (rotated): fail closed; the agent re-enrols.
            return None, "totp secret unreadable"
        step = totp.matching_step(secret, code, now)
        if step is None:
            return None, "wrong code"
        # Single use: a code is good only for a step later than the last one accepted.
        if agent.totp_last_step is not None and step <= agent.totp_last_step:
            return None, "code reused"
        agent.totp_last_step = step
        return "totp", None
    recovery = db.session.scalar(
        select(RecoveryCode).where(
            RecoveryCode.agent_id == agent.id,
            RecoveryCode.code_hash == totp.hash_recovery_code(code),
            RecoveryCode.used_at.is_(None),
        )
    )
    if recovery is None:
        return None, "wrong recovery code"
    recovery.used_at = now
    return "recovery_code", None


def _record_recovery_code_use(agent: Agent, during: str) -> int:
    left = recovery_codes_left(agent)
    audit.record("agent.recovery_code_used", actor=_actor(agent), during=during, remaining=left)
    return left


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
    agent.totp_secret_ciphertext = totp.encrypt_secret(settings.secret_key, secret)
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
    db.session.commit()
    return codes


def enrol_totp(settings: Settings, agent: Agent, secret: str, code: str) -> list[str]:
    """The agent confirms a new secret with a code from their app; returns the recovery codes,
    in clear this once (only their hashes are kept). The confirming code is spent."""
    now = utcnow()
    locked = _lock_row(agent.id)
    step = totp.matching_step(secret, code or "", now)
    if locked is None or step is None:
        audit.record(
            "agent.totp_enrolled", actor=_actor(agent), outcome="failure", reason="wrong code"
        )
        db.session.commit()
        message = "That code does not match. Check the time on your device and try again."
        raise ValidationFailed(message, fields={"code": message})
    return _store_second_factor(
        settings, locked, secret, now, last_step=step, actor=_actor(agent), method="app"
    )


def provision_totp(settings: Settings, agent: Agent, secret: str, *, actor: str) -> list[str]:
    """An operator sets the agent's TOTP secret (make dev's demo agent, test fixtures); returns
    the recovery codes. No code is spent: the secret came from the operator, not a device."""
    locked = _lock_row(agent.id)
    if locked is None:
        raise NotFound("No agent with that username.")
    return _store_second_factor(
        settings, locked, secret, utcnow(), last_step=None, actor=actor, method="provisioned"
    )


def reset_totp(username: str, *, actor: str) -> Agent:
    """An admin removes an agent's second factor (a lost device and no recovery code left):
    every session ends, and the next login leads to a new enrolment."""
    found = get_agent(username)
    agent = _lock_row(found.id) if found is not None else None
    if agent is None:
        db.session.rollback()
        raise NotFound("No agent with that username.")
    agent.totp_secret_ciphertext = None
    agent.totp_enrolled_at = None
    agent.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.agent_id == agent.id))
    agent.session_nonce = new_uuid()
    audit.record("agent.totp_reset", actor=actor, agent=agent.username)
    db.session.commit()
    return agent


def totp_secret_matches(settings: Settings, agent: Agent, secret: str) -> bool:
    """Whether the agent's stored secret is this one (make dev keeps its demo agent's)."""
    stored = totp.decrypt_secret(settings.secret_key, agent.totp_secret_ciphertext or "")
    return agent.totp_enrolled and stored == secret


# --- authentication -------------------------------------------------------------------------


def authenticate(settings: Settings, username: str, password: str, code: str = "") -> Login | None:
    """Password and second factor; None on any failure, and every failure looks the same.

    An unknown user costs the same scrypt check as a known one; a locked or disabled account
    answers exactly like a wrong password. The reason is kept in the audit trail only.
    """
    now = utcnow()
    found = get_agent(username)
    agent_id, stored_hash = (found.id, found.password_hash) if found else (None, _DUMMY_HASH)
    # The slow hash runs outside any transaction: on SQLite an open one holds the write lock.
    db.session.rollback()
    password_ok = check_password_hash(stored_hash, password)
    agent = _lock_row(agent_id) if agent_id is not None else None
    # A password changed meanwhile: what was checked is no longer the password.
    password_ok = password_ok and agent is not None and agent.password_hash == stored_hash
    if agent is None:
        return _login_failed(settings, None, "unknown user", now, count=False)
    if not agent.is_active:
        return _login_failed(settings, agent, "disabled", now, count=False)
    _lift_expired_lock(agent, now)
    if is_locked(agent, now):
        # Not counted, so a lock is never extended by further tries.
        return _login_failed(settings, agent, "locked", now, count=False)
    if not password_ok:
        return _login_failed(settings, agent, "wrong password", now, count=True)
    second_factor, left = "none", None
    if agent.totp_enrolled:
        second_factor, reason = _check_second_factor(settings, agent, code, now)
        if second_factor is None:
            return _login_failed(settings, agent, reason or "wrong code", now, count=True)
    agent.failed_logins = 0
    audit.record("agent.login", actor=_actor(agent), second_factor=second_factor)
    if second_factor == "recovery_code":
        left = _record_recovery_code_use(agent, "login")
    db.session.commit()
    return Login(agent, second_factor, left)


def _login_failed(
    settings: Settings, agent: Agent | None, reason: str, now: datetime, *, count: bool
) -> None:
    # An unknown username is not recorded: people type their password into that field.
    audit.record(
        "agent.login",
        actor=_actor(agent) if agent else "anonymous",
        outcome="failure",
        reason=reason,
    )
    if agent is not None and count:
        _count_failure(settings, agent, now, in_session=False)
    db.session.commit()
    return None


def reauthenticate(settings: Settings, agent: Agent, code: str) -> Login:
    """Confirm a live session with a fresh code (TOTP or recovery code) before a sensitive step.

    Raises AuthenticationFailed; with `session_ended` when the failures locked the account.
    """
    now = utcnow()
    agent = _relock_session_agent(agent, now, "Invalid code.")
    if is_locked(agent, now):
        reason, second_factor = "locked", None
    elif not agent.totp_enrolled:
        reason, second_factor = "not enrolled", None
    else:
        second_factor, reason = _check_second_factor(settings, agent, code, now)
    if second_factor is None:
        audit.record("agent.reauth", actor=_actor(agent), outcome="failure", reason=reason)
        ended = reason != "locked" and _count_failure(settings, agent, now, in_session=True)
        db.session.commit()
        raise AuthenticationFailed("Invalid code.", session_ended=ended)
    agent.failed_logins = 0
    audit.record("agent.reauth", actor=_actor(agent), second_factor=second_factor)
    left = None
    if second_factor == "recovery_code":
        left = _record_recovery_code_use(agent, "reauth")
    db.session.commit()
    return Login(agent, second_factor, left)


# --- passwords ------------------------------------------------------------------------------


def change_password(
    settings: Settings, agent: Agent, current: str, new: str, confirmation: str
) -> None:
    """The agent changes their own password; every session of theirs ends (the caller re-issues
    its own). A wrong current password counts as a failed login."""
    _check_new_password(new, "new_password")
    if new != confirmation:
        message = "The two new passwords differ."
        raise BadRequest(message, fields={"confirm_password": message})
    now = utcnow()
    agent = _relock_session_agent(agent, now, "Invalid password.")
    current_ok = check_password_hash(agent.password_hash, current)
    if not current_ok or is_locked(agent, now):
        reason = "locked" if is_locked(agent, now) else "wrong current password"
        audit.record(
            "agent.password_changed", actor=_actor(agent), outcome="failure", reason=reason
        )
        ended = reason != "locked" and _count_failure(settings, agent, now, in_session=True)
        db.session.commit()
        message = "Your current password is not correct."
        raise AuthenticationFailed(
            message, session_ended=ended, fields={"current_password": message}
        )
    if new == current:
        db.session.commit()
        message = "The new password must differ from the current one."
        raise BadRequest(message, fields={"new_password": message})
    agent.password_hash = hash_password(new)
    agent.failed_logins = 0
    agent.session_nonce = new_uuid()
    audit.record("agent.password_changed", actor=_actor(agent), agent=agent.username, by="self")
    db.session.commit()


def set_password(username: str, password: str, *, actor: str) -> Agent:
    """An admin sets an agent's password: every session ends and a lockout is lifted."""
    found = get_agent(username)
    agent = _lock_row(found.id) if found is not None else None
    if agent is None:
        db.session.rollback()
        raise NotFound("No agent with that username.")
    _check_new_password(password)
    agent.password_hash = hash_password(password)
    agent.session_nonce = new_uuid()
    audit.record("agent.password_changed", actor=actor, agent=agent.username, by="admin")
    if agent.locked_until is not None or agent.failed_logins:
        audit.record(
            "agent.unlocked", actor=actor, agent=agent.username, reason="password set by admin"
        )
    agent.locked_until = None
    agent.failed_logins = 0
    db.session.commit()
    return agent


# --- sessions -------------------------------------------------------------------------------


def load_agent(session_id: str) -> Agent | None:
    """flask-login's loader: the id must carry the agent's current session nonce."""
    agent_id, _, nonce = session_id.partition(":")
    if not agent_id.isdigit() or not nonce:
        return None
    agent = db.session.get(Agent, int(agent_id))
    if agent is None or agent.session_nonce != nonce or not agent.is_active:
        return None
    return agent


def session_expiry(
    settings: Settings, *, authenticated_at: object, last_seen_at: object, now: int
) -> str | None:
    """Why a session (times in epoch seconds, from the signed cookie) is over, or None."""
    if not isinstance(authenticated_at, int) or not isinstance(last_seen_at, int):
        return "no timestamps"  # a cookie from before these limits: end it
    if now - authenticated_at >= settings.session_absolute_seconds:
        return "absolute timeout"
    if now - last_seen_at >= settings.session_idle_seconds:
        return "idle timeout"
    return None


def is_recent(settings: Settings, authenticated_at: object, now: int) -> bool:
    """Whether the last password+code (or code re-prompt) is recent enough for a reveal."""
    return isinstance(authenticated_at, int) and now - authenticated_at < settings.reauth_seconds


def record_session_expired(session_id: str, reason: str) -> None:
    """Audit a session the server ended for its age (if it still named a current agent)."""
    agent = load_agent(session_id)
    if agent is None:
        return
    audit.record("agent.session_expired", actor=_actor(agent), reason=reason)
    db.session.commit()


def end_sessions(agent: Agent, *, actor: str, action: str = "agent.logout") -> None:
    """Invalidate every session of the agent server-side by rotating its nonce."""
    agent.session_nonce = new_uuid()
    audit.record(action, actor=actor, agent=agent.username)
    db.session.commit()


def disable_agent(agent: Agent, *, actor: str) -> None:
    """Disable an agent; its sessions stop working at once."""
    agent.disabled_at = utcnow()
    end_sessions(agent, actor=actor, action="agent.disabled")
