"""Zammad write-back, as documented in the REST API "Ticket Articles" > "Create" (POST
/api/v1/ticket_articles, https://docs.zammad.org/en/latest/api/ticket/articles.html) with
`internal` false for an article the customer sees, true for an internal note, authenticated
with an access token (`Authorization: Token token=<token>`, "Authentication",
https://docs.zammad.org/en/latest/api/intro.html), Zammad 6.x; endpoint and auth as we know
them, not re-read in full in 2026-11: re-check the article payload against the reference.
"""

from __future__ import annotations

import requests

from ...config import Settings
from .base import HelpdeskConnector, check_response


class ZammadConnector(HelpdeskConnector):
    """Customer-visible and internal note articles on Zammad tickets."""

    name = "zammad"

    def is_configured(self, settings: Settings) -> bool:
        return bool(settings.zammad_url and settings.zammad_token)

    def addresses(self, ticket_ref: str) -> bool:
        return ticket_ref.isdigit()

    def post(self, settings: Settings, ticket_ref: str, text: str, *, public: bool) -> None:
        response = requests.post(
            f"{settings.zammad_url}/api/v1/ticket_articles",
            json={
                "ticket_id": int(ticket_ref),
                "body": text,
                "content_type": "text/plain",
                "type": "note",
                "internal": not public,
            },
            headers={"Authorization": f"Token token={settings.zammad_token}"},
            timeout=settings.helpdesk_timeout_seconds,
        )
        check_response("Zammad", response)


CONNECTOR = ZammadConnector()
