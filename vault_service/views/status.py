"""The customer's status page, `/r/<token>`: GET shows it (HTML or JSON), POST deletes now."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, make_response, render_template, request
from flask.typing import ResponseReturnValue

from ..clock import utcnow
from ..errors import BadRequest, Forbidden, UnsupportedMediaType, wants_json
from ..extensions import current_settings
from ..i18n import use_link_locale
from ..services import status_page
from . import csrf_exempt
from .customer import current_branding

bp = Blueprint("status", __name__)


@bp.context_processor
def branding_context() -> dict[str, Any]:
    """The status page is a customer page: it shows whose page it is, as the form does."""
    return {"branding": current_branding()}


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@bp.get("/r/<token>")
def show(token: str) -> ResponseReturnValue:
    """The page, or its JSON; `?confirm=delete` adds the confirmation step of "delete now"."""
    settings = current_settings()
    report = status_page.read_status(settings, token)
    if request.args.get("download") == "receipt" and report.receipt_jws:
        # The signed receipt as a file the customer keeps: verifiable offline with the JWKS.
        download = make_response(report.receipt_jws + "\n")
        download.mimetype = "application/jose"
        download.headers["Content-Disposition"] = (
            f'attachment; filename="deletion-receipt-{report.ticket_ref}.jws"'
        )
        return download
    if wants_json():
        return jsonify(report.as_json())
    use_link_locale(report.locale)
    confirming = request.args.get("confirm") == "delete" and report.state == "open"
    nonce = status_page.delete_nonce(settings, token, utcnow()) if confirming else None
    response = make_response(
        render_template("customer/status.html", report=report, confirming=confirming, nonce=nonce)
    )
    if confirming:
        # Under the app's default no-referrer policy a browser sends "Origin: null" with the
        # form post, which the Origin check must refuse. same-origin sends our origin to us
        # only (and a Referer, to us only); no other site learns anything.
        response.headers["Referrer-Policy"] = "same-origin"
    return response


def _refuse_foreign_origin(*, required: bool) -> None:
    """A form post must come from our own page: its Origin must be the public URL's origin.

    Browsers send Origin on every form POST; one without it (or with "null", as from a
    sandboxed frame) cannot be told apart from a forged one, so it is refused too.
    """
    origin = request.headers.get("Origin")
    if origin is None and not required:
        return
    if (origin or "").lower() != status_page.public_origin(current_settings()):
        raise Forbidden("This request did not come from your status page. Open it and try again.")


@bp.post("/r/<token>")
@csrf_exempt  # no session here: the capability token, the nonce and Origin guard the form
def act(token: str) -> ResponseReturnValue:
    """Delete now: JSON `{"action": "delete"}`, or the page's confirmed form."""
    settings = current_settings()
    # First, as for GET: every unknown, wrong or expired token gets the one 404, whatever else
    # the request carries.
    status_page.require_status_token(settings, token)
    if request.is_json:
        # A cross-site page cannot send application/json without a CORS preflight we never
        # grant, so the token alone suffices; a browser that does send Origin must send ours.
        _refuse_foreign_origin(required=False)
        payload = request.get_json(silent=True)
        if not isinstance(payload, dict) or payload.get("action") != "delete":
            raise BadRequest('Send {"action": "delete"}.')
        answer = status_page.delete_now(settings, token)
        return jsonify(answer.as_json()), answer.http_status

    if request.mimetype not in FORM_TYPES:
        raise UnsupportedMediaType(
            'Send JSON {"action": "delete"} with Content-Type: application/json, or use the '
            "form on your status page."
        )
    _refuse_foreign_origin(required=True)
    if request.form.get("action") != "delete":
        raise BadRequest("Nothing to do: the only action is delete.")
    if not status_page.check_delete_nonce(settings, token, request.form.get("nonce"), utcnow()):
        raise BadRequest(
            "This confirmation has expired or is not valid. Open your status page and confirm "
            "again."
        )
    answer = status_page.delete_now(settings, token)
    use_link_locale(answer.locale)
    return render_template("customer/status_deleted.html", answer=answer), answer.http_status
