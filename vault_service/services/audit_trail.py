"""Reading the audit trail across tickets, for the admin console: a filter (ticket, agent, event,
time), pages found by keyset on the record id (never OFFSET, never the whole table), the export
of what a filter matches, and the chain's verification. Every reading is itself audited."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, select

from ..errors import BadRequest
from ..models import AuditEvent
from ..transactions import read_only, transaction
from . import audit
from .agents import USERNAME_PATTERN
from .lifecycle import TICKET_REF_PATTERN

PAGE_SIZE = 50
# Event names as services/audit.record writes them ("agent.login", "access.granted", ...).
ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}(?:\.[a-z0-9_]{1,31}){0,3}$")


@dataclass(frozen=True)
class AuditFilter:
    """Which records an admin asked for; every part optional, all of them must match."""

    ticket_ref: str | None = None
    agent: str | None = None  # the username of the agent who acted
    action: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # inclusive

    def conditions(self) -> list[ColumnElement[bool]]:
        """The filter as SQL conditions on audit_events."""
        found: list[ColumnElement[bool]] = []
        if self.ticket_ref is not None:
            found.append(AuditEvent.ticket_ref == self.ticket_ref)
        if self.agent is not None:
            found.append(AuditEvent.actor == f"agent:{self.agent}")
        if self.action is not None:
            found.append(AuditEvent.action == self.action)
        if self.since is not None:
            found.append(AuditEvent.occurred_at >= self.since)
        if self.until is not None:
            found.append(AuditEvent.occurred_at <= self.until)
        return found

    def as_args(self) -> dict[str, str]:
        """The filter as the query string the console's form sends (for links and exports)."""
        args = {
            "ticket": self.ticket_ref,
            "agent": self.agent,
            "event": self.action,
            "from": _form_time(self.since),
            "to": _form_time(self.until),
        }
        return {key: value for key, value in args.items() if value}

    def as_details(self) -> dict[str, object]:
        """The filter as an audit record's details (scalars only)."""
        return {f"filter_{key}": value for key, value in self.as_args().items()}


@dataclass(frozen=True)
class AuditPage:
    """One page of records, newest first, and the keys of the pages either side (None: none)."""

    records: list[AuditEvent]
    newer_than: int | None
    older_than: int | None


def _form_time(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S") if value is not None else None


def _parse_time(name: str, value: str) -> datetime:
    """What a datetime-local input sends (or any ISO 8601 time); without an offset, UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"{name}: a date and time such as 2026-01-31T09:00 (UTC).",
            fields={name: "Not a date and time."},
        ) from None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_filter(args: Mapping[str, str]) -> AuditFilter:
    """The filter from a query string; BadRequest naming the field for anything malformed."""

    def text(name: str) -> str | None:
        value = (args.get(name) or "").strip()
        return value or None

    ticket_ref, agent, action = text("ticket"), text("agent"), text("event")
    if ticket_ref is not None and not TICKET_REF_PATTERN.fullmatch(ticket_ref):
        raise BadRequest("Ticket: a ticket reference.", fields={"ticket": "Not a reference."})
    if agent is not None:
        agent = agent.lower()
        if not USERNAME_PATTERN.fullmatch(agent):
            raise BadRequest("Agent: a username.", fields={"agent": "Not a username."})
    if action is not None and not ACTION_PATTERN.fullmatch(action):
        raise BadRequest(
            "Event: an event name such as agent.login.", fields={"event": "Not an event name."}
        )
    since = _parse_time("from", raw) if (raw := text("from")) else None
    until = _parse_time("to", raw) if (raw := text("to")) else None
    if since is not None and until is not None and since > until:
        raise BadRequest("The time range ends before it starts.", fields={"to": "Before from."})
    return AuditFilter(ticket_ref, agent, action, since, until)


def parse_cursor(value: str | None) -> int | None:
    """A page key (a record id) from the query string; BadRequest for anything else."""
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 18:
        raise BadRequest("A page key is a record number.")
    return int(value)


def audit_page(
    wanted: AuditFilter,
    *,
    older_than: int | None = None,
    newer_than: int | None = None,
    size: int = PAGE_SIZE,
) -> AuditPage:
    """A page of matching records, newest first: those just older than `older_than`, or just
    newer than `newer_than`, or the newest. One indexed query of size + 1 rows, whatever the
    trail's length (the extra row says whether another page follows)."""
    statement = select(AuditEvent).where(*wanted.conditions())
    with read_only() as session:
        if newer_than is not None:
            rows = list(
                session.scalars(
                    statement.where(AuditEvent.id > newer_than)
                    .order_by(AuditEvent.id)
                    .limit(size + 1)
                )
            )
            more_newer = len(rows) > size
            records = rows[:size][::-1]
            # Came here from an older page, so one exists.
            return AuditPage(
                records,
                records[0].id if more_newer and records else None,
                records[-1].id if records else newer_than + 1,
            )
        if older_than is not None:
            statement = statement.where(AuditEvent.id < older_than)
        rows = list(session.scalars(statement.order_by(AuditEvent.id.desc()).limit(size + 1)))
    records = rows[:size]
    return AuditPage(
        records,
        # Came here from a newer page, so one exists.
        records[0].id if older_than is not None and records else None,
        records[-1].id if len(rows) > size else None,
    )


def record_reading(what: str, wanted: AuditFilter, *, actor: str, **details: object) -> None:
    """Audit an admin's reading of the trail (a page, an export, a verification), committed
    before anything is shown or sent."""
    # Typed as Any: record()'s keywords besides the details are typed, and none is a key here.
    fields: dict[str, Any] = {**wanted.as_details(), **details}
    with transaction():
        audit.record(f"audit.{what}", actor=actor, **fields)


def export(wanted: AuditFilter, fmt: str) -> Iterator[str]:
    """The matching records in `audit-export`'s format, a line at a time, in keyset batches:
    an export of the whole trail never holds more than one batch in memory."""
    with read_only():
        yield from audit.export_lines(audit.iter_events(where=wanted.conditions()), fmt)


def verify_chain() -> audit.ChainReport:
    """The whole chain walked and recomputed (linear in the trail's length: see README)."""
    with read_only():
        return audit.verify_chain()
