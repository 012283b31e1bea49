"""Signing in through the identity provider (OpenID Connect): the redirect out, the callback, the
TOTP step when the provider asserted no second factor, the re-authentication before sensitive
steps, and the provider's back-channel logout. The routes live on auth's blueprint, so the login
limits and the enrolment rules apply to them as to the password login."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import abort, jsonify, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from ..errors import Unauthorized
from ..extensions import csrf, current_settings, current_vault
from ..models import Agent
from ..services import authentication, oidc
from .auth import (
    AUTH_METHOD,
    LOGIN_FAILED,
    OIDC_MFA,
    PENDING_ACTION,
    VERIFIED_AT,
    _now,
    _recovery_notice,
    _start_session,
    bp,
    reauth_page,
    safe_next,
)

# Signed-session keys. The pending request holds state, nonce and the PKCE verifier until the
# callback spends it (once: a replayed callback finds nothing).
OIDC_REQUEST = "oidc_request"
OIDC_PENDING = "oidc_pending"  # provider step done, TOTP step to go: agent id and nonce
# How long a pending request or a pending TOTP step stays usable (seconds).
PENDING_SECONDS = 600


def _redirect_uri() -> str:
    return current_settings().public_url + url_for("auth.oidc_callback")


def _failed() -> ResponseReturnValue:
    """The same answer as a failed password login."""
    settings = current_settings()
    page = render_template(
        "agent/login.html",
        next="",
        error=LOGIN_FAILED,
        oidc_name=settings.oidc.provider_name if settings.oidc.enabled else None,
        local_login=settings.local_login,
    )
    return page, 401


def _require_enabled() -> None:
    if not current_settings().oidc.enabled:
        abort(404)


@bp.get("/oidc/login")
def oidc_start() -> ResponseReturnValue:
    """Send the browser to the provider with a fresh state, nonce and PKCE challenge."""
    _require_enabled()
    reauth = request.args.get("reauth") == "1" and current_user.is_authenticated
    try:
        pending = oidc.authorization_request(current_settings(), _redirect_uri(), reauth=reauth)
    except oidc.OidcFailure as failure:
        oidc.record_failure(failure.reason)
        return _failed()
    # The interrupted access request or reveal travels with this request's state: only the
    # callback that spends this state can resume it.
    action = session.pop(PENDING_ACTION, None) if reauth else None
    session[OIDC_REQUEST] = {
        "state": pending.state,
        "nonce": pending.nonce,
        "verifier": pending.code_verifier,
        "next": request.args.get("next", ""),
        "reauth": reauth,
        "action": action,
        "at": _now(),
    }
    return redirect(pending.url)


@dataclass(frozen=True)
class _Pending:
    """The authorization request a callback must match, and what it was for."""

    request: oidc.AuthorizationRequest
    next_path: str
    reauth: bool
    action: dict[str, Any] | None


def _pending_request() -> _Pending | None:
    stored = session.pop(OIDC_REQUEST, None)
    if not isinstance(stored, dict) or _now() - int(stored.get("at", 0)) > PENDING_SECONDS:
        return None
    pending = oidc.AuthorizationRequest(
        url="", state=stored["state"], nonce=stored["nonce"], code_verifier=stored["verifier"]
    )
    action = stored.get("action")
    return _Pending(
        pending,
        str(stored.get("next", "")),
        bool(stored.get("reauth")),
        action if isinstance(action, dict) else None,
    )


@bp.get("/oidc/callback")
def oidc_callback() -> ResponseReturnValue:
    """The provider's redirect back: verify, decide who this is, then a session or the TOTP
    step. Every failure (state, code, token, identity) gets the generic login failure."""
    _require_enabled()
    settings = current_settings()
    found = _pending_request()
    if found is None:
        oidc.record_failure("no pending authorization request")
        return _failed()
    next_path = found.next_path
    try:
        identity = oidc.complete_authorization(
            settings,
            _redirect_uri(),
            request.url,
            found.request,
            max_age=settings.reauth_seconds if found.reauth else None,
        )
    except oidc.OidcFailure as failure:
        oidc.record_failure(failure.reason)
        return _failed()
    if found.reauth:
        return _finish_reauth(identity, next_path, found.action)
    result = oidc.sign_in(settings, identity)
    if result is None:
        return _failed()
    agent = result.agent
    if result.provider_mfa:
        _start_session(agent, verified=True)
        session[AUTH_METHOD] = "oidc"
        session[OIDC_MFA] = True
        return redirect(safe_next(next_path))
    if not agent.totp_enrolled:
        # As a password login before enrolment: a session that may only enrol.
        _start_session(agent, verified=False)
        session[AUTH_METHOD] = "oidc"
        return redirect(url_for("auth.enrol_totp"))
    session.clear()
    session[OIDC_PENDING] = {
        "agent": agent.id,
        "nonce": agent.session_nonce,
        "next": next_path,
        "at": _now(),
    }
    return redirect(url_for("auth.oidc_code"))


def _finish_reauth(
    identity: oidc.VerifiedIdentity, next_path: str, action: dict[str, Any] | None
) -> ResponseReturnValue:
    """A re-authentication counts only for the same identity, with a second factor asserted;
    it then resumes the access request or reveal that sent the agent to the provider."""
    if not current_user.is_authenticated:
        return _failed()
    agent: Agent = current_user._get_current_object()
    same = oidc.is_bound_to(agent, identity)
    mfa = oidc.asserts_mfa(current_settings().oidc, identity)
    if not (same and mfa):
        authentication.record_reauth(
            agent, ok=False, reason="another identity" if not same else "no second factor"
        )
        return reauth_page(next_path, LOGIN_FAILED), 401
    # complete_authorization checked auth_time against max_age: it is present and recent. The
    # session counts from when the person signed in at the provider, not from this callback
    # (never from the future: the provider's clock may run ahead of ours).
    auth_time = min(identity.auth_time or 0, _now())
    authentication.record_reauth(agent, ok=True, reason="provider", auth_time=auth_time)
    session[VERIFIED_AT] = auth_time
    path = str(action.get("path", "")) if action else ""
    fields = action.get("form") if action else None
    if path and safe_next(path) == path and isinstance(fields, dict):
        # The provider came back with a GET; the interrupted POST is posted again by the
        # browser (same origin, a fresh CSRF token), so it passes every check it passed before.
        return render_template(
            "agent/resume.html",
            path=path,
            fields={str(key): str(value) for key, value in fields.items()},
        )
    return redirect(safe_next(next_path))


def _pending_step() -> dict[str, object] | None:
    pending = session.get(OIDC_PENDING)
    if not isinstance(pending, dict) or _now() - int(pending.get("at", 0)) > PENDING_SECONDS:
        return None
    return pending


@bp.get("/oidc/code")
def oidc_code() -> ResponseReturnValue:
    """The TOTP step after a provider sign-in without a second factor."""
    if _pending_step() is None:
        return redirect(url_for("auth.login"))
    return render_template("agent/oidc_code.html")


@bp.post("/oidc/code")
def oidc_code_submit() -> ResponseReturnValue:
    """Check the code as the password login does (same lockout count, same failure answer)."""
    pending = _pending_step()
    if pending is None:
        return _failed()
    result = authentication.second_factor_after_provider(
        current_settings(),
        int(str(pending["agent"])),
        str(pending["nonce"]),
        request.form.get("code", ""),
    )
    if result is None:
        return render_template("agent/oidc_code.html", error=LOGIN_FAILED), 401
    next_path = str(pending.get("next", ""))
    _start_session(result.agent, verified=True)
    session[AUTH_METHOD] = "oidc"
    _recovery_notice(result.recovery_codes_left)
    return redirect(safe_next(next_path))


@bp.post("/oidc/backchannel-logout")
def oidc_backchannel_logout() -> ResponseReturnValue:
    """OpenID Connect Back-Channel Logout 1.0: the provider's signed logout token ends the
    agent's sessions and revokes their live grants; 400 (and nothing changes) otherwise."""
    token = request.form.get("logout_token", "")
    if not token:
        # No credential at all: 401, as every machine endpoint answers one without its own.
        raise Unauthorized()
    _require_enabled()
    try:
        result = oidc.backchannel_logout(current_settings(), current_vault(), token)
    except oidc.OidcFailure as failure:
        authentication.record_backchannel_failure(failure.reason)
        response = jsonify(error="invalid_request", error_description="Invalid logout token.")
        response.status_code = 400
    else:
        response = jsonify(agents=len(result.agents), grants_revoked=result.grants_revoked)
    response.headers["Cache-Control"] = "no-store"
    return response


# The provider posts without our CSRF token: its signed logout token is the credential.
csrf.exempt(oidc_backchannel_logout)
