"""Plain helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select

from vault_service.extensions import current_settings, current_vault, db
from vault_service.models import Lease, Ticket
from vault_service.services import sweep

ROOT = Path(__file__).resolve().parent.parent


def run_worker_pass(app, *, orphans: bool = False) -> sweep.SweepReport:
    """One worker pass. Orphan sweeps stay off by default: every test shares one OpenBao, and
    other tests' leases are unknown to this test's fresh database."""
    with app.app_context():
        return sweep.sweep(current_settings(), current_vault(), orphans=orphans)


def lease_of(app, ticket_ref: str) -> Lease:
    """The lease of a ticket, loaded in a context of its own."""
    with app.app_context():
        ticket = db.session.scalar(select(Ticket).where(Ticket.ref == ticket_ref))
        return db.session.scalar(select(Lease).where(Lease.ticket_id == ticket.id))


ORIGIN_FIELDS = ("client_address", "user_agent", "request_id")


def own_details(details: dict) -> dict:
    """An audit record's details without the request origin every record of a request carries
    (services/audit.py; tests/test_request_origin.py checks those)."""
    return {key: value for key, value in details.items() if key not in ORIGIN_FIELDS}


def make_child_environment() -> dict[str, str]:
    """The environment for a child process (gunicorn, the worker, `make dev`): this one without
    Vault or app settings, and with this checkout first on PYTHONPATH, so that a child runs the
    code under test even where the venv has another copy of vault_service installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env
