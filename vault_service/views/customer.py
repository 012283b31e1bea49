"""The customer's one-time link: GET shows the form (never consumes it), POST submits once."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request

from ..errors import ValidationFailed
from ..extensions import csrf, current_settings, current_vault, db
from ..services.submissions import FILE_TRANSFER_KINDS, find_usable_link, submit_credentials

bp = Blueprint("customer", __name__)

# The HTML form has one section per kind; each maps its inputs to an item's fields.
FORM_SECTIONS = {
    "ft": ("host", "port", "username", "password"),
    "ap": ("url", "username", "password"),
    "ot": ("label", "secret"),
}
SECTION_KIND = {"ap": "admin_panel", "ot": "other"}


def _page_context(link, **extra) -> dict:
    settings = current_settings()
    context = {
        "ticket_ref": link.ticket_ref,
        "expires_at": link.expires_at,
        "retention": settings.max_retention_seconds,
        "grant_max": settings.grant_max_seconds,
        "kinds": FILE_TRANSFER_KINDS,
        "form": {},
        "errors": {},
    }
    context.update(extra)
    return context


def form_to_payload(form) -> tuple[dict, dict[str, str]]:
    """Build the JSON-shaped submission from the HTML form, and map item indexes to sections."""
    items, origin = [], {}
    for section, names in FORM_SECTIONS.items():
        values = {name: form.get(f"{section}_{name}", "") for name in names}
        # A section counts only when something was typed into it: a scanner that posts the
        # untouched form (all empty, defaults only) submits nothing.
        if not any(values.values()):
            continue
        kind = form.get("ft_kind", "") if section == "ft" else SECTION_KIND[section]
        origin[f"items[{len(items)}]"] = section
        items.append({"kind": kind, **values})
    return {"items": items, "notes": form.get("notes", "")}, origin


def _form_errors(fields: dict[str, str], origin: dict[str, str]) -> dict[str, str]:
    translated = {}
    for key, message in fields.items():
        prefix, _, name = key.partition(".")
        section = origin.get(prefix)
        if section is None:
            translated["form" if key == "items" else key] = message
        else:
            translated[f"{section}_{name or 'kind'}"] = message
    return translated


@bp.get("/s/<token>")
def submission_form(token: str):
    """Render the form. Reading never consumes: mail scanners and link previewers GET links."""
    link = find_usable_link(current_settings(), token)
    context = _page_context(link)
    db.session.rollback()
    return render_template("customer/form.html", **context)


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
        ), 201

    csrf.protect()
    payload, origin = form_to_payload(request.form)
    try:
        receipt = submit_credentials(settings, vault, token, payload)
    except ValidationFailed as error:
        link = find_usable_link(settings, token)
        # Nothing typed is echoed back: a customer value must not reach any page but the
        # agent's reveal, so the customer re-types (only the protocol choice is kept).
        echo = {"ft_kind": request.form.get("ft_kind", "")}
        context = _page_context(link, form=echo, errors=_form_errors(error.fields, origin))
        db.session.rollback()
        return render_template("customer/form.html", **context), error.status
    return render_template(
        "customer/success.html",
        receipt=receipt,
        retention=settings.max_retention_seconds,
    ), 201
