"""What an agent's new password must not be: too short or long, a common or breached password,
built on the username, or trivially repetitive. Each refusal says which, so the agent can pick a
better one (ASVS 6.2.4, 6.2.11). No password is logged or kept here."""

from __future__ import annotations

from functools import cache

MIN_PASSWORD_LENGTH = 12
# Long passphrases are welcome (ASVS asks for at least 64); the cap only bounds the work per try.
MAX_PASSWORD_LENGTH = 1024
# Fewer different characters than this is a keyboard pattern, not a password ("aabbaabbaabb").
MIN_DISTINCT_CHARACTERS = 5
APPENDED = "0123456789!@#$%^&*?.,;:_+=- "


@cache
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords of real breaches (the xato corpus, as ranked and shipped
    by the zxcvbn package, MIT): loaded once, on first use."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def repeated_unit(password: str) -> str | None:
    """The short unit the password repeats ("bob-" in "bob-bob-bob-bob"), or None."""
    size = len(password)
    for length in range(1, size // 3 + 1):
        unit = password[:length]
        if (unit * (size // length + 1))[:size] == password:
            return unit
    return None


def password_problem(password: str, username: str | None = None) -> str | None:
    """Why this password is refused, as a sentence for the agent; None when it is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Password must have at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"Password must have at most {MAX_PASSWORD_LENGTH} characters."
    folded = password.casefold()
    # Also a common password with digits or symbols appended, the first thing a guesser tries
    # ("iloveyou1234"); a stem of at least 4 characters, so the suffix is not the password.
    stem = folded.rstrip(APPENDED)
    if folded in common_passwords() or (len(stem) >= 4 and stem in common_passwords()):
        return "This password is one of the most common passwords; choose another."
    if username and len(username) >= 3 and username.casefold() in folded:
        return "The password must not contain the username."
    if repeated_unit(password) is not None:
        return "The password only repeats a short pattern; choose one that does not."
    if len(set(folded)) < MIN_DISTINCT_CHARACTERS:
        return f"The password needs at least {MIN_DISTINCT_CHARACTERS} different characters."
    return None
