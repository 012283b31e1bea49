"""Agents' authentication: login (password and second factor), logout, the code re-prompt before
a sensitive step, second-factor enrolment, password change, and the session limits checked on
every request. The ticket pages are views/tickets.py."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, overload
from urllib.parse import urlsplit

import segno
from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user, logout_user
from flask_login.config import COOKIE_NAME as REMEMBER_COOKIE_NAME
from werkzeug.wrappers import Response

from ..clock import utcnow
from ..errors import BadRequest, ValidationFailed
from ..extensions import current_settings, login_manager
from ..models import Agent
from ..services import agents, authentication, totp
from . import login_required

bp = Blueprint("auth", __name__)
login_manager.login_view = "auth.login"
login_manager.session_protection = "strong"

# Epoch seconds in the signed session cookie. The cookie is signed, not encrypted: it holds
# nothing but these times, flask-login's id (agent id and nonce) and, during enrolment, the
# candidate TOTP secret encrypted under the server's key.
AUTHENTICATED_AT = "auth_at"  # password (and code): the absolute timeout counts from here
LAST_SEEN_AT = "seen_at"  # the last request: the idle timeout counts from here
VERIFIED_AT = "reauth_at"  # the last code typed (login or re-prompt): reveals need it recent
PENDING_TOTP = "totp_pending"
AUTH_METHOD = "auth_method"  # "oidc" for a session that signed in at the identity provider
OIDC_MFA = "oidc_mfa"  # the provider asserted a second factor at login
# A refused access request or reveal, held while the agent re-authenticates at the provider, so
# the return leg resumes it: its path and form fields (a reason, a duration, a grant id; never
# the CSRF token). The agent's own input, no customer value: a signed cookie may carry it.
PENDING_ACTION = "pending_action"
# The agents' blueprints (this one and the ticket pages) by endpoint prefix.
AGENT_BLUEPRINTS = ("auth.", "tickets.")
# Agent views open to an agent without a second factor; every other one sends them to enrol.
ENROLMENT_EXEMPT = frozenset(
    {
        "auth.login",
        "auth.login_submit",
        "auth.logout",
        "auth.enrol_totp",
        "auth.enrol_totp_submit",
        "auth.change_password",
        "auth.change_password_submit",
        # The provider's steps (views/oidc.py) run before or beside a session.
        "auth.oidc_start",
        "auth.oidc_callback",
        "auth.oidc_code",
        "auth.oidc_code_submit",
        "auth.oidc_backchannel_logout",
        # A set-up link answers the same whatever session the browser holds (agent_setup.py).
        "auth.agent_setup_form",
        "auth.agent_setup_submit",
    }
)
LOGIN_FAILED = "Invalid login."


@login_manager.user_loader  # type: ignore[untyped-decorator]  # flask-login ships no types
def load_user(session_id: str) -> Agent | None:
    """Resolve the session's agent; a rotated nonce or a disabled account ends the session."""
    return authentication.load_agent(session_id)


def _now() -> int:
    return int(utcnow().timestamp())


def _agent() -> Agent:
    """The logged-in Agent itself (services take the model, not flask-login's proxy)."""
    agent: Agent = current_user._get_current_object()
    return agent


@bp.before_app_request
def enforce_session_limits() -> Response | None:
    """On every request: end a session past its idle or absolute limit (server-side, from the
    signed timestamps), never honour a remember-me cookie, and keep agents without a second
    factor on the enrolment page."""
    if request.endpoint == "static":
        return None  # cacheable responses must not carry a session cookie
    remember_cookie = current_app.config.get("REMEMBER_COOKIE_NAME", REMEMBER_COOKIE_NAME)
    if remember_cookie in request.cookies:
        # We never issue one; flask-login then neither reads this one nor keeps it.
        session["_remember"] = "clear"
    session_id = session.get("_user_id")
    if session_id is None:
        return None
    now = _now()
    reason = authentication.session_expiry(
        current_settings(),
        authenticated_at=session.get(AUTHENTICATED_AT),
        last_seen_at=session.get(LAST_SEEN_AT),
        now=now,
    )
    if reason is not None:
        authentication.record_session_expired(session_id, reason)
        session.clear()
        flash("Your session has ended. Please log in again.", "info")
        return None  # the deny-by-default guard now sends the browser to the login page
    if session.get(LAST_SEEN_AT) != now:
        session[LAST_SEEN_AT] = now
    endpoint = request.endpoint or ""
    if (
        endpoint.startswith(AGENT_BLUEPRINTS)
        and endpoint not in ENROLMENT_EXEMPT
        and current_user.is_authenticated
        and not current_user.totp_enrolled
        # The identity provider asserted a second factor at this login (views/oidc.py).
        and not session.get("oidc_mfa")
    ):
        flash("Set up your second factor before anything else.", "info")
        return redirect(url_for("auth.enrol_totp"))
    return None


