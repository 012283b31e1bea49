"""The admin console: agents' accounts, every live grant, failing jobs, the audit trail. One
guard refuses every route of this blueprint to anyone but an admin (deny by default: a new route
here is guarded without a decorator to forget); the services audit every action."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user

from ..clock import utcnow
from ..errors import BadRequest, Conflict, Forbidden, NotFound, ServiceError
from ..extensions import current_settings, current_vault
from ..services import admin, agent_setup, approvals, audit_trail
from ..services.agents import ROLES, actor_of
from ..services.agents import reset_totp as reset_agent_totp
from ..services.audit import EXPORT_FORMATS, ChainReport
from . import login_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def require_admin() -> None:
    """403 for an agent without the admin role (the app's guard has already sent anyone not
    signed in to the login page)."""
    if not current_user.is_authenticated or current_user.role != "admin":
        raise Forbidden("This page is for admins.")


def _back_to_agents(message: str) -> ResponseReturnValue:
    flash(message, "info")
    return redirect(url_for("admin.agents"))


@bp.get("/")
@login_required
def index() -> ResponseReturnValue:
    """The console starts at the agents list."""
    return redirect(url_for("admin.agents"))


@bp.get("/agents")
@login_required
def agents() -> ResponseReturnValue:
    """Every agent, with the actions an admin may take on each."""
    return render_template("admin/agents.html", agents=admin.list_agents(), roles=ROLES)


@bp.post("/agents")
@login_required
def create_agent() -> ResponseReturnValue:
    """Create an agent and show, this once, the link on which they choose their password."""
    try:
        issued = agent_setup.create_agent_with_setup_link(
            current_settings(),
            request.form.get("username", ""),
            request.form.get("role", "agent"),
            actor=actor_of(current_user),
        )
    except (BadRequest, Conflict) as error:
        flash(error.message, "error")
        return redirect(url_for("admin.agents"))
    return render_template("admin/setup_link.html", issued=issued, created=True)


@bp.post("/agents/<username>/setup-link")
@login_required
def reissue_setup_link(username: str) -> ResponseReturnValue:
    """A new set-up link for an agent who has not chosen a password yet; the old one dies."""
    try:
        issued = agent_setup.reissue_setup_link(
            current_settings(), username, actor=actor_of(current_user)
        )
    except BadRequest as error:
        flash(error.message, "error")
        return redirect(url_for("admin.agents"))
    return render_template("admin/setup_link.html", issued=issued, created=False)


@bp.post("/agents/<username>/disable")
@login_required
def disable_agent(username: str) -> ResponseReturnValue:
    """Disable an agent: sessions end and live grants are revoked in Vault now."""
    ended = admin.disable_agent(current_vault(), username, actor=actor_of(current_user))
    return _back_to_agents(f"{username} is disabled; {ended} live access grant(s) revoked.")


@bp.post("/agents/<username>/enable")
@login_required
def enable_agent(username: str) -> ResponseReturnValue:
    """Let a disabled agent sign in again."""
    changed = admin.enable_agent(username, actor=actor_of(current_user))
    return _back_to_agents(f"{username} is enabled." if changed else f"{username} was enabled.")


@bp.post("/agents/<username>/unlock")
@login_required
def unlock_agent(username: str) -> ResponseReturnValue:
    """Lift a lockout after failed logins."""
    changed = admin.unlock_agent(username, actor=actor_of(current_user))
    return _back_to_agents(f"{username} is unlocked." if changed else f"{username} was not locked.")


@bp.post("/agents/<username>/reset-totp")
@login_required
def reset_totp(username: str) -> ResponseReturnValue:
    """Remove an agent's second factor: their next login enrols a new one."""
    if len(username) > 64:
        raise NotFound("No agent with that username.")
    reset_agent_totp(username, actor=actor_of(current_user))
    return _back_to_agents(f"{username}'s second factor is reset; they enrol again at login.")


@bp.post("/agents/<username>/role")
@login_required
def change_role(username: str) -> ResponseReturnValue:
    """Give an agent another role."""
    try:
        changed = admin.change_role(
            username,
            request.form.get("role"),
            actor=actor_of(current_user),
            acting_username=current_user.username,
        )
    except BadRequest as error:
        flash(error.message, "error")
        return redirect(url_for("admin.agents"))
    return _back_to_agents(f"{username}'s role is changed." if changed else "Nothing changed.")


@bp.get("/grants")
@login_required
def grants() -> ResponseReturnValue:
    """Every live grant across tickets."""
    return render_template("admin/grants.html", grants=admin.live_grants())


