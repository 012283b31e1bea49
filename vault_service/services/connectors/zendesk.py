"""Zendesk write-back, verified against the Ticketing API's "Ticket Comments" page
(https://developer.zendesk.com/rest_api/docs/core/ticket_comments): comments are created with
the Tickets API, not the Ticket Comments API, "by including a comment object in the ticket
object when creating or updating the ticket": `PUT /api/v2/tickets/{id}.json` with
`{"ticket": {"comment": {"body": ...}}}` and `Content-Type: application/json`, authenticated
with an API token as `-u {email_address}/token:{api_token}` (HTTP basic). `comment.public` is
true for a reply the requester sees and false for an internal note (the comment object's
`public` property). That an update answers 200 with `{"ticket", "audit"}` is from the "Update
Ticket" reference (https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/
#update-ticket), whose text was not available here: we treat any 2xx as posted.
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
