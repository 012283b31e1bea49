"""The one place that sets security headers and cookie settings."""

from __future__ import annotations

from flask import Flask, Response, request

from .config import Settings

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        # The reveal page's script polls its grant's status (same origin only).
        "connect-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)

# Responses that hold nothing of a customer or an agent and set their own Cache-Control: the
# static assets, the public keys that verify receipts, and the API's description.
CACHEABLE_ENDPOINTS = frozenset({"static", "wellknown.jwks", "api.openapi_document"})


def init_app(app: Flask, settings: Settings) -> None:
    """Cookie flags and an after_request hook that adds the headers to every response."""
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        SESSION_COOKIE_NAME="__Host-session" if settings.is_production else "session",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=settings.is_production,
    )
    # No PERMANENT_SESSION_LIFETIME: sessions are never marked permanent, so the cookie ends with
    # the browser, and the idle and absolute limits are enforced server-side from the session's
    # signed timestamps (VAULT_SERVICE_SESSION_IDLE_SECONDS / _ABSOLUTE_SECONDS).

    @app.after_request
    def set_security_headers(response: Response) -> Response:
        headers = response.headers
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        # A view may ask for a looser policy on one page (the status page's confirmation, whose
        # form post needs its Origin: under no-referrer a browser sends "Origin: null").
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        if settings.is_production:
            headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
        # Every dynamic page either carries a link token, a secret, or an agent's view of a
        # ticket: none of them belongs in any cache. Only CACHEABLE_ENDPOINTS may be cached.
        cacheable = request.endpoint == "static" or (
            request.endpoint in CACHEABLE_ENDPOINTS and response.status_code == 200
        )
        if not cacheable:
            headers["Cache-Control"] = "no-store"
            headers["Pragma"] = "no-cache"
        return response
