"""Agents proving who they are: login (password and second factor), the code re-prompt, their own
password change, lockout, and server-side session limits and invalidation. Every attempt is
audited; no password, code or secret ever is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select
from werkzeug.security import check_password_hash, generate_password_hash

from ..clock import utcnow
from ..config import Settings
from ..errors import BadRequest, ServiceError, Unauthorized
from ..extensions import db
from ..models import Agent, RecoveryCode, new_uuid
from ..transactions import read_only, transaction
from . import audit, totp
from .agents import actor_of, check_new_password, get_agent, hash_password, lock_agent

# Failed logins in a row (wrong password or wrong code) that lock the account.
MAX_FAILED_LOGINS = 5
# Checked against when the username is unknown, so both paths cost one scrypt verification.
_DUMMY_HASH = generate_password_hash("vault-service-timing-equaliser", method="scrypt")


class AuthenticationFailed(Unauthorized):
    """A password or code was wrong; `session_ended` when the failure locked the account and so
    ended every session of it (the caller must drop the current one too)."""

    def __init__(
        self, message: str, *, session_ended: bool = False, fields: dict[str, str] | None = None
    ):
        super().__init__(message, fields=fields)
        self.session_ended = session_ended


class AccountLocked(Unauthorized):
    """The password was right but the account is locked: only someone who knows the password
    learns this (and until when), so the answer is no oracle for who exists or is locked."""

    def __init__(self, locked_until: datetime):
        super().__init__("This account is locked after too many failed attempts.")
        self.locked_until = locked_until


@dataclass(frozen=True)
class Login:
    """A successful login: who, and with which second factor."""

    agent: Agent
    # "totp", "recovery_code", or "none" for an agent who has not enrolled yet.
    second_factor: str
    recovery_codes_left: int | None = None


def _relock_session_agent(agent: Agent, now: datetime, failure: str) -> Agent:
    """The logged-in agent's row, locked and re-read, for a step inside a session; a deleted or
    disabled account ends the session. An expired lockout is lifted on the way."""
    locked = lock_agent(agent.id)
    if locked is None or not locked.is_active:
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


def _recovery_codes_left(agent: Agent) -> int:
    left = db.session.scalar(
        select(func.count(RecoveryCode.id)).where(
            RecoveryCode.agent_id == agent.id, RecoveryCode.used_at.is_(None)
        )
    )
    return left or 0


def _check_second_factor(
    settings: Settings, agent: Agent, code: str, now: datetime
) -> tuple[str | None, str | None]:
    """("totp" or "recovery_code", None) when the code is good and now spent; (None, reason)."""
    code = (code or "").strip()
    if not code:
        return None, "missing code"
    if totp.is_totp_code(code):
        secret = totp.decrypt_secret(settings.secret_keys, agent.totp_secret_ciphertext or "")
        if secret is None:
            # Encrypted under none of the configured secret keys (the old one removed before
            # this agent signed in again): fail closed; the agent re-enrols.
            return None, "totp secret unreadable"
        step = totp.matching_step(secret, code, now)
        if step is None:
            return None, "wrong code"
        # Single use: a code is good only for a step later than the last one accepted.
        if agent.totp_last_step is not None and step <= agent.totp_last_step:
            return None, "code reused"
        agent.totp_last_step = step
        ciphertext = agent.totp_secret_ciphertext or ""
        if not totp.is_under_signing_key(settings.secret_keys, ciphertext):
            # Made under an older key still in the list: re-encrypt under the first, so every
            # agent who signs in during the rotation window survives the old key's removal.
            agent.totp_secret_ciphertext = totp.encrypt_secret(settings.secret_keys, secret)
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


def _record_second_factor_use(agent: Agent, second_factor: str, during: str) -> int | None:
    """Audit a recovery code's use; how many are left (None for a TOTP code)."""
    if second_factor != "recovery_code":
        return None
    left = _recovery_codes_left(agent)
    audit.record("agent.recovery_code_used", actor=actor_of(agent), during=during, remaining=left)
    return left


# --- authentication -------------------------------------------------------------------------


