"""An SSH login by key: the server, the user, and the private key with its optional passphrase."""

from __future__ import annotations

import re

from .base import HOST, PORT, USERNAME, Field, FormSection, Kind, check_no_control_characters

# The armour of an OpenSSH or PEM private key. Only the armour is checked: the key itself is
# never parsed (nor decrypted, nor logged), so a malformed key cannot reach a parser here.
_BEGIN = re.compile(r"-----BEGIN ((?:OPENSSH |RSA |DSA |EC |ENCRYPTED )?PRIVATE KEY)-----")
_END = re.compile(r"-----END ((?:OPENSSH |RSA |DSA |EC |ENCRYPTED )?PRIVATE KEY)-----")
# Base64 lines, and the `Proc-Type:` / `DEK-Info:` headers of an encrypted PEM key.
_BODY_LINE = re.compile(r"[A-Za-z0-9+/=:, -]*")


def check_private_key(value: str) -> str | None:
    """A whole private key block: a BEGIN line, base64 lines, and the END line of the same type."""
    lines = value.strip().splitlines()
    if len(lines) >= 3:
        begin, end = _BEGIN.fullmatch(lines[0]), _END.fullmatch(lines[-1])
        if begin and end and begin[1] == end[1]:
            if all(_BODY_LINE.fullmatch(line) for line in lines[1:-1]):
                return None
    return "Paste the whole private key, from its -----BEGIN line to its -----END line."


PRIVATE_KEY = Field(
    "private_key",
    "Private key",
    16384,
    checks=(check_no_control_characters, check_private_key),
    secret=True,
    input="textarea",
    rows=6,
    help="OpenSSH or PEM format, from -----BEGIN to -----END. Never the public key.",
)
PASSPHRASE = Field(
    "passphrase",
    "Key passphrase",
    1024,
    required=False,
    secret=True,
    input="password",
    autocomplete="new-password",
    help="Only if the key is protected by one.",
)

SECTION = FormSection(
    code="sk",
    legend="SSH key",
    kinds=(Kind("ssh_key", "SSH key", (HOST, PORT, USERNAME, PRIVATE_KEY, PASSPHRASE)),),
    position=30,
    help="A login to a server with a private key instead of a password.",
)
