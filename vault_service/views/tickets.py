"""Agents' ticket pages: the dashboard, a ticket, access requests and reveals. Signing in and the
session limits are views/auth.py's."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import (
    Blueprint,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user

from ..errors import ServiceError
from ..extensions import current_settings, current_vault
from ..models import AccessRequest
from ..services import access, approvals, grants, timeline
from ..services import dashboard as dashboard_service
from ..services.agents import actor_of
from . import login_required
from .auth import hold_refused_action, reauthenticates_at_provider, recently_verified

bp = Blueprint("tickets", __name__)


TicketView = Callable[[str], ResponseReturnValue]
# The request-access form as typed when the code re-prompt interrupted it, so the agent finds it
# filled in on the way back: {"ticket": ref, "reason": ..., "minutes": ...}. In the signed session
# cookie: the reason is the agent's own words (it goes into the audit trail), never a secret.
ACCESS_DRAFT = "access_draft"


def require_recent_verification(view: TicketView) -> TicketView:
    """Send the agent to the code re-prompt (which returns to the ticket) when the last code is
    older than VAULT_SERVICE_REAUTH_SECONDS. Nothing of the refused POST is done (a provider's
    re-authentication resumes it on return: views/oidc.py)."""

    @wraps(view)
    def wrapped(ticket_ref: str) -> ResponseReturnValue:
        if not recently_verified():
            if reauthenticates_at_provider():
                # the provider's return leg posts the held form again (views/oidc.py)
                hold_refused_action()
                flash("Confirm it is you: sign in again at your identity provider.", "info")
            else:
                if request.endpoint == "tickets.request_access":
                    session[ACCESS_DRAFT] = {
                        "ticket": ticket_ref,
                        "reason": request.form.get("reason", "")[:500],
                        "minutes": request.form.get("duration_minutes", "")[:6],
                    }
                flash("Confirm it is you: enter a code from your authenticator app.", "info")
            back = url_for("tickets.ticket", ticket_ref=ticket_ref)
            return redirect(url_for("auth.reauth", next=back))
        return view(ticket_ref)

    return wrapped


@bp.get("/")
@login_required
def dashboard() -> ResponseReturnValue:
    """Open tickets a page at a time, searchable by reference, and the agent's live grants."""
    query = dashboard_service.parse_query(request.args.get("q"))
    page = dashboard_service.parse_page(request.args.get("page"))
    return render_template(
        "agent/dashboard.html",
        view=dashboard_service.dashboard_page(current_user.id, query=query, page=page),
    )


@bp.get("/tickets/<ticket_ref>")
@login_required
def ticket(ticket_ref: str) -> ResponseReturnValue:
    """A ticket: its items' kinds and dates, the agent's grant, and the request-access form."""
    settings = current_settings()
    # Spent by its own ticket's page only: a detour through another page keeps it.
    draft = session.get(ACCESS_DRAFT)
    if isinstance(draft, dict) and draft.get("ticket") == ticket_ref:
        session.pop(ACCESS_DRAFT)
    else:
        draft = {}
    return render_template(
        "agent/ticket.html",
        draft=draft,
        grant_default_minutes=settings.grant_default_seconds // 60,
        grant_max_minutes=settings.grant_max_seconds // 60,
        story=timeline.ticket_story(ticket_ref),
        approval_required=settings.approval_required,
        requests=approvals.ticket_requests(current_user, ticket_ref),
        **vars(access.ticket_overview(current_user, ticket_ref)),
    )


@bp.post("/tickets/<ticket_ref>/access")
@login_required
@require_recent_verification
def request_access(ticket_ref: str) -> ResponseReturnValue:
    """Ask for a time-limited grant; a reason is required."""
    settings = current_settings()
    try:
        minutes = int(request.form.get("duration_minutes", ""))
    except ValueError:
        minutes = 0
    try:
        outcome = access.request_access(
            settings,
            current_vault(),
            current_user,
            ticket_ref,
            reason=request.form.get("reason", ""),
            duration_seconds=minutes * 60,
        )
    except ServiceError as error:
        if error.status >= 500 or error.status in (401, 404):
            raise
        flash(" ".join([error.message, *error.fields.values()]), "error")
        return redirect(url_for("tickets.ticket", ticket_ref=ticket_ref))
    if isinstance(outcome, AccessRequest):
        flash("Your request is waiting for an admin's approval.", "info")
    else:
        flash("Access granted.", "info")
    return redirect(url_for("tickets.ticket", ticket_ref=ticket_ref))


@bp.post("/tickets/<ticket_ref>/reveal")
@login_required
@require_recent_verification
def reveal(ticket_ref: str) -> ResponseReturnValue:
    """Decrypt and show the credentials: POST only, audited first, never cached."""
    grant_id = request.form.get("grant_id", "")
    result = access.reveal_credentials(
        current_settings(), current_vault(), current_user, ticket_ref, grant_id
    )
    # The grant revealed with is the one the page polls and offers to end.
    return render_template("agent/reveal.html", reveal=result, grant_id=grant_id)


@bp.get("/tickets/<ticket_ref>/grants/<grant_id>/status")
@login_required
def grant_status(ticket_ref: str, grant_id: str) -> ResponseReturnValue:
    """Whether the agent's grant still holds (the reveal page polls it); never a value."""
    return jsonify(grants.grant_status(current_user.id, ticket_ref, grant_id).as_json())


@bp.post("/tickets/<ticket_ref>/grants/<grant_id>/end")
@login_required
def end_grant(ticket_ref: str, grant_id: str) -> ResponseReturnValue:
    """End the agent's own grant now: its Vault token is revoked before this answers."""
    ended = grants.end_grant(
        current_vault(),
        ticket_ref,
        grant_id,
        actor=actor_of(current_user),
        owner_id=current_user.id,
    )
    flash("Your access has ended." if ended else "This access had already ended.", "info")
    return redirect(url_for("tickets.ticket", ticket_ref=ticket_ref))
