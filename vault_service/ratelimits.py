"""Rate limits per client address on what can be hammered without an agent session.

Limits attach to endpoints by name after the blueprints are registered, so the views stay free of
limiter decorators; a renamed endpoint fails at startup instead of silently losing its limit.

- the login steps (every public POST of the authentication blueprint): `ratelimit_login`, against
  password and second-factor guessing;
- `/s/<token>`, GET and POST on one budget: `ratelimit_link`, against link-token guessing and
  submission floods;
- `/r/<token>`, the customer's status page, GET and POST on a budget of its own, as large as a
  link's: `ratelimit_link`, against status-token guessing;
- the ticket API (links, ticket status, access log, receipts): `ratelimit_api`, against
  bearer-token guessing and Vault load; the public JWKS and OpenAPI document on a budget of the
  same size of their own;
- the webhooks of every inbound provider: `ratelimit_webhook`, generous, so a bulk close passes.

The key is `request.remote_addr`. X-Forwarded-For is believed only through `ProxyFix` with the
configured number of trusted proxies: with none (the default) the header is ignored, so a client
cannot reset its budget by sending a new address in it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import cast

from flask import Flask, request
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter, RateLimitExceeded
from limits.storage import MemoryStorage
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from .config import Settings
from .errors import render_error

log = logging.getLogger(__name__)

LINK_ENDPOINTS = ("customer.submission_form", "customer.submit")
STATUS_ENDPOINTS = ("status.show", "status.act")
API_ENDPOINTS = (
    "api.create_submission_link",
    "api.get_ticket",
    "api.list_links",
    "api.revoke_link",
    "api.get_access_log",
    "api.list_receipts",
)
# Public documents: cheap, but the JWKS reads Vault, so they are limited like the API.
DOCUMENT_ENDPOINTS = ("wellknown.jwks", "api.openapi_document")
WEBHOOK_ENDPOINTS = ("api.receive_webhook",)
TOO_MANY_REQUESTS = "Too many requests. Please wait a moment and try again."


class SweptMemoryStorage(MemoryStorage):
    """limits' in-process storage, its expired entries swept at most once a second, inline.

    The stock storage starts a `threading.Timer` (a new OS thread) on any write that comes more
    than 10 ms after its last sweep: on a server with quiet moments, nearly every limited request,
    at about 0.4 ms each (measured here, README "Performance"). Every read already ignores expired
    entries, so the sweep only frees memory; once a second, on the request that finds it due,
    frees it soon enough and starts no thread at all. Used for `memory://`.
    """

    STORAGE_SCHEME = ["vault-service-memory"]
    SWEEP_INTERVAL_SECONDS = 1.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: str):
        self._next_sweep = 0.0
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    # Replaces MemoryStorage's private per-write hook (name-mangled); a test fails if a new
    # version of limits renames it, and pyproject.toml keeps limits within the tested major.
    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_INTERVAL_SECONDS
            # The parent's private sweep, by its mangled name (mypy does not mangle names).
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


def client_address() -> str:
    """The client's address: the socket peer, or what the trusted proxies say it is."""
    return request.remote_addr or "unknown"


def login_endpoints(app: Flask) -> list[str]:
    """The authentication views reachable without a session: the password step and any later
    login step (a second factor), whatever its name."""
    from .views import PUBLIC_ENDPOINTS

    return sorted(e for e in PUBLIC_ENDPOINTS if e.startswith("auth.") and e in app.view_functions)


def init_app(app: Flask, settings: Settings) -> Limiter:
    """Trust X-Forwarded-For only as far as configured, and attach the limits by endpoint name."""
    if settings.trusted_proxies:
        # x_for only: the scheme, host and prefix the app uses come from its configuration.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    storage_options: dict[str, str | int] = {}
    if settings.ratelimit_storage_url.startswith(("redis", "valkey")):
        # A Redis that hangs must not hang every login: give up quickly, then fall back below.
        storage_options = {"socket_connect_timeout": 1, "socket_timeout": 1}
    storage_uri = settings.ratelimit_storage_url
    if storage_uri.partition("://")[0] == "memory":
        storage_uri = "vault-service-memory://"
    limiter = Limiter(
        key_func=client_address,
        storage_uri=storage_uri,
        storage_options=storage_options,
        # Exact over any 60 s, not per calendar minute: no double burst across a window edge.
        strategy="moving-window",
        key_prefix="vault-service",
        # Headers only on the 429 itself (Retry-After, below); nothing advertises the budget.
        headers_enabled=False,
        # When the shared storage (Redis) is unreachable, each process keeps limiting on its own
        # in memory: weaker (per process) but still limits, and logins and links keep working.
        in_memory_fallback_enabled=True,
    )
    limiter.init_app(app)
    app.extensions["vault_service.limiter"] = limiter

    def attach(
        endpoints: Iterable[str], limit_value: str, scope: str, methods: list[str] | None = None
    ) -> None:
        for endpoint in endpoints:
            view = app.view_functions.get(endpoint)
            if view is None:
                raise RuntimeError(f"rate limit for an endpoint that does not exist: {endpoint}")
            # A shared limit: GET and POST of a link, or both API calls, draw on one budget.
            decorate = limiter.shared_limit(limit_value, scope=scope, methods=methods)
            # Every view of this app is synchronous (Flask's type also admits async ones).
            sync_view = cast(Callable[..., ResponseReturnValue], view)
            app.view_functions[endpoint] = decorate(sync_view)

    attach(login_endpoints(app), settings.ratelimit_login, "login", methods=["POST"])
    attach(LINK_ENDPOINTS, settings.ratelimit_link, "submission-link")
    attach(STATUS_ENDPOINTS, settings.ratelimit_link, "status-page")
    attach(API_ENDPOINTS, settings.ratelimit_api, "ticket-api")
    attach(DOCUMENT_ENDPOINTS, settings.ratelimit_api, "public-documents")
    attach(WEBHOOK_ENDPOINTS, settings.ratelimit_webhook, "webhook")

    @app.errorhandler(RateLimitExceeded)
    def too_many_requests(error: RateLimitExceeded) -> Response:
        # Through the app's one error renderer: JSON for the API and JSON callers, HTML else.
        response = render_error(429, "too_many_requests", TOO_MANY_REQUESTS)
        response.headers["Retry-After"] = str(retry_after_seconds(limiter, error))
        log.warning(
            "rate limited",
            extra={
                "fields": {
                    "route": request.url_rule.rule if request.url_rule else "<unmatched>",
                    "method": request.method,
                    "client": client_address(),
                }
            },
        )
        return response

    return limiter


def retry_after_seconds(limiter: Limiter, error: RateLimitExceeded) -> int:
    """Seconds until the breached limit admits a request again (at least 1)."""
    current = limiter.current_limit
    if current is not None and current.breached:
        return max(1, math.ceil(current.reset_at - time.time()))
    return max(1, error.limit.limit.get_expiry())
