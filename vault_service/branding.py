"""The organisation's name, logo, support contact and privacy link on every customer page."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .config import LOGO_TYPES, Settings


@dataclass(frozen=True)
class Logo:
    """The logo's bytes, read once at startup (no path is ever taken from a request)."""

    content: bytes
    mimetype: str
    etag: str


@dataclass(frozen=True)
class Branding:
    """What the customer pages show; empty values are left out of the page."""

    name: str
    support_contact: str
    privacy_url: str
    logo: Logo | None

    @property
    def support_href(self) -> str | None:
        """A link for the contact when it is an address or a web page; None for plain text."""
        contact = self.support_contact
        if contact.startswith("https://"):
            return contact
        if "@" in contact and " " not in contact and "/" not in contact and ":" not in contact:
            return f"mailto:{contact}"
        return None


def load_branding(settings: Settings) -> Branding:
    """Build the branding from the (already validated) settings, reading the logo file once."""
    logo = None
    if settings.brand_logo:
        path = Path(settings.brand_logo)
        content = path.read_bytes()
        logo = Logo(
            content,
            LOGO_TYPES[path.suffix.lower()],
            hashlib.sha256(content).hexdigest()[:16],
        )
    return Branding(settings.brand_name, settings.support_contact, settings.privacy_url, logo)
