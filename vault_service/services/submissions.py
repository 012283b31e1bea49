"""Customer submissions: store validated credentials in Vault, consume the link once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

from sqlalchemy import Connection, bindparam, insert, select, update

from .. import failpoints
from ..clock import utcnow
from ..config import Settings
from ..errors import LinkGone, ServiceUnavailable
from ..kinds.notes import NOTES, NOTES_FIELD
from ..kinds.validation import CredentialInput, validate_submission
from ..models import ITEMS, LEASES, LINKS, TICKETS, Lease, LinkState, Ticket, new_uuid
from ..transactions import read_only, transaction
from ..vault import Vault, VaultError
from . import audit, connectors, events, status_page
from .events import EventType
from .lifecycle import is_serving, link_state
from .tickets import link_token_hashes

log = logging.getLogger(__name__)

# The submission's statements run as Core on the session's connection (the models' table
# handles): they read and write plain values, and the ORM's per-statement machinery would be most
# of a submission's own cost.


@dataclass(frozen=True)
class UsableLink:
    """A link that can still take a submission, read as plain values (no ORM entity to
    reload once the read transaction ends, which it does before any Vault call)."""

    id: str
    lease_id: str
    ticket_id: str
    ticket_ref: str
    expires_at: datetime
    # What the ticket system asked to show the customer, and in which language (None: not set).
    message: str | None = None
    locale: str | None = None


# The statements every submission runs, built once with their values bound per call (building
# them cost more CPU than SQLite takes to run them; see lifecycle.py).
_LINK_BY_HASH = (
    select(
        LINKS.c.id,
        LINKS.c.lease_id,
        LINKS.c.ticket_id,
        TICKETS.c.ref,
        LINKS.c.expires_at,
        LINKS.c.consumed_at,
        LINKS.c.revoked_at,
        LINKS.c.message,
        LINKS.c.locale,
        LEASES.c.status.label("lease_status"),
        TICKETS.c.status.label("ticket_status"),
    )
    .join(LEASES, LEASES.c.id == LINKS.c.lease_id)
    .join(TICKETS, TICKETS.c.id == LINKS.c.ticket_id)
    .where(LINKS.c.token_hash.in_(bindparam("hashes", expanding=True)))
)
_LOCK_SERVING_LEASE = (
    select(LEASES.c.status, LEASES.c.expires_at, TICKETS.c.status)
    .join(TICKETS, LEASES.c.ticket_id == TICKETS.c.id)
    .where(LEASES.c.id == bindparam("lease_id"))
    .with_for_update(of=LEASES)
)
_TAKE_LINK = (
    update(LINKS)
    .where(
        LINKS.c.id == bindparam("link_id"),
        LINKS.c.consumed_at.is_(None),
        # A revocation that lands while this post writes to Vault wins: the post is refused
        # (410) and deletes what it wrote.
        LINKS.c.revoked_at.is_(None),
        LINKS.c.expires_at > bindparam("received_at"),
    )
    .values(consumed_at=bindparam("now"))
)
_INSERT_ITEMS = insert(ITEMS)


def find_usable_link(settings: Settings, token: str) -> UsableLink:
    """The link for a token if it can still take a submission; one LinkGone for every other case."""
    if not token or len(token) > 128:
        raise LinkGone()
    with read_only() as session:
        hashes = link_token_hashes(settings, token)
        row = session.connection().execute(_LINK_BY_HASH, {"hashes": hashes}).first()
    if row is None:
        raise LinkGone()
    serving = is_serving(row.lease_status, row.ticket_status)
    if link_state(row, utcnow(), serving=serving) != LinkState.OPEN:
        raise LinkGone()
    return UsableLink(
        row.id, row.lease_id, row.ticket_id, row.ref, row.expires_at, row.message, row.locale
    )


def _discard_written(vault: Vault, lease_id: str, item_ids: list[str]) -> None:
    """Best effort: remove what this submission wrote. Anything this misses stays under the
    lease's path, which the purge lists from Vault itself, so it goes at close or retention."""
    for item_id in item_ids:
        try:
            vault.delete_item(lease_id, item_id)
        except VaultError:
            log.warning(
                "could not discard item after a failed submission",
                extra={"fields": {"lease_id": lease_id, "item_id": item_id}},
            )


def _fail_submission(
    link: UsableLink, error: VaultError, *, discard: list[str], vault: Vault
) -> NoReturn:
    """Undo what a failed submission wrote and say why: 410 if the ticket closed under it,
    503 (retry: the link was never consumed) if Vault failed."""
    _discard_written(vault, link.lease_id, discard)
    with read_only() as session:
        state = session.execute(
            select(Lease.status, Ticket.status)
            .join(Ticket, Lease.ticket_id == Ticket.id)
            .where(Lease.id == link.lease_id)
        ).one_or_none()
    if state is None or not is_serving(*state):
        # The close won the race and its purge destroyed the key under us: the link is gone
        # for good, so say so (410), not "retry later" (503).
        raise LinkGone() from error
    log.warning(
        "submission not stored: vault error",
        extra={"fields": {"link_id": link.id, "error": str(error)}},
    )
    raise ServiceUnavailable() from error


