"""Zendesk write-back, as documented in the Ticketing API reference "Tickets" > "Update Ticket"
(PUT /api/v2/tickets/{ticket_id}, https://developer.zendesk.com/api-reference/ticketing/
tickets/tickets/#update-ticket) with a `comment` (`public` true for a reply the requester
sees, false for an internal note), authenticated as documented in "API token" (basic auth,
`{email}/token:{api_token}`; https://developer.zendesk.com/api-reference/introduction/
security-and-auth/); endpoint and auth as we know them, not re-read in full in 2026-11:
re-check the comment payload against the reference).
"""

from __future__ import annotations

import requests

from ...config import Settings
from .base import HelpdeskConnector, check_response


def api_url(settings: Settings) -> str:
    """The account's API base: https://<subdomain>.zendesk.com unless overridden."""
    return settings.zendesk_api_url or f"https://{settings.zendesk_subdomain}.zendesk.com"


class ZendeskConnector(HelpdeskConnector):
    """Public replies and internal notes on Zendesk tickets."""

    name = "zendesk"

    def is_configured(self, settings: Settings) -> bool:
        return bool(
            settings.zendesk_subdomain and settings.zendesk_email and settings.zendesk_api_token
        )

    def addresses(self, ticket_ref: str) -> bool:
        return ticket_ref.isdigit()

    def post(self, settings: Settings, ticket_ref: str, text: str, *, public: bool) -> None:
        response = requests.put(
            f"{api_url(settings)}/api/v2/tickets/{ticket_ref}.json",
            json={"ticket": {"comment": {"body": text, "public": public}}},
            auth=(f"{settings.zendesk_email}/token", settings.zendesk_api_token),
            timeout=settings.helpdesk_timeout_seconds,
        )
        check_response("Zendesk", response)


CONNECTOR = ZendeskConnector()
