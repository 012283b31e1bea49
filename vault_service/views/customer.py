"""The customer's one-time link: GET shows the form (never consumes it), POST submits once."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request

from ..errors import ValidationFailed
from ..extensions import csrf, current_settings, current_vault
from ..kinds import form_sections
from ..kinds.forms import form_errors, form_to_payload, kind_choices
from ..kinds.notes import NOTES_FIELD
from ..services.customer_form import read_usable_link
from ..services.submissions import UsableLink, submit_credentials

bp = Blueprint("customer", __name__)


def _page_context(link: UsableLink, **extra) -> dict:
    settings = current_settings()
    context = {
        "ticket_ref": link.ticket_ref,
        "expires_at": link.expires_at,
        "retention": settings.max_retention_seconds,
        "grant_max": settings.grant_max_seconds,
        "sections": form_sections(),
        "notes": NOTES_FIELD,
        "form": {},
        "errors": {},
    }
    context.update(extra)
    return context


@bp.get("/s/<token>")
def submission_form(token: str):
    """Render the form. Reading never consumes: mail scanners and link previewers GET links."""
    link = read_usable_link(current_settings(), token)
    return render_template("customer/form.html", **_page_context(link))


@bp.post("/s/<token>")
@csrf.exempt
def submit(token: str):
    """Accept the first valid submission (HTML form or JSON) and consume the link."""
    settings, vault = current_settings(), current_vault()
    if request.is_json:
        # A cross-site page cannot send application/json without a CORS preflight we never
        # grant, and the caller must hold the link token: no CSRF token is needed here.
        payload = request.get_json(silent=True)
        if payload is None:
            raise ValidationFailed("The body is not valid JSON.")
        receipt = submit_credentials(settings, vault, token, payload)
        return jsonify(
            status="received",
            item_count=receipt.item_count,
            kinds=receipt.kinds,
            retention_until=receipt.retention_until,
            status_url=receipt.status_url,
        ), 201

    csrf.protect()
    payload, origin = form_to_payload(request.form)
    try:
        receipt = submit_credentials(settings, vault, token, payload)
    except ValidationFailed as error:
        link = read_usable_link(settings, token)
        # Nothing typed is echoed back: a customer value must not reach any page but the
        # agent's reveal, so the customer re-types (only the kind choices are kept).
        context = _page_context(
            link, form=kind_choices(request.form), errors=form_errors(error.fields, origin)
        )
        return render_template("customer/form.html", **context), error.status
    return render_template(
        "customer/success.html",
        receipt=receipt,
        retention=settings.max_retention_seconds,
    ), 201
