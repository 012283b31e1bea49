"""The customer's status page, `/r/<token>`: what was received, who looked and why, until when,
and "delete now", which closes the ticket exactly as the ticket system's close webhook does.

The token is a second capability, issued once with the submission and stored only as a keyed
hash. Unknown, wrong and expired tokens all raise the same StatusPageNotFound, so an answer never
says which of them a token was.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypedDict, cast
from urllib.parse import urlsplit

from sqlalchemy import Connection, Row, insert, select

from ..clock import utcnow
from ..config import Settings
from ..errors import StatusPageNotFound
from ..kinds import kind_label
from ..models import (
    LEASES,
    LINKS,
    LIVE_LEASE_STATES,
    STATUS_TOKENS,
    TICKETS,
    Agent,
    AuditEvent,
    Grant,
    Job,
    JsonObject,
    LeaseStatus,
    Receipt,
    new_uuid,
)
from ..transactions import read_only, transaction
from . import capabilities
from .lifecycle import PURGE_JOB, PurgeReason, close_ticket
from .receipts import PurgeReceipt

# 256 bits, as link tokens: far beyond guessing (the contract asks for at least 128).
STATUS_TOKEN_BYTES = 32
# Longer than any token we issue; a longer one is refused before it is hashed.
MAX_TOKEN_LENGTH = 128
# How long the confirmation step of "delete now" stays valid: long enough to read the page and
# decide, short enough that a nonce copied out of a page soon stops working.
DELETE_CONFIRM_SECONDS = 15 * 60
# A nonce stamped a little in the future is accepted: several app processes behind a load
# balancer may disagree about the time by a few seconds.
CLOCK_SKEW_SECONDS = 60
CUSTOMER = "customer"

# A status token's row joined with its lease and ticket (_find); Core table columns are untyped.
_PageRow = Row[*tuple[Any, ...]]

# What the customer is told about the state of their credentials, from their lease's status.
_STATES = {
    LeaseStatus.PROVISIONING: "open",
    LeaseStatus.ACTIVE: "open",
    LeaseStatus.PURGING: "closing",
    LeaseStatus.PURGED: "purged",
}


_key = capabilities.derived_key


def _status_token_hash(secret_key: str, token: str) -> str:
    return capabilities.token_hash(secret_key, b"status-token/v1", token)


def hash_status_token(settings: Settings, token: str) -> str:
    """Keyed hash of a status token: a stolen database cannot be turned back into status pages."""
    return _status_token_hash(settings.signing_key, token)


def status_token_hashes(settings: Settings, token: str) -> list[str]:
    """The token's hash under every configured secret key, for a lookup (as link tokens: tried
    against each key, so a page issued before a rotation opens while its key stays listed)."""
    return capabilities.token_hashes(settings, b"status-token/v1", token)


def status_url(settings: Settings, token: str) -> str:
    """The customer's status page URL for a token."""
    return f"{settings.public_url}/r/{token}"


def new_status_token(settings: Settings) -> tuple[str, str]:
    """A fresh token and its keyed hash; the token itself is given to the customer once."""
    token = secrets.token_urlsafe(STATUS_TOKEN_BYTES)
    return token, hash_status_token(settings, token)


_INSERT_STATUS_TOKEN = insert(STATUS_TOKENS)


def record_status_token(
    connection: Connection,
    token_hash: str,
    *,
    link_id: str,
    lease_id: str,
    items: list[tuple[str, str]],
    now: datetime,
) -> None:
    """In the submission's transaction: the status page of what it stored (ids and kinds)."""
    connection.execute(
        _INSERT_STATUS_TOKEN,
        {
            "id": new_uuid(),
            "token_hash": token_hash,
            "link_id": link_id,
            "lease_id": lease_id,
            "items": [{"id": item_id, "kind": kind} for item_id, kind in items],
            "created_at": now,
        },
    )


