"""Compact JWS with EdDSA (RFC 7515, RFC 8037), only as far as deletion receipts need it.

Signing is Vault's (the private key never leaves it); this module builds the bytes Vault signs,
assembles the token, turns Vault's public keys into a JWKS, and verifies a token against one
with `cryptography`. Tests verify with an independent JOSE library (joserfc) as well.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ALGORITHM = "EdDSA"
# The media type of a receipt's header: a JWT (it has iss, iat, jti), so any JWT library reads it.
MEDIA_TYPE = "JWT"
# A receipt is a few kilobytes; anything far larger is not one (and not worth parsing).
MAX_TOKEN_LENGTH = 1_000_000


class Header(TypedDict):
    """A receipt's protected header."""

    alg: str
    kid: str
    typ: str


class Jwk(TypedDict):
    """One Ed25519 public key as a JWK (RFC 8037)."""

    kty: str
    crv: str
    x: str
    kid: str
    alg: str
    use: str


class Jwks(TypedDict):
    """A JWK Set (RFC 7517 section 5), as /.well-known/jwks.json publishes it."""

    keys: list[Jwk]


class InvalidReceipt(Exception):
    """A token that is malformed, signed by an unknown key, or whose signature does not verify."""


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The inverse of b64url; InvalidReceipt for anything that is not strict base64url."""
    if not text or not all(c.isalnum() or c in "-_" for c in text) or len(text) % 4 == 1:
        raise InvalidReceipt("malformed base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(key_name: str, version: int) -> str:
    """The `kid` of one version of a Vault key: both names, so a rotation gets a new kid."""
    return f"{key_name}:v{version}"


def signing_input(header: Header, payload: Mapping[str, object]) -> bytes:
    """`BASE64URL(header) . BASE64URL(payload)`: what the signature covers."""
    encoded = [
        b64url(json.dumps(part, separators=(",", ":"), sort_keys=True).encode("utf-8"))
        for part in (header, payload)
    ]
    return ".".join(encoded).encode("ascii")


def protected_header(kid: str) -> Header:
    """The receipt's protected header."""
    return {"alg": ALGORITHM, "kid": kid, "typ": MEDIA_TYPE}


def compact(signed_input: bytes, signature: bytes) -> str:
    """The compact serialization: signing input, a dot, the signature."""
    return f"{signed_input.decode('ascii')}.{b64url(signature)}"


def public_jwk(kid: str, public_key: bytes) -> Jwk:
    """One Ed25519 public key as a JWK (RFC 8037)."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(public_key),
        "kid": kid,
        "alg": ALGORITHM,
        "use": "sig",
    }


def jwks_from_vault_key(key_name: str, key: Mapping[str, Any]) -> Jwks:
    """Every version of a Vault ed25519 transit key (as `keys/<name>` reads it) as a JWKS."""
    keys: list[Jwk] = []
    for version, info in sorted(key.get("keys", {}).items(), key=lambda item: int(item[0])):
        public = info.get("public_key") if isinstance(info, dict) else None
        if public:
            keys.append(public_jwk(key_id(key_name, int(version)), base64.b64decode(public)))
    return {"keys": keys}


@dataclass(frozen=True)
class VerifiedReceipt:
    """A token whose signature verified: its header and payload."""

    header: dict[str, Any]
    payload: dict[str, Any]


def _json_part(encoded: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(encoded))
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidReceipt("malformed JSON") from error
    if not isinstance(value, dict):
        raise InvalidReceipt("malformed JSON")
    return value


def _public_key(jwks: Mapping[str, object], kid: object) -> Ed25519PublicKey:
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    for jwk in keys if isinstance(keys, list) else []:
        if isinstance(jwk, dict) and jwk.get("kid") == kid:
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                raise InvalidReceipt("the key named by kid is not an Ed25519 key")
            raw = b64url_decode(str(jwk.get("x", "")))
            if len(raw) != 32:
                raise InvalidReceipt("the key named by kid is malformed")
            return Ed25519PublicKey.from_public_bytes(raw)
    raise InvalidReceipt("kid names no key of the JWKS")


def verify(token: str, jwks: Mapping[str, object], *, issuer: str) -> VerifiedReceipt:
    """Check a compact JWS against a JWKS: alg EdDSA, kid known, signature, and `iss`."""
    token = token.strip()
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise InvalidReceipt("not a compact JWS")
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = _json_part(header_b64)
    if header.get("alg") != ALGORITHM:
        raise InvalidReceipt("alg is not EdDSA")
    if "crit" in header:
        raise InvalidReceipt("unsupported critical header")
    key = _public_key(jwks, header.get("kid"))
    try:
        key.verify(b64url_decode(signature_b64), f"{header_b64}.{payload_b64}".encode("ascii"))
    except InvalidSignature as error:
        raise InvalidReceipt("the signature does not verify") from error
    payload = _json_part(payload_b64)
    if payload.get("iss") != issuer:
        raise InvalidReceipt("iss is not the expected issuer")
    return VerifiedReceipt(header, payload)