def authenticate(settings: Settings, username: str, password: str, code: str = "") -> Login | None:
    """Password and second factor; None on any failure, and every failure looks the same.

    An unknown user costs the same scrypt check as a known one; a disabled account answers
    exactly like a wrong password, and so does a locked one unless the password was right: then
    AccountLocked says until when (whoever knows the password may know that much; anyone else
    learns nothing). The reason is kept in the audit trail only.
    """
    now = utcnow()
    with read_only():
        found = get_agent(username)
        agent_id, stored_hash = (found.id, found.password_hash) if found else (None, _DUMMY_HASH)
    # The slow hash runs outside any transaction: on SQLite an open one holds the write lock.
    password_ok = check_password_hash(stored_hash, password)
    with transaction():
        agent = lock_agent(agent_id) if agent_id is not None else None
        # A password changed meanwhile: what was checked is no longer the password.
        password_ok = password_ok and agent is not None and agent.password_hash == stored_hash
        if agent is None:
            _login_failed(settings, None, "unknown user", now, count=False)
            return None
        if not agent.is_active:
            _login_failed(settings, agent, "disabled", now, count=False)
            return None
        _lift_expired_lock(agent, now)
        if is_locked(agent, now):
            # Not counted, so a lock is never extended by further tries.
            _login_failed(settings, agent, "locked", now, count=False)
            if not password_ok or not local_login_allowed(settings, agent):
                return None
            locked_until = agent.locked_until or now  # is_locked: never None here
        else:
            return _password_checked(settings, agent, password_ok, code, now)
    # Raised after the commit (the refusal stays audited), and only after the right password:
    # a wrong one on a locked account gets the same answer as any failure.
    raise AccountLocked(locked_until)


def _password_checked(
    settings: Settings, agent: Agent, password_ok: bool, code: str, now: datetime
) -> Login | None:
    """authenticate()'s steps for an enabled, unlocked account, inside its transaction."""
    if not password_ok:
        _login_failed(settings, agent, "wrong password", now, count=True)
        return None
    if not local_login_allowed(settings, agent):
        # After the password check, so the answer and its timing say nothing about it.
        _login_failed(settings, agent, "local login off", now, count=False)
        return None
    second_factor = "none"
    if agent.totp_enrolled:
        checked, reason = _check_second_factor(settings, agent, code, now)
        if checked is None:
            _login_failed(settings, agent, reason or "wrong code", now, count=True)
            return None
        second_factor = checked
    agent.failed_logins = 0
    audit.record("agent.login", actor=actor_of(agent), second_factor=second_factor)
    left = _record_second_factor_use(agent, second_factor, "login")
    return Login(agent, second_factor, left)


def local_login_allowed(settings: Settings, agent: Agent) -> bool:
    """With VAULT_SERVICE_LOCAL_LOGIN=off only a break-glass admin may use the password form."""
    if settings.local_login:
        return True
    return agent.role == "admin" and agent.username in settings.break_glass_admins


def second_factor_after_provider(
    settings: Settings, agent_id: int, session_nonce: str, code: str
) -> Login | None:
    """The TOTP (or recovery code) step after a provider sign-in that asserted no second factor:
    the login's own second-factor check and failure count. None on any failure; a logout,
    disable or password change since the provider step (the nonce moved) fails too."""
    now = utcnow()
    with transaction():
        agent = lock_agent(agent_id)
        if agent is None or agent.session_nonce != session_nonce or not agent.is_active:
            _login_failed(settings, agent, "session changed", now, count=False)
            return None
        _lift_expired_lock(agent, now)
        if is_locked(agent, now):
            _login_failed(settings, agent, "locked", now, count=False)
            return None
        checked, reason = _check_second_factor(settings, agent, code, now)
        if checked is None:
            _login_failed(settings, agent, reason or "wrong code", now, count=True)
            return None
        agent.failed_logins = 0
        audit.record("agent.login", actor=actor_of(agent), method="oidc", second_factor=checked)
        left = _record_second_factor_use(agent, checked, "login")
        return Login(agent, checked, left)


def _login_failed(
    settings: Settings, agent: Agent | None, reason: str, now: datetime, *, count: bool
) -> None:
    # An unknown username is not recorded: people type their password into that field.
    audit.record(
        "agent.login",
        actor=actor_of(agent) if agent else "anonymous",
        outcome="failure",
        reason=reason,
    )
    if agent is not None and count:
        _count_failure(settings, agent, now, in_session=False)


