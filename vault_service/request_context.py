"""Where a request came from: its id, client address and user agent, for logs and the audit trail.

The request id is the caller's `X-Request-ID` only when a trusted proxy stands in front
(VAULT_SERVICE_TRUSTED_PROXIES > 0: the proxy sets or passes it, and a client facing the app
directly could otherwise forge ids to confuse an investigation), and only when it is short and
printable; otherwise the app makes one. Either way it is in `g.request_id`, in every app log line
written during the request (logs.py), in every audit record (services/audit.py) and in the
response's `X-Request-ID` header.
"""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, has_request_context, request

from .config import Settings

HEADER = "X-Request-ID"
MAX_REQUEST_ID = 128
USER_AGENT_CHARS = 200
# Printable ASCII without spaces: an id goes into headers and log lines unescaped by readers.
_VALID_REQUEST_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_REQUEST_ID}}}")
# Control characters (C0, DEL, C1) and the bidi/invisible format characters: a user agent is
# shown to auditors, and none of these should reorder or hide what they read.
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def clean_user_agent(value: str | None) -> str | None:
    """The user agent without control or invisible characters, cut to USER_AGENT_CHARS."""
    if not value:
        return None
    # Lone surrogates cannot be stored as UTF-8; replace them with the others.
    cleaned = _UNSAFE_CHARS.sub("", value.encode("utf-8", "replace").decode("utf-8"))
    return cleaned[:USER_AGENT_CHARS] or None


def accepted_request_id(offered: str | None, trusted_proxies: int) -> str | None:
    """The caller's id if a trusted proxy sent it and it is valid; None otherwise."""
    if trusted_proxies <= 0 or not offered:
        return None
    return offered if _VALID_REQUEST_ID.fullmatch(offered) else None


def current_request_id() -> str | None:
    """The id of the request being handled, or None outside a request."""
    if not has_request_context():
        return None
    request_id: str | None = g.get("request_id")  # set by the before_request hook above
    return request_id


def request_origin() -> dict[str, str | None]:
    """Client address, user agent and request id of the current request ({} outside one)."""
    if not has_request_context():
        return {}
    return {
        # remote_addr is what ProxyFix resolved from X-Forwarded-For through the trusted
        # proxies (ratelimits.py), or the socket peer when none is trusted.
        "client_address": request.remote_addr or None,
        "user_agent": clean_user_agent(request.headers.get("User-Agent")),
        "request_id": current_request_id(),
    }


def init_app(app: Flask, settings: Settings) -> None:
    """Assign every request an id before anything else runs, and return it in the response."""

    def assign_request_id() -> None:
        offered = request.headers.get(HEADER)
        g.request_id = accepted_request_id(offered, settings.trusted_proxies) or uuid.uuid4().hex

    def send_request_id(response: Response) -> Response:
        request_id = current_request_id()
        if request_id:
            response.headers[HEADER] = request_id
        return response

    # First in line: even a request refused by a later hook (rate limit, CSRF) has an id.
    app.before_request_funcs.setdefault(None, []).insert(0, assign_request_id)
    app.after_request(send_request_id)
