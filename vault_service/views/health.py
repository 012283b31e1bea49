"""Liveness and readiness for operators and load balancers."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from ..extensions import current_vault
from ..services.readiness import check_readiness

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is alive."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """The database answers, Vault is reachable and unsealed, and it accepts the app's identity."""
    readiness = check_readiness(current_vault())
    return jsonify(readiness.as_json()), 200 if readiness.ready else 503
