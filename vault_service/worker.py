"""The worker: durable jobs and periodic sweeps, as a process or a background thread."""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask

from .extensions import current_settings, current_vault, db
from .services import sweep

log = logging.getLogger(__name__)


# Orphan sweeps list the KV mount and the transit keys: worth doing often, not every pass.
ORPHAN_SWEEP_SECONDS = 300


def run_once(app: Flask, *, orphans: bool = True) -> sweep.SweepReport:
    """One sweep: retention, expired grants and links, due jobs, and orphans if asked."""
    with app.app_context():
        try:
            return sweep.sweep(current_settings(), current_vault(), orphans=orphans)
        finally:
            db.session.remove()


def run_forever(app: Flask, stop: threading.Event) -> None:
    """Sweep until `stop` is set: again at once after a pass that completed jobs, else after the
    poll interval. A failing pass is logged and retried."""
    settings = app.extensions["vault_service.settings"]
    log.info("worker started", extra={"fields": {"poll_seconds": settings.worker_poll_seconds}})
    next_orphan_sweep = 0.0
    while not stop.is_set():
        # A pass runs at most process_due_jobs' limit of jobs: one that completed some may have
        # left a backlog, which waiting the poll interval after every pass capped at that limit
        # per interval (100 per 2 s). A pass that completed nothing (an empty queue, or every
        # attempt failed and backs off) waits, so a receiver that is down is not hammered.
        busy = False
        try:
            orphans = time.monotonic() >= next_orphan_sweep
            report = run_once(app, orphans=orphans)
            if orphans:
                next_orphan_sweep = time.monotonic() + ORPHAN_SWEEP_SECONDS
            counts = report.as_json()
            if any(counts.values()):
                log.info("sweep", extra={"fields": counts})
            busy = any(report.jobs_completed.values())
        except Exception as error:  # noqa: BLE001 - the loop must outlive any single failure
            log.error("sweep failed", extra={"fields": {"error": type(error).__name__}})
        if not busy:
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
