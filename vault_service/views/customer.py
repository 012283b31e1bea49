"""The customer's one-time link: GET shows the form (never consumes it), POST submits once."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, render_template, request
from flask.typing import ResponseReturnValue

from ..branding import Branding
from ..errors import LinkGone, ServiceUnavailable, ValidationFailed
from ..extensions import csrf, current_settings, current_vault
from ..i18n import use_link_locale
from ..kinds import form_sections
from ..kinds.forms import error_summary, form_errors, form_to_payload, kept_values, to_retype
from ..kinds.notes import NOTES_FIELD
from ..services.customer_form import (
    RECEIVED_COOKIE,
    issue_received_proof,
    read_received_at,
    read_usable_link,
)
from ..services.submissions import UsableLink, submit_credentials
from ..vault import VaultUnavailable
from . import csrf_exempt

bp = Blueprint("customer", __name__)


def current_branding() -> Branding:
    """The organisation's branding, loaded once by create_app."""
    from flask import current_app

    branding: Branding = current_app.extensions["vault_service.branding"]
    return branding


@bp.context_processor
def branding_context() -> dict[str, Branding]:
    """Every customer page, the error pages of /s/... included, shows whose page it is."""
    return {"branding": current_branding()}


def _page_context(link: UsableLink, **extra: object) -> dict[str, object]:
    settings = current_settings()
    context: dict[str, object] = {
        "ticket_ref": link.ticket_ref,
        "expires_at": link.expires_at,
        "message": link.message,
        "retention": settings.max_retention_seconds,
        "grant_max": settings.grant_max_seconds,
        "sections": form_sections(),
        "notes": NOTES_FIELD,
        "form": {},
        "errors": {},
        "summary": [],
        "retype": set(),
        "unavailable": False,
    }
    context.update(extra)
    return context


def _refilled_form(link: UsableLink, status: int, **extra: object) -> tuple[str, int]:
    """The form again after a failed post: what may be kept is kept, secrets are typed again."""
    context = _page_context(
        link, form=kept_values(request.form), retype=to_retype(request.form), **extra
    )
    return render_template("customer/form.html", **context), status


def _gone_unless_received(token: str, error: LinkGone) -> tuple[str, int]:
    """The browser that used this link (it holds the link's proof cookie) is told when; anyone
    else gets the same 410 as for any unknown, expired or used link."""
    received_at = read_received_at(current_settings(), token, request.cookies.get(RECEIVED_COOKIE))
    if received_at is None:
        raise error
    return render_template("customer/received.html", received_at=received_at), 410


@bp.get("/s/<token>")
def submission_form(token: str) -> ResponseReturnValue:
    """Render the form. Reading never consumes: mail scanners and link previewers GET links."""
    try:
        link = read_usable_link(current_settings(), token)
    except LinkGone as error:
        return _gone_unless_received(token, error)
    use_link_locale(link.locale)
    return render_template("customer/form.html", **_page_context(link))


@bp.post("/s/<token>")
@csrf_exempt
def submit(token: str) -> ResponseReturnValue:
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
    try:
        link = read_usable_link(settings, token)
    except LinkGone as error:
        return _gone_unless_received(token, error)
    use_link_locale(link.locale)
    payload, origin = form_to_payload(request.form)
    try:
        receipt = submit_credentials(settings, vault, token, payload)
    except ValidationFailed as error:
        errors = form_errors(error.fields, origin)
        return _refilled_form(link, error.status, errors=errors, summary=error_summary(errors))
    except (ServiceUnavailable, VaultUnavailable):
        # Nothing was stored and the link still works: the customer retries from the same form.
        return _refilled_form(link, 503, unavailable=True)
    response = Response(
        render_template(
            "customer/success.html", receipt=receipt, retention=settings.max_retention_seconds
        ),
        status=201,
    )
    _set_received_cookie(response, token)
    return response


def _set_received_cookie(response: Response, token: str) -> None:
    """Give the submitting browser its proof, sent back only to this link's own path."""
    settings = current_settings()
    issued = issue_received_proof(settings, token)
    if issued is None:  # cannot happen after a consuming submission; no proof, no claim
        return
    proof, _ = issued
    response.set_cookie(
        RECEIVED_COOKIE,
        proof,
        max_age=settings.max_retention_seconds,
        path=f"/s/{token}",
        secure=settings.is_production,
        httponly=True,
        samesite="Strict",
    )


@bp.get("/brand/logo")
def brand_logo() -> ResponseReturnValue:
    """The configured logo, from memory (read once at startup): same origin, so CSP stays 'self'."""
    logo = current_branding().logo
    if logo is None:
        abort(404)
    response = Response(logo.content, mimetype=logo.mimetype)
    response.headers["ETag"] = f'"{logo.etag}"'
    return response
