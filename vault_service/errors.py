"""One small exception hierarchy; `init_app` maps it (and HTTP errors) to responses in one place."""

from __future__ import annotations

import logging
import traceback

from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .vault import VaultUnavailable

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """A failure with a status and a message that is safe to show to the caller."""

    status = 400
    code = "bad_request"
    message = "The request could not be processed."

    def __init__(self, message: str | None = None, *, fields: dict[str, str] | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.fields = fields or {}


class BadRequest(ServiceError):
    status, code = 400, "bad_request"


class Unauthorized(ServiceError):
    status, code, message = 401, "unauthorized", "Authentication is required."


class Forbidden(ServiceError):
    status, code, message = 403, "forbidden", "You are not allowed to do this."


class NotFound(ServiceError):
    status, code, message = 404, "not_found", "Not found."


class Conflict(ServiceError):
    status, code = 409, "conflict"


class LinkGone(ServiceError):
    # One message for unknown, expired and used links: a holder learns nothing about which it was.
    status, code = 410, "link_unavailable"
    message = "This link is no longer valid. Please ask your support agent for a new one."


class StatusPageNotFound(ServiceError):
    # One answer for unknown, wrong and expired status tokens: no oracle for which it was.
    status, code = 404, "status_page_unavailable"
    message = "This status page does not exist or is no longer available."


class CredentialsMissing(ServiceError):
    # The database holds the ticket's credentials but Vault no longer has them.
    status, code = 410, "credentials_missing"
    message = (
        "These credentials are missing from the secure store: they were removed outside this "
        "service. This has been recorded; please tell an administrator."
    )


class UnsupportedMediaType(ServiceError):
    status, code, message = 415, "unsupported_media_type", "Send Content-Type: application/json."


class ValidationFailed(ServiceError):
    status, code, message = 422, "validation_failed", "Some fields need your attention."


class ServiceUnavailable(ServiceError):
    status, code = 503, "unavailable"
    message = (
        "The secure store is temporarily unavailable. Nothing was stored; please retry shortly."
    )


def wants_json() -> bool:
    """JSON for the API and for JSON callers, HTML for people."""
    if request.path.startswith("/api/"):
        return True
    if request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def render_error(
    status: int, code: str, message: str, fields: dict[str, str] | None = None
) -> Response:
    """Render an error the same way everywhere, without internals."""
    if wants_json():
        body: dict[str, object] = {"error": code, "message": message}
        if fields:
            body["fields"] = fields
        response = jsonify(body)
    else:
        response = Response(
            render_template("error.html", status=status, message=message, fields=fields or {}),
            mimetype="text/html",
        )
    response.status_code = status
    return response


def init_app(app: Flask) -> None:
    """Register the handlers that turn every failure into a clean response."""

    @app.errorhandler(ServiceError)
    def handle_service_error(error: ServiceError) -> Response:
        return render_error(error.status, error.code, error.message, error.fields)

    @app.errorhandler(VaultUnavailable)
    def handle_vault_unavailable(error: VaultUnavailable) -> Response:
        # A service that let Vault's outage escape still answers "retry later", never a 500.
        log.warning("vault unavailable", extra={"fields": {"error": type(error).__name__}})
        message = "The secure store is temporarily unavailable. Please retry shortly."
        return render_error(503, ServiceUnavailable.code, message)

    @app.errorhandler(CSRFError)
    def handle_csrf_error(error: CSRFError) -> Response:
        return render_error(400, "csrf_failed", "The form expired or was not sent from this site.")

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = (error.name or "error").lower().replace(" ", "_")
        response = render_error(status, code, error.description or error.name)
        if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Response:
        # Class and location only: an exception message or traceback locals could carry a value
        # we were handling, so neither is logged.
        frames = traceback.extract_tb(error.__traceback__)
        ours = [f for f in frames if "/vault_service/" in f.filename] or frames
        where = f"{ours[-1].filename}:{ours[-1].lineno}" if ours else "?"
        log.error("unhandled error", extra={"fields": {"error": type(error).__name__, "at": where}})
        return render_error(500, "internal_error", "Something went wrong on our side.")
