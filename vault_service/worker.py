"""The purge worker: durable purge jobs and periodic sweeps, as a process or a background thread."""

from __future__ import annotations

import logging
import threading

from flask import Flask

from .extensions import current_settings, current_vault, db
from .services import purge

log = logging.getLogger(__name__)


def run_once(app: Flask) -> purge.SweepReport:
    """One sweep: retention, expired grant tokens, due purge jobs."""
    with app.app_context():
        try:
            return purge.sweep(current_settings(), current_vault())
        finally:
            db.session.remove()


def run_forever(app: Flask, stop: threading.Event) -> None:
    """Sweep every poll interval until `stop` is set. A failing pass is logged and retried."""
    settings = app.extensions["vault_service.settings"]
    log.info("worker started", extra={"fields": {"poll_seconds": settings.worker_poll_seconds}})
    while not stop.is_set():
        try:
            report = run_once(app)
            if report.purges_completed or report.retention_closed:
                log.info("sweep", extra={"fields": report.__dict__})
        except Exception as error:  # noqa: BLE001 - the loop must outlive any single failure
            log.error("sweep failed", extra={"fields": {"error": type(error).__name__}})
        stop.wait(settings.worker_poll_seconds)
    log.info("worker stopped")


def start_background_worker(app: Flask) -> threading.Event:
    """Run the worker in a daemon thread of this process (the embedded default needs no other)."""
    stop = threading.Event()
    thread = threading.Thread(
        target=run_forever, args=(app, stop), name="vault-service-worker", daemon=True
    )
    thread.start()
    app.extensions["vault_service.worker_stop"] = stop
    return stop
