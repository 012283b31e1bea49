"""What an inbound webhook provider is: one small class per vendor (Lemur's plugin shape), and
the parts every native help-desk adapter shares (secrets, status mapping, JSON, delivery ids)."""

from __future__ import annotations

import hashlib
import hmac
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ClassVar, Protocol, overload

from werkzeug.http import parse_options_header

from ...config import ProviderSettings, Settings
from ...errors import BadRequest, Unauthorized, UnsupportedMediaType
from ..inbound import TicketEvent, TicketEventType

# A vendor's own delivery id longer than this is stored as its hash (the column holds 128).
MAX_DELIVERY_ID_LENGTH = 100


class RequestHeaders(Protocol):
    """What a provider reads of a delivery's headers: werkzeug's case-insensitive Headers in the
    app, a plain mapping where a test or the benchmark builds one."""

    @overload
    def get(self, key: str, /) -> str | None: ...

    @overload
    def get(self, key: str, default: str, /) -> str: ...


class InboundProvider(ABC):
    """Turns one vendor's delivery (headers and the exact body bytes) into a verified event."""

    # The path segment the vendor posts to: POST /api/v1/webhooks/<name>.
    name: ClassVar[str]
    # A help-desk adapter configured by VAULT_SERVICE_<NAME>_* (not Standard Webhooks).
    native: ClassVar[bool] = True

    @abstractmethod
    def is_enabled(self, settings: Settings) -> bool:
        """Whether its secret is configured; a provider that is not answers 404."""

    @abstractmethod
    def read_event(
        self, settings: Settings, headers: RequestHeaders, body: bytes, now: datetime
    ) -> TicketEvent | None:
        """Verify the delivery (Unauthorized), then parse it (UnsupportedMediaType, BadRequest).

        None for a genuine delivery that neither closes nor reopens (answered 2xx, ignored).
        The signature is checked first: an unauthenticated caller learns nothing about parsing.
        """


class NativeProvider(InboundProvider):
    """A help desk's own webhook: its secret, its status mapping and its replay window come
    from VAULT_SERVICE_<NAME>_*, with the defaults each vendor module documents."""

    default_close_statuses: ClassVar[frozenset[str]]
    default_reopen_statuses: ClassVar[frozenset[str]]
    # Seconds a signed timestamp may lag (None: the vendor signs no timestamp).
    default_tolerance_seconds: ClassVar[int | None] = None

    def config(self, settings: Settings) -> ProviderSettings:
        """This provider's settings (empty when none of its variables is set)."""
        return settings.providers.get(self.name, ProviderSettings())

    def is_enabled(self, settings: Settings) -> bool:
        return bool(self.config(settings).secrets)

    def secrets(self, settings: Settings) -> list[bytes]:
        """Every configured secret (rotation: the old and the new one for a while)."""
        return [secret.encode() for secret in self.config(settings).secrets]

    def tolerance_seconds(self, settings: Settings) -> int | None:
        configured = self.config(settings).tolerance_seconds
        return configured if configured is not None else self.default_tolerance_seconds

    def classify(self, settings: Settings, status: object) -> TicketEventType | None:
        """CLOSED, REOPENED or None (ignored) for a vendor status, case-insensitively."""
        config = self.config(settings)
        if isinstance(status, bool) or not isinstance(status, str | int):
            raise BadRequest("The ticket status is missing or not a string.")
        status = str(status).strip().lower()
        close = config.close_statuses or self.default_close_statuses
        reopen = config.reopen_statuses or self.default_reopen_statuses
        if status in close:
            return TicketEventType.CLOSED
        if status in reopen:
            return TicketEventType.REOPENED
        return None


def any_signature_matches(
    offered: str, secrets: Iterable[bytes], expected_for: Callable[[bytes], str]
) -> bool:
    """Constant-time comparison of the offered signature with each secret's."""
    offered_bytes = offered.strip().encode()
    matches = [hmac.compare_digest(offered_bytes, expected_for(s).encode()) for s in secrets]
    return any(matches)


def require_signature(
    offered: str | None, secrets: Iterable[bytes], expected_for: Callable[[bytes], str]
) -> None:
    """Unauthorized unless one configured secret produced the offered signature."""
    if not offered or not any_signature_matches(offered, secrets, expected_for):
        raise Unauthorized("Invalid or missing webhook signature.")


def require_json(headers: RequestHeaders, *, unlabelled_is_json: bool = False) -> None:
    """415 unless the delivery is JSON (checked after the signature).

    `unlabelled_is_json`: a vendor that sends its JSON with no Content-Type at all (GLPI's queue
    sends only its own headers) is read as JSON; a body labelled as something else is still 415.
    """
    content_type = headers.get("Content-Type", "")
    if unlabelled_is_json and not content_type.strip():
        return
    mimetype = parse_options_header(content_type)[0].lower()
    if not (
        mimetype == "application/json"
        or (mimetype.startswith("application/") and mimetype.endswith("+json"))
    ):
        raise UnsupportedMediaType()


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; BadRequest otherwise."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise BadRequest("The body must be a JSON object.")
    return parsed


def field(container: object, *path: str) -> object:
    """container[path[0]][path[1]]..., or None where a level is missing or not an object."""
    for key in path:
        if not isinstance(container, dict):
            return None
        container = container.get(key)
    return container


def ticket_id(value: object) -> str:
    """A vendor's ticket id as text (Zendesk and GLPI send numbers, Jira keys)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRequest("The ticket id is missing.")
    return str(value)


def vendor_delivery_id(provider: str, value: object) -> str | None:
    """`<provider>:<the vendor's delivery id>`, hashed when it is long; None when absent."""
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        return None
    value = value.strip()
    if len(value) > MAX_DELIVERY_ID_LENGTH:
        value = "sha256-" + hashlib.sha256(value.encode()).hexdigest()
    return f"{provider}:{value}"


def content_delivery_id(provider: str, *signed_parts: bytes) -> str:
    """A delivery id for a vendor that sends none: the hash of what it signed, so a redelivery
    of the same bytes is recognised and a different event is not."""
    digest = hashlib.sha256()
    for part in signed_parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return f"{provider}:sha256-{digest.hexdigest()}"


def require_fresh(
    provider: NativeProvider, settings: Settings, signed_at: int, now: datetime
) -> None:
    """Unauthorized when a signed timestamp is further from now than the provider's window
    (a captured delivery replayed later is refused even before its id is looked up)."""
    tolerance = provider.tolerance_seconds(settings)
    if tolerance is not None and abs(int(now.timestamp()) - signed_at) > tolerance:
        raise Unauthorized("The webhook timestamp is outside the allowed window.")