@bp.post("/tickets/<ticket_ref>/grants/<grant_id>/revoke")
@login_required
def revoke_grant(ticket_ref: str, grant_id: str) -> ResponseReturnValue:
    """End anyone's grant now: its Vault token is revoked before this answers."""
    ended = admin.revoke_grant(current_vault(), ticket_ref, grant_id, actor=actor_of(current_user))
    flash("The access is revoked." if ended else "That access had already ended.", "info")
    return redirect(url_for("admin.grants"))


@bp.get("/jobs")
@login_required
def jobs() -> ResponseReturnValue:
    """Failing jobs of every kind (purges, event deliveries, ...)."""
    return render_template("admin/jobs.html", jobs=admin.failing_jobs())


@bp.post("/jobs/<job_id>/retry")
@login_required
def retry_job(job_id: str) -> ResponseReturnValue:
    """Make a job due now; the worker runs it on its next pass."""
    admin.retry_job(job_id, actor=actor_of(current_user))
    flash("The job will be retried on the worker's next pass.", "info")
    return redirect(url_for("admin.jobs"))


@bp.get("/approvals")
@login_required
def access_requests() -> ResponseReturnValue:
    """Access requests waiting for an admin's approval (four-eyes), oldest first."""
    return render_template(
        "admin/approvals.html",
        requests=approvals.pending_requests(),
        approval_required=current_settings().approval_required,
    )


def _after_decision(message: str, category: str = "info") -> ResponseReturnValue:
    """Back where the admin decided: the ticket's page (its form says so) or the console's list.
    Only these two places, so the form cannot make this an open redirect."""
    flash(message, category)
    ticket_ref = request.form.get("ticket_ref", "")
    if request.form.get("back") == "ticket" and ticket_ref:
        return redirect(url_for("tickets.ticket", ticket_ref=ticket_ref))
    return redirect(url_for("admin.access_requests"))


@bp.post("/access-requests/<request_id>/approve")
@login_required
def approve_access_request(request_id: str) -> ResponseReturnValue:
    """Approve another agent's request: the grant token is minted in Vault now."""
    try:
        grant = approvals.approve_request(
            current_settings(), current_vault(), current_user, request_id
        )
    except ServiceError as error:
        if error.status >= 500 or error.status in (403, 404):
            raise
        return _after_decision(error.message, "error")
    until = grant.expires_at.strftime("%H:%M:%S UTC")
    return _after_decision(f"Approved: the agent has access until {until}.")


@bp.post("/access-requests/<request_id>/deny")
@login_required
def deny_access_request(request_id: str) -> ResponseReturnValue:
    """Deny another agent's request; nothing was minted for it."""
    try:
        approvals.deny_request(current_user, request_id)
    except ServiceError as error:
        if error.status >= 500 or error.status in (403, 404):
            raise
        return _after_decision(error.message, "error")
    return _after_decision("Denied: the agent has no access.")


# --- the audit trail across tickets -----------------------------------------------------------


def _audit_view(*, chain: ChainReport | None = None) -> ResponseReturnValue:
    """The trail page for this query string; a malformed filter is shown back with its error."""
    actor = actor_of(current_user)
    try:
        wanted = audit_trail.parse_filter(request.args)
        older = audit_trail.parse_cursor(request.args.get("before"))
        newer = audit_trail.parse_cursor(request.args.get("after"))
    except BadRequest as error:
        page = render_template(
            "admin/audit.html", form=request.args, error=error, view=None, chain=None, filters={}
        )
        return page, 400
    audit_trail.record_reading("viewed", wanted, actor=actor)
    view = audit_trail.audit_page(wanted, older_than=older, newer_than=newer)
    return render_template(
        "admin/audit.html",
        form=request.args,
        error=None,
        view=view,
        chain=chain,
        filters=wanted.as_args(),
    )


@bp.get("/audit")
@login_required
def audit() -> ResponseReturnValue:
    """Audit records across tickets, newest first, filtered and paged in SQL."""
    return _audit_view()


@bp.get("/audit/verify")
@login_required
def audit_verify() -> ResponseReturnValue:
    """The same page, after walking the whole hash chain (on request: it reads every record)."""
    report = audit_trail.verify_chain()
    audit_trail.record_reading(
        "verified",
        audit_trail.AuditFilter(),
        actor=actor_of(current_user),
        records=report.records,
        chain_ok=report.ok,
    )
    return _audit_view(chain=report)


@bp.get("/audit/export.<fmt>")
@login_required
def audit_export(fmt: str) -> ResponseReturnValue:
    """The filtered records as a download, in `vault-service audit-export`'s format."""
    if fmt not in EXPORT_FORMATS:
        raise NotFound("Export as .csv or .jsonl.")
    wanted = audit_trail.parse_filter(request.args)
    audit_trail.record_reading("exported", wanted, actor=actor_of(current_user), format=fmt)
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
    return Response(
        stream_with_context(audit_trail.export(wanted, fmt)),
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.{fmt}"'},
    )
