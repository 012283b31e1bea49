"""The texts posted to a help desk and the job kind that posts them (one per connector)."""

from __future__ import annotations

import json
import logging
from typing import Literal, TypedDict

from sqlalchemy import select, update

from ...config import Settings
from ...extensions import db
from ...models import Job, JsonObject
from ...transactions import read_only
from ...vault import Vault
from ..jobs import JobKind
from . import CONNECTORS
from .base import HelpdeskError

log = logging.getLogger(__name__)


def link_reply(url: str, expires_at: str) -> str:
    """The public reply that hands the customer the link."""
    return (
        "To give us the access details this request needs, please use this secure one-time "
        f"form:\n\n{url}\n\nThe link works once and until {expires_at} (UTC). What you enter "
        "is stored encrypted, only agents you can see on its status page can read it, and "
        "everything is deleted when this request is closed. Please do not reply with "
        "passwords by email."
    )


def submitted_note(settings: Settings, payload: JsonObject) -> str:
    """The internal note for a submission: kinds and deadline, never a value."""
    kinds = ", ".join(payload["kinds"])
    return (
        f"vault_service: the customer submitted {len(payload['kinds'])} credential item(s) "
        f"({kinds}). They are kept until {payload['retention_until']} at most, or until this "
        f"ticket closes. Request access: {settings.public_url}/tickets/{payload['ticket_ref']}"
    )


def purged_note(receipt: JsonObject | None) -> str:
    """The internal note for a purge, with its receipt (ids, counts and times only)."""
    receipt = receipt or {}
    return (
        "vault_service: every credential of this ticket was deleted from the vault "
        f"(reason: {receipt.get('reason')}, completed {receipt.get('completed_at')}, "
        f"verified absent in Vault: {receipt.get('verified_absent_in_vault')}).\n\n"
        f"Receipt:\n{json.dumps(receipt, indent=2, sort_keys=True)}"
    )


def _purge_receipt(purge_job_id: str) -> JsonObject | None:
    with read_only() as session:
        return session.scalar(select(Job.result).where(Job.id == purge_job_id))


def _text(settings: Settings, vault: Vault, payload: JsonObject) -> tuple[str, bool]:
    """(text, public) of a note job; the link is decrypted only now, outside any transaction."""
    if payload["message"] == "link":
        url = vault.decrypt_token(payload["url_ciphertext"])
        return link_reply(url, payload["expires_at"]), True
    if payload["message"] == "submitted":
        return submitted_note(settings, payload), False
    return purged_note(_purge_receipt(payload["purge_job_id"])), False


class NotePosted(TypedDict):
    """A note job's result: the help desk took the text."""

    delivered: Literal[True]
    public: bool


class NoteRefused(TypedDict):
    """A note job's result: the help desk refused it for good (not retried)."""

    delivered: Literal[False]
    error: str


NoteOutcome = NotePosted | NoteRefused


def note_job_kind(connector_name: str) -> JobKind[NoteOutcome]:
    """The job kind that posts one connector's replies and notes."""
    connector = CONNECTORS[connector_name]

    def run(settings: Settings, vault: Vault, job: Job) -> NoteOutcome:
        text, public = _text(settings, vault, job.payload)
        try:
            connector.post(settings, job.payload["ticket_ref"], text, public=public)
        except HelpdeskError as error:
            if not error.permanent:
                raise
            log.warning(
                "help desk refused a note for good",
                extra={
                    "fields": {"connector": connector.name, "job_id": job.id, "error": str(error)}
                },
            )
            return {"delivered": False, "error": str(error)}
        return {"delivered": True, "public": public}

    def finish(job: Job, outcome: NoteOutcome) -> NoteOutcome:
        # The link's ciphertext leaves the row the moment the job is done, delivered or not.
        kept = {k: v for k, v in job.payload.items() if k != "url_ciphertext"}
        db.session.execute(update(Job).where(Job.id == job.id).values(payload=kept))
        return outcome

    return JobKind(
        name=f"{connector.name}_note",
        run=run,
        finish=finish,
        # The same cap as the purge's: a help desk back from an outage hears soon after.
        max_backoff_seconds=lambda settings: settings.purge_backoff_max_seconds,
    )
