"""vault_service: per-ticket, audited, time-limited custody of customer credentials in Vault."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request
from sqlalchemy import make_url

from . import (
    connections,
    errors,
    i18n,
    kinds,
    metrics,
    ratelimits,
    request_body,
    request_context,
    security,
    transactions,
)
from .branding import load_branding
from .config import Settings, load_settings
from .extensions import csrf, db, login_manager
from .logs import configure_logging
from .services import providers
from .services.deployment import legacy_leases_live
from .services.readiness import job_queue_counts
from .sqlite import configure_sqlite
from .vault import Vault

access_log = logging.getLogger("vault_service.access")


def _pings_on_checkout(database_url: str) -> bool:
    """Whether the pool pings a connection on every checkout, to replace one the server dropped:
    a SQLite file drops none, and with psycopg a look at the socket does it without the round
    trip (connections.py)."""
    url = make_url(database_url)
    return url.get_backend_name() != "sqlite" and url.get_driver_name() != "psycopg"


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app. Nothing reads the environment or opens a socket before this is called."""
    settings = settings or load_settings()
    providers.check_configured(settings)
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config.update(
        # First key signs sessions; the rest still verify them (Flask 3.1), so rotating
        # VAULT_SERVICE_SECRET_KEY with the old key kept second signs nobody out.
        SECRET_KEY=settings.signing_key,
        SECRET_KEY_FALLBACKS=list(settings.secret_keys[1:]),
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": _pings_on_checkout(settings.database_url)},
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_request_bytes,
        WTF_CSRF_TIME_LIMIT=None,  # the session's own lifetime bounds the token
        TESTING=settings.env == "testing",
    )
    app.extensions["vault_service.settings"] = settings
    app.extensions["vault_service.vault"] = Vault(
        settings,
        before_call=transactions.refuse_open_transaction,
        after_call=metrics.observe_vault_call,
        legacy_leases_live=legacy_leases_live,
    )

    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            configure_sqlite(db.engine)
        elif db.engine.dialect.driver == "psycopg":
            connections.replace_closed_connections(db.engine)
        transactions.refuse_writes_in_reads(db.engine)
    csrf.init_app(app)
    login_manager.init_app(app)
    errors.init_app(app)
    security.init_app(app, settings)
    request_body.init_app(app)
    request_context.init_app(app, settings)  # after request_body: its hook goes first
    # Before the blueprints' guard, so that refused and redirected requests are timed too.
    metrics.init_app(app, settings.metrics_allow, job_queue_counts)
    kinds.init_app(app)
    # The customer pages' language and the organisation's branding (views/customer.py).
    i18n.init_app(app)
    app.extensions["vault_service.branding"] = load_branding(settings)

    from . import cli
    from .formatting import format_duration
    from .views import register_blueprints

    app.add_template_filter(format_duration, "duration")

    register_blueprints(app)
    ratelimits.init_app(app, settings)
    cli.init_app(app)

    @app.before_request
    def start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def log_request(response: Response) -> Response:
        # The route pattern, not the path: a link token in the URL never reaches a log line.
        route = request.url_rule.rule if request.url_rule else "<unmatched>"
        elapsed = time.perf_counter() - g.get("request_started", time.perf_counter())
        access_log.info(
            "request",
            extra={
                "fields": {
                    "method": request.method,
                    "route": route,
                    "status": response.status_code,
                    "ms": round(elapsed * 1000, 1),
                }
            },
        )
        return response

    if settings.embedded_worker:
        from .worker import start_background_worker

        start_background_worker(app)
    return app
