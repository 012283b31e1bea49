"""What the customer's form page reads: the link behind it, in a read that has ended on return;
and the proof, held only by the browser that submitted, that its link was used by that browser."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

from sqlalchemy import select

from ..config import Settings
from ..models import SubmissionLink
from ..transactions import read_only
from .submissions import UsableLink, find_usable_link
from .tickets import link_token_hashes

# The cookie that carries the proof, scoped to the link's own path (see views/customer.py).
RECEIVED_COOKIE = "received"


def read_usable_link(settings: Settings, token: str) -> UsableLink:
    """The link if it can still take a submission; one LinkGone for every other case."""
    with read_only():
        return find_usable_link(settings, token)


def _proof(secret_key: str, token_hash: str, consumed_at: datetime) -> str:
    # Its own key, derived apart from the link-token hash key: one never stands in for the other.
    key = hashlib.sha256(b"vault-service/received-proof/v1\x00" + secret_key.encode())
    message = f"{token_hash}\x00{consumed_at.isoformat()}".encode()
    digest = hmac.new(key.digest(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _consumed_at(settings: Settings, token: str) -> tuple[str, datetime | None]:
    """The link's stored hash (under whichever configured key it was made) and its use time."""
    hashes = link_token_hashes(settings, token)
    with read_only() as session:
        row = session.execute(
            select(SubmissionLink.token_hash, SubmissionLink.consumed_at).where(
                SubmissionLink.token_hash.in_(hashes)
            )
        ).first()
    if row is None:
        return hashes[0], None
    return row.token_hash, row.consumed_at


def issue_received_proof(settings: Settings, token: str) -> tuple[str, datetime] | None:
    """After a submission consumed the link: the proof for the submitting browser, and when."""
    token_hash, consumed_at = _consumed_at(settings, token)
    if consumed_at is None:
        return None
    return _proof(settings.signing_key, token_hash, consumed_at), consumed_at


def read_received_at(settings: Settings, token: str, proof: str | None) -> datetime | None:
    """When the link was used, if `proof` is the one its submitting browser got; else None, and
    the caller answers exactly as for any dead link (no oracle for a token or a guessed proof)."""
    if not proof or not token or len(token) > 128 or len(proof) > 64:
        return None
    token_hash, consumed_at = _consumed_at(settings, token)
    # Every key's HMAC is computed either way, so a used link and an unknown one take the same
    # time; a proof issued before a rotation verifies while its key stays in the list.
    matched = False
    for key in settings.secret_keys:
        expected = _proof(key, token_hash, consumed_at or datetime.min)
        matched |= hmac.compare_digest(expected.encode(), proof.encode())
    if matched and consumed_at is not None:
        return consumed_at
    return None
