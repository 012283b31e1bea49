"""Help-desk connectors (write-back): each module here defines one and exposes `CONNECTOR`.

The three hooks below are called where the change happens, inside its transaction, and add
one job per configured connector to the durable queue (services/job_kinds/<name>_note.py):
the reply or note is posted after the commit, retried until the help desk takes it, and in
order per ticket (ordering key `<connector>:<ticket id>`).
"""

from __future__ import annotations

import importlib
import pkgutil
from datetime import datetime

from ...config import Settings
from ...extensions import current_settings
from ...models import JsonObject
from ...vault import Vault, VaultError
from .. import jobs, lifecycle
from .base import HelpdeskConnector


def _discover() -> dict[str, HelpdeskConnector]:
    found: dict[str, HelpdeskConnector] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name in ("base", "notes"):
            continue
        connector = importlib.import_module(f"{__name__}.{module_info.name}").CONNECTOR
        found[connector.name] = connector
    return found


CONNECTORS = _discover()


def job_kind(connector: HelpdeskConnector) -> str:
    """The job kind that posts for a connector."""
    return f"{connector.name}_note"


def _targets(settings: Settings, ticket_ref: str) -> list[HelpdeskConnector]:
    return [
        connector
        for connector in CONNECTORS.values()
        if connector.is_configured(settings) and connector.addresses(ticket_ref)
    ]


def seal_link(settings: Settings, vault: Vault, ticket_ref: str, url: str) -> str | None:
    """The link's URL encrypted with the app's transit key, before the link's transaction,
    when a connector will post it (None, and no Vault call, otherwise). The job row then holds
    only ciphertext, and only until the reply is posted."""
    if not _targets(settings, ticket_ref):
        return None
    try:
        return vault.encrypt_token(url)
    except VaultError as error:
        from ...errors import ServiceUnavailable

        raise ServiceUnavailable(
            "The secure store is unavailable; no link was created. Please retry."
        ) from error


def _enqueue(ticket_ref: str, ticket_id: str | None, payload: JsonObject) -> None:
    settings = current_settings()
    targets = _targets(settings, ticket_ref)
    if not targets:
        return
    if ticket_id is None:
        ticket = lifecycle.get_ticket(ticket_ref)
        if ticket is None:  # the hooks run inside the transaction that changes the ticket
            raise LookupError(f"no ticket {ticket_ref!r} to post a note to")
        ticket_id = ticket.id
    for connector in targets:
        jobs.enqueue(
            job_kind(connector),
            {"ticket_ref": ticket_ref, **payload},
            ticket_id=ticket_id,
            ordering_key=f"{connector.name}:{ticket_id}",
        )


def enqueue_link_reply(
    ticket_ref: str, ticket_id: str, sealed_url: str | None, expires_at: datetime
) -> None:
    """In the link's transaction: reply to the customer with the link (when it was sealed)."""
    if sealed_url is not None:
        payload = {"message": "link", "url_ciphertext": sealed_url}
        _enqueue(ticket_ref, ticket_id, {**payload, "expires_at": expires_at.isoformat()})


def enqueue_submitted_note(ticket_ref: str, kinds: list[str], retention_until: datetime) -> None:
    """In the submission's transaction: an internal note saying what arrived (kinds only)."""
    until = retention_until.isoformat()
    _enqueue(ticket_ref, None, {"message": "submitted", "kinds": kinds, "retention_until": until})


def enqueue_purged_note(ticket_ref: str, ticket_id: str, purge_job_id: str) -> None:
    """In the purge's completing transaction: an internal note with the receipt."""
    _enqueue(ticket_ref, ticket_id, {"message": "purged", "purge_job_id": purge_job_id})
