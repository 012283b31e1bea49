"""The agents' second factor as pure functions: TOTP secrets (encrypted at rest), codes checked
against time steps, and recovery codes. No database, no request; services/agents.py and
services/authentication.py own the state."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from datetime import datetime

import pyotp
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ISSUER = "vault_service"
STEP_SECONDS = 30
DIGITS = 6
# Codes of the previous and the next step count too: an authenticator app's clock may drift a
# little, and a code typed in the last seconds of its step arrives in the next one.
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
# Crockford's base32 (no i, l, o, u): 24 characters carry 120 random bits, above the 112 bits
# from which a plain SHA-256 is a sufficient way to store a lookup secret (ASVS 6.5.2).
_RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_RECOVERY_CODE_LENGTH = 24
_RECOVERY_GROUP = 4
_TOTP_CODE = re.compile(r"\d{6}")
# Domain separation: this key encrypts TOTP secrets and nothing else.
_HKDF_INFO = b"vault-service/totp-secret/v1"


def new_secret() -> str:
    """A fresh TOTP secret: 32 base32 characters, 160 bits (RFC 4226's recommended length)."""
    return pyotp.random_base32()


def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret_key.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(key))


def _multi_fernet(secret_keys: Sequence[str]) -> MultiFernet:
    # MultiFernet encrypts under the first key and decrypts under any: a rotated
    # VAULT_SERVICE_SECRET_KEY (new key first, old key after it) forces no re-enrolment.
    return MultiFernet([_fernet(key) for key in secret_keys])


def encrypt_secret(secret_keys: Sequence[str], secret: str) -> str:
    """The secret as it is stored: Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from
    the first VAULT_SERVICE_SECRET_KEY with HKDF."""
    return _multi_fernet(secret_keys).encrypt(secret.encode("ascii")).decode("ascii")


def decrypt_secret(secret_keys: Sequence[str], ciphertext: str) -> str | None:
    """The secret, or None when the ciphertext was made under none of the keys or altered."""
    try:
        return _multi_fernet(secret_keys).decrypt(ciphertext.encode("ascii")).decode("ascii")
    except (InvalidToken, ValueError):
        return None


def is_under_signing_key(secret_keys: Sequence[str], ciphertext: str) -> bool:
    """Whether the ciphertext was made under the first key (nothing to re-encrypt)."""
    try:
        _fernet(secret_keys[0]).decrypt(ciphertext.encode("ascii"))
    except (InvalidToken, ValueError, IndexError):
        return False
    return True


def time_step(moment: datetime) -> int:
    """The RFC 6238 time step of a moment (30-second steps since the epoch)."""
    return int(moment.timestamp()) // STEP_SECONDS


def code_at(secret: str, step: int) -> str:
    """The six-digit code of a time step."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


def is_totp_code(raw: str) -> bool:
    """Whether what was typed has the shape of a TOTP code (else it may be a recovery code)."""
    return bool(_TOTP_CODE.fullmatch(raw.replace(" ", "")))


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The step, within the drift window around now, whose code this is; None if none is."""
    code = code.replace(" ", "")
    if not _TOTP_CODE.fullmatch(code):
        return None
    current = time_step(now)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Every candidate is compared (constant work), each in constant time.
        if hmac.compare_digest(code_at(secret, step), code):
            found = step if found is None else found
    return found


def provisioning_uri(secret: str, username: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    return totp.provisioning_uri(name=username, issuer_name=ISSUER)


def new_recovery_codes() -> list[str]:
    """Fresh recovery codes, grouped for reading: `xxxx-xxxx-xxxx-xxxx-xxxx-xxxx`."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_CODE_LENGTH))
        groups = [raw[i : i + _RECOVERY_GROUP] for i in range(0, len(raw), _RECOVERY_GROUP)]
        codes.append("-".join(groups))
    return codes


def normalise_recovery_code(raw: str) -> str:
    """What was typed, without case, spaces or dashes."""
    return re.sub(r"[\s-]", "", raw).lower()


def hash_recovery_code(code: str) -> str:
    """The stored form of a recovery code (SHA-256 of its normalised text)."""
    return hashlib.sha256(normalise_recovery_code(code).encode("utf-8")).hexdigest()