def _start_session(agent: Agent, *, verified: bool) -> None:
    """A brand-new session: nothing from before the login survives (no fixation), and no
    remember-me cookie is ever set."""
    session.clear()
    login_user(agent, remember=False)
    now = _now()
    session[AUTHENTICATED_AT] = now
    session[LAST_SEEN_AT] = now
    if verified:
        session[VERIFIED_AT] = now


def _reissue_session(agent: Agent) -> None:
    """After the agent's nonce rotated (password or factor change): a new session for this
    browser, with the same age; every other session of the agent is over."""
    kept = {k: session[k] for k in (AUTHENTICATED_AT, LAST_SEEN_AT, VERIFIED_AT) if k in session}
    session.clear()
    login_user(agent, remember=False)
    session.update(kept)


def _end_session() -> None:
    logout_user()
    session.clear()


def recently_verified() -> bool:
    """Whether this session typed a code recently enough for a reveal or an access request."""
    return authentication.is_recent(current_settings(), session.get(VERIFIED_AT), _now())


def safe_next(target: str | None) -> str:
    """Only same-origin relative paths: never an open redirect."""
    if not target:
        return url_for("tickets.dashboard")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("tickets.dashboard")
    # A backslash some browsers read as "/"; a control character (CR/LF) or space would end
    # up in the Location header, which refuses it: the check and the answer use one string.
    if "\\" in target or not target.isprintable() or any(c.isspace() for c in target):
        return url_for("tickets.dashboard")
    return target


def _recovery_notice(left: int | None) -> None:
    if left is not None:
        flash(
            f"You used a recovery code; {left} left. Each works once: set up your "
            "authenticator again if you lost it.",
            "info",
        )


def _login_page(
    next_path: str, error: str | None = None, locked_until: datetime | None = None
) -> str:
    """The login page: the password form, and the provider's button when one is configured."""
    settings = current_settings()
    return render_template(
        "agent/login.html",
        next=next_path,
        error=error,
        locked_until=locked_until,
        oidc_name=settings.oidc.provider_name if settings.oidc.enabled else None,
        local_login=settings.local_login,
    )


@bp.get("/login")
def login() -> ResponseReturnValue:
    """The login form."""
    return _login_page(request.args.get("next", ""))


@bp.post("/login")
def login_submit() -> ResponseReturnValue:
    """Password and code; every failure (unknown user, wrong password, wrong or reused code,
    disabled account, locked account with a wrong password) gets the same answer."""
    try:
        result = authentication.authenticate(
            current_settings(),
            request.form.get("username", ""),
            request.form.get("password", ""),
            request.form.get("code", ""),
        )
    except authentication.AccountLocked as locked:
        # Only after the right password (services/authentication.py): no enumeration oracle.
        page = _login_page(request.form.get("next", ""), locked_until=locked.locked_until)
        return page, 403
    if result is None:
        return _login_page(request.form.get("next", ""), LOGIN_FAILED), 401
    _start_session(result.agent, verified=result.second_factor != "none")
    _recovery_notice(result.recovery_codes_left)
    if not result.agent.totp_enrolled:
        return redirect(url_for("auth.enrol_totp"))
    return redirect(safe_next(request.form.get("next")))


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    """End this and every other session of the agent."""
    authentication.end_sessions(_agent())
    _end_session()
    response = redirect(url_for("auth.login"))
    # The browser drops what it kept of the session too: cached pages, cookies, storage.
    response.headers["Clear-Site-Data"] = '"cache", "cookies", "storage"'
    return response


@bp.get("/reauth")
@login_required
def reauth() -> ResponseReturnValue:
    """The re-prompt before a reveal or an access request: a code, or for a session that signed
    in at the identity provider with its second factor, signing in there again."""
    return reauth_page(request.args.get("next", ""))


def reauthenticates_at_provider() -> bool:
    """Whether this session re-authenticates at the provider: it signed in there with its
    second factor (other sessions answer the code re-prompt)."""
    return bool(
        current_settings().oidc.enabled
        and session.get(AUTH_METHOD) == "oidc"
        and session.get(OIDC_MFA)
    )


def reauth_page(next_path: str, error: str | None = None) -> str:
    """The re-prompt page. For a provider session it links to the provider (prompt=login,
    max_age) rather than redirecting there: the refused POST's redirects count as a form
    submission, and the CSP's form-action 'self' stops one that leaves for another origin."""
    oidc = current_settings().oidc
    return render_template(
        "agent/reauth.html",
        next=next_path,
        error=error,
        provider_name=oidc.provider_name if reauthenticates_at_provider() else None,
    )


