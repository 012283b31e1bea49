"""Append-only, hash-chained audit trail. Records carry ids and outcomes, never secret values."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import ColumnElement, insert, select, text

from .. import metrics
from ..clock import utcnow
from ..extensions import db
from ..models import EVENTS, AuditEvent
from ..request_context import request_origin

log = logging.getLogger("vault_service.audit")

GENESIS_HASH = "0" * 64
# Any constant works; it names the one PostgreSQL advisory lock that serialises appends.
_CHAIN_LOCK_KEY = 0x5641554C54  # "VAULT"

_SAFE_VALUE_TYPES = (str, int, float, bool, type(None))

_CHAIN_HEAD = select(EVENTS.c.hash).order_by(EVENTS.c.id.desc()).limit(1)
_APPEND = insert(EVENTS)
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
# What a record holds besides its id, in chain order: written once, hashed, exported.
RECORD_FIELDS = (
    "occurred_at",
    "actor",
    "action",
    "outcome",
    "ticket_ref",
    "details",
    "prev_hash",
    "hash",
)


def canonical_json(value: object) -> str:
    """Stable JSON: the same record always hashes the same."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compute_hash(event: AuditEvent) -> str:
    """The chain hash of a record: covers its content and its predecessor's hash."""
    payload = {
        "prev_hash": event.prev_hash,
        "occurred_at": event.occurred_at.isoformat(),
        "actor": event.actor,
        "action": event.action,
        "outcome": event.outcome,
        "ticket_ref": event.ticket_ref,
        "details": event.details,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def _check_details(details: dict[str, object]) -> None:
    """Refuse anything but scalars: a record must never carry an object that could hold a secret."""
    for key, value in details.items():
        values = value if isinstance(value, list | tuple) else [value]
        if not all(isinstance(v, _SAFE_VALUE_TYPES) for v in values):
            raise TypeError(f"audit detail {key!r} must be a scalar or a list of scalars")


def record(
    action: str,
    *,
    actor: str,
    outcome: str = "success",
    ticket_ref: str | None = None,
    **details: object,
) -> AuditEvent:
    """Append an event inside the caller's transaction; it exists only if the caller commits."""
    # Where the request came from, for every record written while handling one (the worker and
    # the CLI have no request, and their records carry none): one place, not every call site.
    details = {**details, **{k: v for k, v in request_origin().items() if v is not None}}
    _check_details(details)
    # Core statements on the session's connection: a record is never changed once written, so
    # it needs no place in the unit of work, and the ORM's per-statement machinery would cost
    # every audited request a measurable share of its own time (README "Performance").
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        # Serialise appenders so two transactions never read the same chain head. SQLite needs
        # nothing: its transactions begin IMMEDIATE, one writer at a time.
        connection.execute(_ADVISORY_LOCK, {"key": _CHAIN_LOCK_KEY})
    head = connection.execute(_CHAIN_HEAD).scalar()
    event = AuditEvent(
        occurred_at=utcnow(),
        actor=actor,
        action=action,
        outcome=outcome,
        ticket_ref=ticket_ref,
        details={key: list(v) if isinstance(v, tuple) else v for key, v in details.items()},
        prev_hash=head or GENESIS_HASH,
    )
    event.hash = compute_hash(event)
    row = {field: getattr(event, field) for field in RECORD_FIELDS}
    inserted = connection.execute(_APPEND, row)
    # Always set for a single-row INSERT without RETURNING (SQLAlchemy types it Optional).
    event.id = cast(tuple[int], inserted.inserted_primary_key)[0]
    # Counted where the record is written: every reveal and grant, granted or refused, passes
    # here. (A caller's transaction that then rolls back still counts: metrics are not audit.)
    metrics.count_audit_event(action, outcome)
    log.info(
        "audit",
        extra={
            "fields": {
                "action": action,
                "actor": actor,
                "outcome": outcome,
                "ticket_ref": ticket_ref,
                **event.details,
            }
        },
    )
    return event


@dataclass(frozen=True)
class ChainReport:
    """The outcome of walking the chain."""

    records: int
    first_bad_id: int | None
    problem: str | None
    head_hash: str

    @property
    def ok(self) -> bool:
        return self.first_bad_id is None


def iter_events(
    batch: int = 500, where: Sequence[ColumnElement[bool]] = ()
) -> Iterator[AuditEvent]:
    """Every record (matching `where`) in chain order, in keyset batches (the trail can be long)."""
    last_id = 0
    while True:
        rows = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.id > last_id, *where)
            .order_by(AuditEvent.id)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id


def verify_chain() -> ChainReport:
    """Recompute every hash and link; name the first record that was edited, removed or moved."""
    expected_prev = GENESIS_HASH
    count = 0
    for event in iter_events():
        count += 1
        if event.prev_hash != expected_prev:
            return ChainReport(
                count, event.id, "does not follow the previous record", expected_prev
            )
        if compute_hash(event) != event.hash:
            return ChainReport(count, event.id, "content does not match its hash", expected_prev)
        expected_prev = event.hash
    return ChainReport(count, None, None, expected_prev)


# The export's columns, in order: the record's id, then what the chain hashes.
EXPORT_COLUMNS = ("id", *RECORD_FIELDS)
EXPORT_FORMATS = ("jsonl", "csv")


def _export_row(event: AuditEvent) -> dict[str, object]:
    row = {column: getattr(event, column) for column in EXPORT_COLUMNS}
    row["occurred_at"] = event.occurred_at.isoformat()
    return row


def _csv_line(values: Iterable[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


def export_lines(events: Iterable[AuditEvent], fmt: str) -> Iterator[str]:
    """The export format `audit-export` writes and the admin console serves, line by line: JSON
    Lines (one sorted-key object a record), or CSV with a header row and `details` as JSON."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    if fmt == "csv":
        yield _csv_line(EXPORT_COLUMNS)
    for event in events:
        row = _export_row(event)
        if fmt == "csv":
            yield _csv_line(
                json.dumps(row[c], sort_keys=True) if c == "details" else row[c]
                for c in EXPORT_COLUMNS
            )
        else:
            yield json.dumps(row, sort_keys=True) + "\n"
