"""The customer's free-text notes: the submission's top-level `notes`, stored as the last item."""

from __future__ import annotations

from .base import Field, Kind, check_no_nul

NOTES_FIELD = Field(
    "notes",
    "Notes for the agent",
    4000,
    checks=(check_no_nul,),
    required=False,
    secret=True,
    input="textarea",
    # Secret to everyone else (stored in Vault, shown only on the reveal), but the customer's own
    # prose: losing a long note to a typo in a port is worse than showing it back to its author,
    # on their own page, over TLS and never cached (no-store).
    refill_secret=True,
)
# Not a form section, and not accepted as an item: a submission carries it as `notes`.
NOTES = Kind("notes", "Notes", (NOTES_FIELD,))
