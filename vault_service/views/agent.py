"""Agents' pages: login, the dashboard, a ticket, access requests and reveals."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from ..errors import ServiceError
from ..extensions import current_settings, current_vault, login_manager
from ..services import access, agents

bp = Blueprint("agent", __name__)
login_manager.login_view = "agent.login"
login_manager.session_protection = "strong"


@login_manager.user_loader
def load_user(session_id: str):
    """Resolve the session's agent; a rotated nonce or a disabled account ends the session."""
    return agents.load_agent(session_id)


def safe_next(target: str | None) -> str:
    """Only same-origin relative paths: never an open redirect."""
    if not target:
        return url_for("agent.dashboard")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("agent.dashboard")
    if "\\" in target:
        return url_for("agent.dashboard")
    return target


@bp.get("/login")
def login():
    """The login form."""
    return render_template("agent/login.html", next=request.args.get("next", ""))


@bp.post("/login")
def login_submit():
    """Check credentials; every failure gets the same answer."""
    agent = agents.authenticate(request.form.get("username", ""), request.form.get("password", ""))
    if agent is None:
        return (
            render_template(
                "agent/login.html", next=request.form.get("next", ""), error="Invalid login."
            ),
            401,
        )
    login_user(agent)
    return redirect(safe_next(request.form.get("next")))


@bp.post("/logout")
@login_required
def logout():
    """End this and every other session of the agent."""
    agents.end_sessions(current_user, actor=f"agent:{current_user.username}")
    logout_user()
    return redirect(url_for("agent.login"))


@bp.get("/")
@login_required
def dashboard():
    """Tickets holding credentials: kinds and dates, never values."""
    return render_template("agent/dashboard.html", tickets=access.dashboard_tickets())


@bp.get("/tickets/<ticket_ref>")
@login_required
def ticket(ticket_ref: str):
    """A ticket: its items' kinds and dates, the agent's grant, and the request-access form."""
    settings = current_settings()
    return render_template(
        "agent/ticket.html",
        grant_default_minutes=settings.grant_default_seconds // 60,
        grant_max_minutes=settings.grant_max_seconds // 60,
        **access.ticket_overview(current_user, ticket_ref),
    )


@bp.post("/tickets/<ticket_ref>/access")
@login_required
def request_access(ticket_ref: str):
    """Ask for a time-limited grant; a reason is required."""
    settings = current_settings()
    try:
        minutes = int(request.form.get("duration_minutes", ""))
    except ValueError:
        minutes = 0
    try:
        access.request_access(
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
        return redirect(url_for("agent.ticket", ticket_ref=ticket_ref))
    flash("Access granted.", "info")
    return redirect(url_for("agent.ticket", ticket_ref=ticket_ref))


@bp.post("/tickets/<ticket_ref>/reveal")
@login_required
def reveal(ticket_ref: str):
    """Decrypt and show the credentials: POST only, audited first, never cached."""
    result = access.reveal_credentials(
        current_settings(),
        current_vault(),
        current_user,
        ticket_ref,
        request.form.get("grant_id", ""),
    )
    return render_template("agent/reveal.html", reveal=result)