def _find(settings: Settings, connection: Connection, token: str, *, lock: bool) -> _PageRow:
    """The token's row with its lease and ticket; StatusPageNotFound for every other case."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise StatusPageNotFound()
    query = (
        select(
            STATUS_TOKENS.c.lease_id,
            # Subscripted: `.c.items` is the column collection's own items() method.
            STATUS_TOKENS.c["items"].label("received_items"),
            STATUS_TOKENS.c.created_at,
            LEASES.c.status.label("lease_status"),
            LEASES.c.expires_at.label("retention_until"),
            LEASES.c.purged_at,
            TICKETS.c.ref.label("ticket_ref"),
            # The language the ticket system chose for the form: the status page speaks it too.
            LINKS.c.locale.label("link_locale"),
        )
        .join(LEASES, LEASES.c.id == STATUS_TOKENS.c.lease_id)
        .join(TICKETS, TICKETS.c.id == LEASES.c.ticket_id)
        .join(LINKS, LINKS.c.id == STATUS_TOKENS.c.link_id)
        .where(STATUS_TOKENS.c.token_hash.in_(status_token_hashes(settings, token)))
    )
    if lock:
        # Orders a deletion against the close webhook and a reveal, which lock the lease too.
        query = query.with_for_update(of=LEASES)
    row = connection.execute(query).first()
    if row is None or not _still_shown(settings, row.purged_at, utcnow()):
        raise StatusPageNotFound()
    return row


def _still_shown(settings: Settings, purged_at: datetime | None, now: datetime) -> bool:
    """A page answers until the documented time after its purge, then like an unknown token."""
    if purged_at is None:
        return True
    return now < purged_at + timedelta(seconds=settings.status_page_retention_seconds)


@dataclass(frozen=True)
class Access:
    """One agent's grant on the credentials, with the reveals it made of them."""

    agent: str
    reason: str
    granted_at: datetime
    expires_at: datetime
    revealed_at: list[datetime] = field(default_factory=list)

    def as_json(self) -> JsonObject:
        return {
            "agent": self.agent,
            "reason": self.reason,
            "granted_at": self.granted_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "revealed_at": [moment.isoformat() for moment in self.revealed_at],
        }


class ReceivedItem(TypedDict):
    """One item the customer submitted, as the page names it (never its value)."""

    kind: str
    label: str


