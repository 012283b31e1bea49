"""What a help-desk connector is: one small class per vendor that posts text to a ticket."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import requests

from ...config import Settings


class HelpdeskError(Exception):
    """A help desk refused or failed a post; the message names the status, never a body."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        # A request the help desk will refuse every time (the ticket does not exist there):
        # retrying it would only keep the job failing for ever.
        self.permanent = permanent


# 400/404/422: the ticket or the request is wrong for good; anything else (401/403 until the
# operator fixes the token, 429, 5xx, the network) may succeed later.
PERMANENT_STATUSES = frozenset({400, 404, 422})


def check_response(vendor: str, response: requests.Response) -> None:
    """HelpdeskError unless the help desk answered 2xx."""
    if 200 <= response.status_code < 300:
        return
    raise HelpdeskError(
        f"{vendor} answered HTTP {response.status_code}",
        permanent=response.status_code in PERMANENT_STATUSES,
    )


class HelpdeskConnector(ABC):
    """Posts replies and notes to one help desk's tickets through its documented API."""

    # Also names its job kind: `<name>_note` (services/job_kinds/<name>_note.py).
    name: ClassVar[str]

    @abstractmethod
    def is_configured(self, settings: Settings) -> bool:
        """Whether every setting it needs is present."""

    @abstractmethod
    def addresses(self, ticket_ref: str) -> bool:
        """Whether a ticket reference can be one of this help desk's ticket ids."""

    @abstractmethod
    def post(self, settings: Settings, ticket_ref: str, text: str, *, public: bool) -> None:
        """Add `text` to the ticket, visible to the customer when `public`; HelpdeskError."""
