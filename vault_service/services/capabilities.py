"""Capability tokens (customer links, status pages, agents' set-up links): the keyed hash that is
all the database keeps of one, so a stolen database cannot be turned back into working URLs."""

from __future__ import annotations

import hashlib
import hmac

from ..config import Settings


def derived_key(secret_key: str, purpose: bytes) -> bytes:
    """A key of its own per purpose, derived from one secret key."""
    return hashlib.sha256(b"vault-service/" + purpose + b"\x00" + secret_key.encode()).digest()


def token_hash(secret_key: str, purpose: bytes, token: str) -> str:
    """The token's HMAC-SHA256 under the purpose's key, hex."""
    return hmac.new(
        derived_key(secret_key, purpose), token.encode("utf-8"), hashlib.sha256
    ).hexdigest()


def token_hashes(settings: Settings, purpose: bytes, token: str) -> list[str]:
    """The token's hash under every configured secret key, for a lookup: a token issued before a
    rotation still matches under the old key while that key stays in the list. Tried against
    every key rather than tagged with a key id, so no column changes; the cost is one HMAC per
    configured key (two during a rotation) and one indexed IN lookup."""
    return [token_hash(key, purpose, token) for key in settings.secret_keys]
