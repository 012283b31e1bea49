"""Zammad write-back, verified against the REST API documentation in
zammad/zammad-documentation: api/ticket/articles.rst ("Create": `POST /api/v1/ticket_articles`
with `ticket_id`, `body`, `content_type` (`text/plain` or `text/html`), `type` and `internal`,
answered `201 Created` with the article; https://docs.zammad.org/en/latest/api/ticket/
articles.html) and api/intro.rst ("HTTP Token Authentication": `Authorization: Token
token={your_token}`; "provide the content type application/json").

Type `note` is, per that page, for "when ever a communication does not fit (e.g.: internal
notes)" and "not a communication article": with `internal: false` the customer sees it in
Zammad's customer portal, but Zammad does not e-mail it (the README says how to add a trigger
that does). An e-mail article would need the customer's address and `type: email`.
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