@dataclass(frozen=True)
class SubmissionReceipt:
    """What the customer is told: how many items were stored, and until when at most."""

    ticket_ref: str
    item_count: int
    kinds: list[str]
    retention_until: str
    # The customer's status page (a capability: shown to them once, stored only hashed).
    status_url: str


def _lock_serving_lease(connection: Connection, lease_id: str) -> datetime | None:
    """Lock the lease row; its retention end if it and its ticket still take submissions.

    The lock orders this against a close (which locks it too) on PostgreSQL; SQLite's
    IMMEDIATE transaction already admits one writer at a time.
    """
    state = connection.execute(_LOCK_SERVING_LEASE, {"lease_id": lease_id}).one_or_none()
    if state is None or not is_serving(state[0], state[2]):
        return None
    expires_at: datetime = state[1]  # a Core column: typed by the model, not by the table
    return expires_at


def _take_link(
    connection: Connection, link: UsableLink, received_at: datetime, now: datetime
) -> bool:
    """Consume the link unless another post did. The guard decides the race between posts:
    only one can move consumed_at off NULL. The expiry is judged at arrival, so a post that
    started in time is not refused for Vault's latency."""
    values = {"link_id": link.id, "received_at": received_at, "now": now}
    return connection.execute(_TAKE_LINK, values).rowcount == 1


def _record_items(
    connection: Connection,
    link: UsableLink,
    stored: list[tuple[str, CredentialInput]],
    now: datetime,
) -> None:
    connection.execute(
        _INSERT_ITEMS,
        [
            {
                "id": item_id,
                "lease_id": link.lease_id,
                "link_id": link.id,
                "kind": item.kind,
                "position": position,
                "created_at": now,
            }
            for position, (item_id, item) in enumerate(stored)
        ],
    )


def _consume_link(
    link: UsableLink,
    received_at: datetime,
    stored: list[tuple[str, CredentialInput]],
    client: str,
    settings: Settings,
) -> SubmissionReceipt | None:
    """One transaction, after the Vault writes: consume the link if no other post did and the
    ticket is still open, record the items, the status page and the audit event. None if the
    post lost."""
    now = utcnow()
    status_token, status_hash = status_page.new_status_token(settings)
    with transaction() as session:
        connection = session.connection()
        retention_until = _lock_serving_lease(connection, link.lease_id)
        if retention_until is None or not _take_link(connection, link, received_at, now):
            return None  # nothing was written: the commit ends an empty transaction
        _record_items(connection, link, stored, now)
        kinds = [item.kind for _, item in stored]
        status_page.record_status_token(
            connection,
            status_hash,
            link_id=link.id,
            lease_id=link.lease_id,
            items=[(item_id, item.kind) for item_id, item in stored],
            now=now,
        )
        audit.record(
            "submission.received",
            actor=client,
            ticket_ref=link.ticket_ref,
            link_id=link.id,
            item_count=len(stored),
            kinds=kinds,
        )
        events.emit(
            EventType.CREDENTIALS_SUBMITTED,
            link.ticket_ref,
            ticket_id=link.ticket_id,
            link_id=link.id,
            kinds=kinds,
            item_count=len(stored),
            retention_until=retention_until,
        )
        connectors.enqueue_submitted_note(link.ticket_ref, kinds, retention_until)
    return SubmissionReceipt(
        link.ticket_ref,
        len(stored),
        kinds,
        retention_until.isoformat(),
        status_page.status_url(settings, status_token),
    )


def submit_credentials(
    settings: Settings, vault: Vault, token: str, payload: object, *, client: str = "customer"
) -> SubmissionReceipt:
    """Store a submission in Vault under the link's lease, then consume the link atomically.

    Nothing is held while Vault works: no database transaction and no claim on the link. Two
    posts racing on one link both write; the one whose transaction consumes the link wins and
    the other deletes what it wrote (410). A post that fails or crashes midway leaves the link
    usable at once; an item it could not delete sits under the lease's path in Vault, which the
    purge lists, and no database row names it.
    """
    received_at = utcnow()
    link = find_usable_link(settings, token)
    submission = validate_submission(payload)

    to_store = list(submission.items)
    if submission.notes:
        to_store.append(CredentialInput(NOTES.name, {NOTES_FIELD.name: submission.notes}))
    item_ids = [new_uuid() for _ in to_store]
    try:
        ciphertexts = vault.encrypt_items(link.lease_id, [item.plaintext() for item in to_store])
    except VaultError as error:
        _fail_submission(link, error, discard=[], vault=vault)
    try:
        vault.write_items(link.lease_id, list(zip(item_ids, ciphertexts, strict=True)))
    except VaultError as error:
        # Some writes may have landed; deleting an item that was never written is a no-op.
        _fail_submission(link, error, discard=item_ids, vault=vault)
    failpoints.hit("submission.after_vault_writes")

    receipt = _consume_link(
        link, received_at, list(zip(item_ids, to_store, strict=True)), client, settings
    )
    if receipt is None:
        # Another post consumed the link first, or the close won the race (its purge may
        # already have listed the lease's path): what this post wrote must go.
        _discard_written(vault, link.lease_id, item_ids)
        raise LinkGone()
    return receipt
