"""The periodic sweep: retention, expired grants and links, due jobs, and orphans in Vault."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from ..clock import utcnow
from ..config import Settings
from ..models import Grant, SubmissionLink, Ticket
from ..transactions import transaction
from ..vault import Vault
from . import audit, events, jobs, lifecycle
from .events import EventType
from .orphans import sweep_orphans

# Expired grants and links handled per pass: a backlog drains over passes, never in one huge one.
SWEEP_BATCH = 500


@dataclass(frozen=True)
class SweepReport:
    """What one sweep found and did; jobs by kind, every registered kind listed."""

    retention_closed: int
    grant_tokens_erased: int
    links_expired: int
    jobs_completed: dict[str, int]
    jobs_failing: dict[str, int]
    orphans_removed: int = 0

    def as_json(self) -> dict[str, int]:
        """Flat counts: per kind `<kind>s_completed` and `<kind>s_failing` ("purges_failing")."""
        counts = {
            "retention_closed": self.retention_closed,
            "grant_tokens_erased": self.grant_tokens_erased,
            "links_expired": self.links_expired,
        }
        for kind in self.jobs_failing:
            # "event_delivery" -> "event_deliveries_failing"
            plural = f"{kind[:-1]}ies" if kind.endswith("y") else f"{kind}s"
            counts[f"{plural}_completed"] = self.jobs_completed[kind]
            counts[f"{plural}_failing"] = self.jobs_failing[kind]
        counts["orphans_removed"] = self.orphans_removed
        return counts


def close_tickets_past_retention(now: datetime) -> int:
    """Close every open ticket whose lease reached its maximum retention; returns how many."""
    with transaction():
        tickets = lifecycle.tickets_past_retention(now)
        for ticket in tickets:
            lifecycle.schedule_purge(
                ticket, lifecycle.PurgeReason.RETENTION_EXPIRED, actor="worker"
            )
    return len(tickets)


def erase_expired_grant_tokens(now: datetime) -> int:
    """An expired grant's token is dead in Vault already; its wrapped copy has no reason to stay."""
    with transaction() as session:
        expired = session.execute(
            select(Grant.id, Grant.lease_id)
            .where(Grant.expires_at <= now, Grant.token_ciphertext.is_not(None))
            .limit(SWEEP_BATCH)
        ).all()
        for grant_id, lease_id in expired:
            session.execute(update(Grant).where(Grant.id == grant_id).values(token_ciphertext=None))
            audit.record(
                "sweep.grant_expired", actor="worker", grant_id=grant_id, lease_id=lease_id
            )
    return len(expired)


def record_expired_links(now: datetime) -> int:
    """Record once each unused link that expired; returns how many."""
    with transaction() as session:
        expired = session.execute(
            select(SubmissionLink.id, Ticket.ref)
            .join(Ticket, Ticket.id == SubmissionLink.ticket_id)
            .where(
                SubmissionLink.expires_at <= now,
                SubmissionLink.consumed_at.is_(None),
                SubmissionLink.expiry_recorded_at.is_(None),
                # A revoked link was ended by the ticket system; it does not expire as well.
                SubmissionLink.revoked_at.is_(None),
            )
            .limit(SWEEP_BATCH)
        ).all()
        for link_id, ticket_ref in expired:
            session.execute(
                update(SubmissionLink)
                .where(SubmissionLink.id == link_id)
                .values(expiry_recorded_at=now)
            )
            audit.record("sweep.link_expired", actor="worker", link_id=link_id)
            events.emit(EventType.LINK_EXPIRED, ticket_ref, link_id=link_id)
    return len(expired)


def sweep(settings: Settings, vault: Vault, *, orphans: bool = True) -> SweepReport:
    """One pass: close tickets past maximum retention, erase expired grant tokens, record expired
    links, run due jobs, and (unless `orphans` is False) remove orphaned Vault material."""
    now = utcnow()
    retention_closed = close_tickets_past_retention(now)
    grant_tokens_erased = erase_expired_grant_tokens(now)
    links_expired = record_expired_links(now)
    completed = jobs.process_due_jobs(settings, vault)
    failing = jobs.failing_counts()
    return SweepReport(
        retention_closed,
        grant_tokens_erased,
        links_expired,
        {kind: completed[kind] for kind in failing},
        failing,
        sweep_orphans(vault).found if orphans else 0,
    )