@dataclass(frozen=True)
class StatusReport:
    """What the status page shows: never a submitted value."""

    ticket_ref: str
    state: str
    received_at: datetime
    items: list[ReceivedItem]
    accesses: list[Access]
    retention_until: datetime
    purge_reason: str | None
    purge_completed_at: datetime | None
    receipt: PurgeReceipt | None
    # The same receipt signed by Vault (compact JWS): what the customer keeps and anyone verifies.
    receipt_jws: str | None
    available_until: datetime | None
    # The submission link's language tag (for the page's language only; never in the JSON).
    locale: str | None = None

    def as_json(self) -> JsonObject:
        return {
            "ticket_ref": self.ticket_ref,
            "state": self.state,
            "received_at": self.received_at.isoformat(),
            "items": self.items,
            "accesses": [access.as_json() for access in self.accesses],
            "retention_until": self.retention_until.isoformat(),
            "purge_reason": self.purge_reason,
            "purged_at": _iso(self.purge_completed_at),
            "receipt": self.receipt,
            "receipt_jws": self.receipt_jws,
            "available_until": _iso(self.available_until),
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _agent_name(username: str, display_name: str | None = None) -> str:
    """How the customer sees an agent: the display name, else the username."""
    return display_name or username


def _accesses(connection: Connection, row: _PageRow) -> list[Access]:
    """Every grant that could reach these items, each with its reveals of them (from the
    audit trail, which records the item ids a reveal read)."""
    received_at = row.created_at
    grants = connection.execute(
        select(Grant.id, Grant.reason, Grant.created_at, Grant.expires_at, Grant.revoked_at)
        .add_columns(Agent.username)
        .join(Agent, Agent.id == Grant.agent_id)
        .where(Grant.lease_id == row.lease_id, Grant.expires_at > received_at)
        .order_by(Grant.created_at)
    ).all()
    # A grant that ended before the submission arrived never reached these items.
    grants = [g for g in grants if g.revoked_at is None or g.revoked_at > received_at]
    if not grants:
        return []
    item_ids = {item["id"] for item in row.received_items}
    reveals: dict[str, list[datetime]] = {grant.id: [] for grant in grants}
    events = connection.execute(
        select(AuditEvent.occurred_at, AuditEvent.details)
        .where(
            AuditEvent.action == "credentials.revealed",
            AuditEvent.outcome == "success",
            AuditEvent.ticket_ref == row.ticket_ref,
        )
        .order_by(AuditEvent.id)
    ).all()
    for occurred_at, details in events:
        grant_id = details.get("grant_id")
        if grant_id in reveals and item_ids & set(details.get("item_ids") or ()):
            reveals[grant_id].append(occurred_at)
    return [
        Access(_agent_name(g.username), g.reason, g.created_at, g.expires_at, reveals[g.id])
        for g in grants
    ]


def _purge_job(
    connection: Connection, lease_id: str
) -> Row[JsonObject, JsonObject | None, datetime | None, str | None] | None:
    """The lease's purge job (at most one: its dedupe key is the lease id) and, once it is done,
    its signed receipt (one per lease)."""
    return connection.execute(
        select(Job.payload, Job.result, Job.completed_at, Receipt.jws)
        .outerjoin(Receipt, Receipt.lease_id == Job.dedupe_key)
        .where(Job.kind == PURGE_JOB, Job.dedupe_key == lease_id)
    ).first()


def read_status(settings: Settings, token: str) -> StatusReport:
    """Everything the status page shows, read in one transaction."""
    with read_only() as session:
        connection = session.connection()
        row = _find(settings, connection, token, lock=False)
        accesses = _accesses(connection, row)
        job = _purge_job(connection, row.lease_id)
    kinds = [item["kind"] for item in row.received_items]
    items = [ReceivedItem(kind=kind, label=kind_label(kind)) for kind in kinds]
    available_until = None
    if row.purged_at is not None:
        available_until = row.purged_at + timedelta(seconds=settings.status_page_retention_seconds)
    return StatusReport(
        ticket_ref=row.ticket_ref,
        state=_STATES[row.lease_status],
        received_at=row.created_at,
        items=items,
        accesses=accesses,
        retention_until=row.retention_until,
        purge_reason=job.payload.get("reason") if job else None,
        purge_completed_at=row.purged_at,
        # A done purge job's result is its receipt (services/purge.py record_purge).
        receipt=cast(PurgeReceipt, job.result) if job and job.completed_at else None,
        receipt_jws=job.jws if job and job.completed_at else None,
        available_until=available_until,
        locale=row.link_locale,
    )


def require_status_token(settings: Settings, token: str) -> None:
    """StatusPageNotFound unless the token opens a page now (checked before anything else)."""
    with read_only() as session:
        _find(settings, session.connection(), token, lock=False)


@dataclass(frozen=True)
class DeleteAnswer:
    """What "delete now" answers, the same every time it is asked again."""

    status: str  # "deleting" until the purge is done, then "deleted"
    reason: str  # why the purge runs: customer_deleted, or the close that came first
    locale: str | None = None  # the submission link's language tag, for the page only

    @property
    def http_status(self) -> int:
        return 202 if self.status == "deleting" else 200

    def as_json(self) -> JsonObject:
        return {"status": self.status, "reason": self.reason}


def delete_now(settings: Settings, token: str) -> DeleteAnswer:
    """Close the ticket for the customer, in one transaction, as the close webhook does:
    reveals refused from the commit on, a durable purge job, a receipt saying customer_deleted.

    Idempotent: once the credentials are purging or purged (by this, or by the ticket system's
    close that came first) nothing more is done and the answer says where the purge stands.
    """
    with transaction() as session:
        connection = session.connection()
        row = _find(settings, connection, token, lock=True)
        if row.lease_status in LIVE_LEASE_STATES:
            # The lease is live only while its ticket is open (a close moves every live lease
            # to purging, a reopen makes a new lease): this closes exactly that ticket.
            close_ticket(row.ticket_ref, actor=CUSTOMER, reason=PurgeReason.CUSTOMER_DELETED)
            return DeleteAnswer("deleting", PurgeReason.CUSTOMER_DELETED.value, row.link_locale)
        job = _purge_job(connection, row.lease_id)
    done = row.lease_status == LeaseStatus.PURGED
    reason = job.payload.get("reason") if job else PurgeReason.CUSTOMER_DELETED.value
    return DeleteAnswer("deleted" if done else "deleting", reason, row.link_locale)


def delete_nonce(settings: Settings, token: str, now: datetime) -> str:
    """The confirmation form's nonce: an HMAC of the token and the time, under the secret key."""
    stamp = int(now.timestamp())
    return f"{stamp}.{_nonce_mac(settings.signing_key, token, stamp)}"


def _nonce_mac(secret_key: str, token: str, stamp: int) -> str:
    message = f"{stamp}.{token}".encode()
    key = _key(secret_key, b"status-delete-nonce/v1")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def check_delete_nonce(settings: Settings, token: str, nonce: object, now: datetime) -> bool:
    """Whether the nonce was made by us for this token, and recently."""
    if not isinstance(nonce, str) or len(nonce) > 100:
        return False
    stamp_text, _, mac = nonce.partition(".")
    if not stamp_text.isdigit():
        return False
    stamp = int(stamp_text)
    # Any configured key: a confirmation page rendered just before a rotation still confirms.
    matched = False
    for key in settings.secret_keys:
        matched |= hmac.compare_digest(mac, _nonce_mac(key, token, stamp))
    if not matched:
        return False
    age = now.timestamp() - stamp
    return -CLOCK_SKEW_SECONDS <= age < DELETE_CONFIRM_SECONDS


def public_origin(settings: Settings) -> str:
    """The origin (scheme://host[:port]) of the public URL, as a browser sends it in Origin."""
    parts = urlsplit(settings.public_url)
    return f"{parts.scheme}://{parts.netloc}".lower()
