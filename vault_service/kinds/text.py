"""Characters that change what a reader sees: refused in hosts, URLs and usernames, made visible
on the reveal page where a value may hold them (passwords, notes), and hosts shown in punycode.

A right-to-left override (U+202E) makes "https://bank.example\\u202e/nigol.moc.elgoog.www" read
as another address; a zero-width space (U+200B) makes two names that look alike differ; Cyrillic
"а" in "pаypal.example" looks Latin. Bidi controls and invisible characters are Unicode's format
characters (category Cf) plus controls, separators and surrogates; lookalikes stay allowed (IDNA
permits them, real hosts use them), so the agent sees the punycode form beside the Unicode one.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit

import idna
from markupsafe import Markup, escape

# Cf: format (bidi controls, zero-width space/joiners, soft hyphen, BOM, ...); Cc: controls;
# Zl/Zp: line and paragraph separators; Cs: lone surrogates; Co/Cn: private use, unassigned.
HIDDEN_CATEGORIES = frozenset({"Cf", "Cc", "Zl", "Zp", "Cs", "Co", "Cn"})
# Shown as themselves on the reveal page, never marked: ordinary whitespace of a secret or note.
PLAIN_WHITESPACE = frozenset(" \t\n\r")
# Whitespace that is not a plain space (no-break, ideographic, en/em spaces...) looks like one.
_SPACE_LOOKALIKE = "Zs"


def is_hidden(char: str) -> bool:
    """A character that reorders, hides or imitates text: never plain to read."""
    if char in PLAIN_WHITESPACE:
        return False
    category = unicodedata.category(char)
    return category in HIDDEN_CATEGORIES or category == _SPACE_LOOKALIKE


def check_no_hidden_characters(value: str) -> str | None:
    """Refuse bidi controls and invisible characters (for hosts, URLs and usernames)."""
    if any(is_hidden(char) or char in "\t\n\r" for char in value):
        return "Contains invisible or text-direction characters that are not allowed."
    return None


def ascii_host(host: str) -> str | None:
    """The host as IDNA 2008 ASCII (punycode), or None if it is not a valid IDNA name."""
    try:
        # uts46 maps case and width as browsers do; transitional=False keeps "ß" and "ς".
        return idna.encode(host.rstrip("."), uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def url_host(value: str) -> str | None:
    """The host of an http(s) URL, or None."""
    try:
        return urlsplit(value).hostname
    except ValueError:
        return None


def ascii_form(value: str, address: str | None) -> str | None:
    """For a host or URL whose host is not ASCII: the same with the host in punycode, for the
    reveal page to show beside the Unicode form (None when there is nothing to add)."""
    if address is None or value.isascii():
        return None
    host = value if address == "host" else url_host(value)
    if not host or host.isascii():
        return None
    encoded = ascii_host(host)
    if encoded is None:
        return None
    if address == "host":
        return encoded
    # Only the host is replaced: the path of the URL is shown as typed.
    start = value.lower().find(host)
    return value[:start] + encoded + value[start + len(host) :] if start >= 0 else None


def mark_hidden(value: str) -> Markup:
    """The value escaped, with each hidden character shown as a marked code point (U+202E)."""
    if not any(is_hidden(char) for char in value):
        return escape(value)
    parts = []
    for char in value:
        if is_hidden(char):
            name = unicodedata.name(char, "unnamed character").lower()
            parts.append(
                Markup('<mark class="hidden-char" title="{}">U+{:04X}</mark>').format(
                    name, ord(char)
                )
            )
        else:
            parts.append(escape(char))
    return Markup("").join(parts)
