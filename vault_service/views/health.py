"""Liveness and readiness for operators and load balancers."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from ..extensions import current_vault, db
from ..services import purge
from ..vault import VaultError

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is alive."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """The database answers, Vault is reachable and unsealed, and it accepts the app's identity."""
    checks = {}
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
        checks["database"] = "ok"
    except Exception:  # noqa: BLE001 - readiness reports, it does not raise
        db.session.rollback()
        checks["database"] = "unavailable"
    vault = current_vault()
    try:
        health = vault.health()
        checks["vault"] = "sealed" if health.get("sealed") else "ok"
    except VaultError:
        checks["vault"] = "unavailable"
    if checks["vault"] == "ok":
        # Reachable is not enough: an expired or revoked app token would fail every real call.
        try:
            vault.lookup_self()
            checks["vault_auth"] = "ok"
        except VaultError:
            checks["vault_auth"] = "refused"
    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    if checks["database"] == "ok":
        # Reported, not a readiness failure: this instance serves fine, but an operator must
        # look (a purge that keeps failing is a promise not yet kept).
        failing = len(purge.failing_jobs())
        db.session.rollback()
        body["purge_jobs"] = f"failing: {failing}" if failing else "ok"
    return jsonify(body), 200 if ready else 503