def reauthenticate(settings: Settings, agent: Agent, code: str) -> Login:
    """Confirm a live session with a fresh code (TOTP or recovery code) before a sensitive step.

    Raises AuthenticationFailed; with `session_ended` when the failures locked the account.
    """
    now = utcnow()
    with transaction():
        agent = _relock_session_agent(agent, now, "Invalid code.")
        reason: str | None
        second_factor: str | None
        if is_locked(agent, now):
            reason, second_factor = "locked", None
        elif not agent.totp_enrolled:
            reason, second_factor = "not enrolled", None
        else:
            second_factor, reason = _check_second_factor(settings, agent, code, now)
        if second_factor is not None:
            agent.failed_logins = 0
            audit.record("agent.reauth", actor=actor_of(agent), second_factor=second_factor)
            left = _record_second_factor_use(agent, second_factor, "reauth")
            return Login(agent, second_factor, left)
        audit.record("agent.reauth", actor=actor_of(agent), outcome="failure", reason=reason)
        ended = reason != "locked" and _count_failure(settings, agent, now, in_session=True)
    # Raised after the commit: the failure and its count are kept.
    raise AuthenticationFailed("Invalid code.", session_ended=ended)


def change_password(
    settings: Settings, agent: Agent, current: str, new: str, confirmation: str
) -> None:
    """The agent changes their own password; every session of theirs ends (the caller re-issues
    its own). A wrong current password counts as a failed login."""
    check_new_password(new, "new_password", username=agent.username)
    if new != confirmation:
        message = "The two new passwords differ."
        raise BadRequest(message, fields={"confirm_password": message})
    now = utcnow()
    failure: ServiceError | None = None
    with transaction():
        agent = _relock_session_agent(agent, now, "Invalid password.")
        current_ok = check_password_hash(agent.password_hash, current)
        locked = is_locked(agent, now)
        if not current_ok or locked:
            reason = "locked" if locked else "wrong current password"
            audit.record(
                "agent.password_changed", actor=actor_of(agent), outcome="failure", reason=reason
            )
            ended = not locked and _count_failure(settings, agent, now, in_session=True)
            message = "Your current password is not correct."
            failure = AuthenticationFailed(
                message, session_ended=ended, fields={"current_password": message}
            )
        elif new == current:
            message = "The new password must differ from the current one."
            failure = BadRequest(message, fields={"new_password": message})
        else:
            agent.password_hash = hash_password(new)
            agent.failed_logins = 0
            agent.session_nonce = new_uuid()
            audit.record(
                "agent.password_changed", actor=actor_of(agent), agent=agent.username, by="self"
            )
    # Raised after the commit: a counted failure (and a lock lifted on the way) are kept.
    if failure is not None:
        raise failure


# --- sessions -------------------------------------------------------------------------------


# Every signed-in request loads its agent first thing, when the session's identity map is still
# empty, so Session.get would build its SELECT anew each time: built once, the id bound per call.
_AGENT_BY_ID = select(Agent).where(Agent.id == bindparam("id"))


def load_agent(session_id: str) -> Agent | None:
    """flask-login's loader: the id must carry the agent's current session nonce."""
    agent_id, _, nonce = session_id.partition(":")
    if not agent_id.isdigit() or not nonce:
        return None
    # A read of its own: outside one, the session would begin a transaction that the request's
    # first read_only() block then joins (on SQLite an IMMEDIATE one, the write lock for a
    # read; on PostgreSQL a BEGIN and a COMMIT a read need not pay, transactions.py).
    with read_only() as session:
        agent: Agent | None = session.scalar(_AGENT_BY_ID, {"id": int(agent_id)})
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
    with transaction():
        agent = load_agent(session_id)
        if agent is not None:
            audit.record("agent.session_expired", actor=actor_of(agent), reason=reason)


def end_sessions(agent: Agent) -> None:
    """The agent logs out: every session of theirs ends server-side (its nonce rotates)."""
    with transaction():
        agent.session_nonce = new_uuid()
        audit.record("agent.logout", actor=actor_of(agent), agent=agent.username)


def record_reauth(agent: Agent, *, ok: bool, reason: str, auth_time: int | None = None) -> None:
    """Audit a re-authentication done at the identity provider (with the provider's auth_time:
    when the person actually signed in there)."""
    with transaction():
        if ok:
            audit.record(
                "agent.reauth", actor=actor_of(agent), second_factor=reason, auth_time=auth_time
            )
        else:
            audit.record("agent.reauth", actor=actor_of(agent), outcome="failure", reason=reason)


def record_backchannel_failure(reason: str) -> None:
    """Audit a back-channel logout refused (its token did not verify)."""
    with transaction():
        audit.record("agent.logout", actor="oidc", outcome="failure", reason=reason)
