"""Public documents under /.well-known: the keys that verify deletion receipts."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from ..extensions import current_vault
from ..services import receipts

bp = Blueprint("wellknown", __name__, url_prefix="/.well-known")

# Long enough to spare Vault a read per verifier, short enough that a rotation shows soon.
JWKS_MAX_AGE_SECONDS = 300


@bp.get("/jwks.json")
def jwks() -> ResponseReturnValue:
    """Every version of the receipt key's public half (Ed25519 JWKs named by `kid`)."""
    response = jsonify(receipts.public_jwks(current_vault()))
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    return response
