"""What an inbound webhook provider is: one small class per vendor (Lemur's plugin shape)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar

from ...config import Settings
from ..inbound import TicketEvent


class InboundProvider(ABC):
    """Turns one vendor's delivery (headers and the exact body bytes) into a verified event."""

    # The path segment the vendor posts to: POST /api/v1/webhooks/<name>.
    name: ClassVar[str]

    @abstractmethod
    def is_enabled(self, settings: Settings) -> bool:
        """Whether its secret is configured; a provider that is not answers 404."""

    @abstractmethod
    def read_event(
        self, settings: Settings, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> TicketEvent:
        """Verify the delivery (Unauthorized), then parse it (UnsupportedMediaType, BadRequest).

        The signature is checked first: an unauthenticated caller learns nothing about parsing.
        """