def hold_refused_action() -> None:
    """Keep the POST a re-authentication at the provider interrupts, for the return leg to
    resume (views/oidc.py); the code re-prompt stays on this site and needs none of this."""
    fields = {key: value for key, value in request.form.items() if key != "csrf_token"}
    session[PENDING_ACTION] = {"path": request.path, "form": fields}


@bp.post("/reauth")
@login_required
def reauth_submit() -> ResponseReturnValue:
    """Check a fresh code (or a recovery code), then return where the agent was going."""
    try:
        result = authentication.reauthenticate(
            current_settings(), _agent(), request.form.get("code", "")
        )
    except authentication.AuthenticationFailed as failure:
        if failure.session_ended:
            _end_session()
            flash("Too many wrong codes: every session of yours has ended.", "error")
            return redirect(url_for("auth.login"))
        page = render_template(
            "agent/reauth.html", next=request.form.get("next", ""), error="Invalid code."
        )
        return page, 401
    session[VERIFIED_AT] = _now()
    _recovery_notice(result.recovery_codes_left)
    return redirect(safe_next(request.form.get("next")))


@overload
def _pending_secret(*, create: Literal[True]) -> str: ...
@overload
def _pending_secret(*, create: Literal[False]) -> str | None: ...


def _pending_secret(*, create: bool) -> str | None:
    """The secret being enrolled, kept encrypted in the session until a code confirms it."""
    settings = current_settings()
    ciphertext = session.get(PENDING_TOTP)
    secret = None
    if isinstance(ciphertext, str):
        secret = totp.decrypt_secret(settings.secret_keys, ciphertext)
    if secret is None and create:
        secret = totp.new_secret()
        session[PENDING_TOTP] = totp.encrypt_secret(settings.secret_keys, secret)
    return secret


def _render_enrolment(secret: str, error: str | None = None) -> str:
    uri = totp.provisioning_uri(secret, current_user.username)
    # An SVG data: URI, which the CSP's img-src allows; no script, no request to anyone.
    qr = segno.make(uri, error="m").svg_data_uri(scale=5, dark="#000", light="#fff")
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    return render_template(
        "agent/enrol_totp.html",
        qr=qr,
        secret=grouped,
        replacing=current_user.totp_enrolled,
        error=error,
    )


@bp.get("/account/two-factor")
@login_required
def enrol_totp() -> ResponseReturnValue:
    """The QR code and secret of a new TOTP factor (replacing one needs a recent code)."""
    if current_user.totp_enrolled and not recently_verified():
        return redirect(url_for("auth.reauth", next=url_for("auth.enrol_totp")))
    return _render_enrolment(_pending_secret(create=True))


@bp.post("/account/two-factor")
@login_required
def enrol_totp_submit() -> ResponseReturnValue:
    """Confirm the new factor with a code; show the recovery codes, this once."""
    if current_user.totp_enrolled and not recently_verified():
        return redirect(url_for("auth.reauth", next=url_for("auth.enrol_totp")))
    secret = _pending_secret(create=False)
    if secret is None:
        flash("That setup expired. Scan this new code instead.", "error")
        return redirect(url_for("auth.enrol_totp"))
    try:
        codes = agents.enrol_totp(
            current_settings(), _agent(), secret, request.form.get("code", "")
        )
    except ValidationFailed as error:
        return _render_enrolment(secret, error=error.message), 400
    session.pop(PENDING_TOTP, None)
    _reissue_session(_agent())
    session[VERIFIED_AT] = _now()
    return render_template("agent/recovery_codes.html", codes=codes)


@bp.get("/account/password")
@login_required
def change_password() -> ResponseReturnValue:
    """The password change form."""
    return render_template("agent/password.html", errors={})


@bp.post("/account/password")
@login_required
def change_password_submit() -> ResponseReturnValue:
    """Current password and the new one; every other session of the agent ends."""
    form = request.form
    try:
        authentication.change_password(
            current_settings(),
            _agent(),
            form.get("current_password", ""),
            form.get("new_password", ""),
            form.get("confirm_password", ""),
        )
    except authentication.AuthenticationFailed as failure:
        if failure.session_ended:
            _end_session()
            flash("Too many failed attempts: every session of yours has ended.", "error")
            return redirect(url_for("auth.login"))
        return render_template("agent/password.html", errors=failure.fields), failure.status
    except BadRequest as error:
        return render_template("agent/password.html", errors=error.fields), error.status
    _reissue_session(_agent())
    flash("Password changed. Every other session of yours has ended.", "info")
    return redirect(url_for("tickets.dashboard"))
