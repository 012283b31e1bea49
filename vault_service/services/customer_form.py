"""What the customer's form page reads: the link behind it, in a read that has ended on return."""

from __future__ import annotations

from ..config import Settings
from ..transactions import read_only
from .submissions import UsableLink, find_usable_link


def read_usable_link(settings: Settings, token: str) -> UsableLink:
    """The link if it can still take a submission; one LinkGone for every other case."""
    with read_only():
        return find_usable_link(settings, token)
