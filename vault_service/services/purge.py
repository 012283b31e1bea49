"""Closing a ticket and purging everything of it from Vault, durably and verifiably."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, or_, select, update

from .. import failpoints
from ..clock import utcnow
from ..config import Settings
from ..extensions import db, release_transaction
from ..models import CredentialItem, Grant, Lease, PurgeJob, SubmissionLink, Ticket
from ..vault import Vault, VaultError, lease_key_name
from . import audit
from . import orphans as orphans_module
from .tickets import get_ticket

log = logging.getLogger(__name__)

# A job is held this long by the worker that claimed it; a crashed worker's job is retried after.
JOB_LOCK_SECONDS = 300
RETENTION_REASON = "retention_expired"
# Expired grants and links handled per pass: a backlog drains over passes, never in one huge one.
SWEEP_BATCH = 500


def _schedule_purge(ticket: Ticket, reason: str, actor: str) -> list[str]:
    """Mark the ticket closing and enqueue a purge of each unpurged lease (caller commits).

    From this commit on, no reveal succeeds: reveals check the lease state under its row lock.
    """
    now = utcnow()
    leases = db.session.scalars(
        select(Lease)
        .where(Lease.ticket_id == ticket.id, Lease.status.in_(("provisioning", "active")))
        .with_for_update()
    ).all()
    ticket.status = "closing"
    ticket.closed_at = now
    job_ids = []
    for lease in leases:
        lease.status = "purging"
        db.session.execute(
            update(Grant)
            .where(Grant.lease_id == lease.id, Grant.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        job = PurgeJob(lease_id=lease.id, ticket_id=ticket.id, reason=reason, next_attempt_at=now)
        db.session.add(job)
        db.session.flush()
        job_ids.append(job.id)
    if not job_ids and not _has_unfinished_purge(ticket.id):
        # Nothing was ever stored, or everything already purged: the ticket is purged now.
        ticket.status = "purged"
        ticket.purged_at = now
    audit.record(
        "ticket.closed",
        actor=actor,
        ticket_ref=ticket.ref,
        reason=reason,
        purge_jobs=job_ids,
    )
    return job_ids


def _has_unfinished_purge(ticket_id: str) -> bool:
    return (
        db.session.scalar(
            select(PurgeJob.id)
            .where(PurgeJob.ticket_id == ticket_id, PurgeJob.completed_at.is_(None))
            .limit(1)
        )
        is not None
    )


def close_ticket(ticket_ref: str, *, actor: str, reason: str = "ticket_closed") -> str:
    """Close a ticket in the caller's transaction; returns what happened."""
    ticket = get_ticket(ticket_ref)
    if ticket is None:
        return "unknown_ticket"
    if ticket.status != "open":
        return "already_closed"
    _schedule_purge(ticket, reason, actor)
    return "closing"


def reopen_ticket(ticket_ref: str, *, actor: str) -> str:
    """Reopen a ticket in the caller's transaction: new links get a fresh lease."""
    ticket = get_ticket(ticket_ref)
    if ticket is None:
        return "unknown_ticket"
    if ticket.status == "open":
        return "already_open"
    ticket.status = "open"
    ticket.closed_at = None
    ticket.purged_at = None
    audit.record("ticket.reopened", actor=actor, ticket_ref=ticket.ref)
    return "reopened"


@dataclass
class PurgeProgress:
    """What a purge destroyed and then confirmed absent through Vault's API."""

    tokens_revoked: list[str] = field(default_factory=list)
    kv_items_deleted: list[str] = field(default_factory=list)
    transit_key: str = ""
    entity_id: str | None = None


def _destroy_lease_material(
    vault: Vault, lease: Lease, known_item_ids: list[str], grant_accessors: list[str]
) -> PurgeProgress:
    """Each step treats 'already gone' as done, so a retried purge repeats it safely."""
    progress = PurgeProgress()
    # 1. Tokens first: access ends before anything else happens. Revoking the lease revokes
    #    every grant with it (they are its children); _verify_destroyed looks each grant up and
    #    revokes any survivor of a broken tree on its own.
    if lease.token_accessor:
        vault.revoke_accessor(lease.token_accessor)
        progress.tokens_revoked.append(lease.token_accessor)
    progress.tokens_revoked += [a for a in grant_accessors if a]
    failpoints.hit("purge.after_revoke")
    # 2. Crypto-shred: without the key, any copy of the ciphertext (backups, snapshots) is noise.
    vault.delete_lease_key(lease.id)
    progress.transit_key = lease_key_name(lease.id)
    # 3. Every KV entry under the lease, from Vault's own listing plus the ones we recorded.
    for item_id in sorted(set(known_item_ids) | set(vault.list_items(lease.id))):
        vault.delete_item(lease.id, item_id)
        progress.kv_items_deleted.append(item_id)
    # 4. The identity entity whose alias carries the lease id (what scoped the static policies).
    if lease.entity_id:
        vault.delete_entity(lease.entity_id)
        progress.entity_id = lease.entity_id
    return progress


def _verify_destroyed(vault: Vault, lease_id: str, progress: PurgeProgress) -> None:
    """Ask Vault, not our own bookkeeping, whether anything of the lease is left."""
    leftovers = []
    for accessor in progress.tokens_revoked:
        if vault.accessor_exists(accessor):
            # A grant outside the lease's tree (it should not exist): revoke it on its own.
            vault.revoke_accessor(accessor)
            if vault.accessor_exists(accessor):
                leftovers.append(f"token {accessor}")
    if vault.lease_key_exists(lease_id):
        leftovers.append("transit key")
    # Vault lists the lease's KV metadata: an empty listing means no item's metadata is left.
    if vault.list_items(lease_id):
        leftovers.append("kv listing")
    if progress.entity_id and vault.entity_exists(progress.entity_id):
        leftovers.append("identity entity")
    if leftovers:
        raise PurgeIncomplete(f"still present after purge: {len(leftovers)} object(s)")


class PurgeIncomplete(VaultError):
    """Vault still shows something the purge deleted; retried like any other failure."""


def run_purge_job(settings: Settings, vault: Vault, job_id: str) -> dict:
    """Purge one lease, confirm it through Vault's API, and record the receipt."""
    job = db.session.get(PurgeJob, job_id)
    if job is None or job.completed_at is not None:
        db.session.rollback()
        return job.receipt if job is not None else {}
    lease = db.session.get(Lease, job.lease_id)
    ticket = db.session.get(Ticket, job.ticket_id)
    grant_accessors = list(
        db.session.scalars(select(Grant.token_accessor).where(Grant.lease_id == lease.id))
    )
    item_ids = list(
        db.session.scalars(select(CredentialItem.id).where(CredentialItem.lease_id == lease.id))
    )
    requested_at = job.created_at
    release_transaction()  # no database transaction is held across the Vault calls below

    progress = _destroy_lease_material(vault, lease, item_ids, grant_accessors)
    _verify_destroyed(vault, lease.id, progress)

    now = utcnow()
    item_count = db.session.execute(
        delete(CredentialItem).where(CredentialItem.lease_id == lease.id)
    ).rowcount
    db.session.execute(
        update(Grant)
        .where(Grant.lease_id == lease.id, Grant.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    db.session.execute(
        update(Grant).where(Grant.lease_id == lease.id).values(token_ciphertext=None)
    )
    db.session.execute(
        update(Lease)
        .where(Lease.id == lease.id)
        .values(status="purged", purged_at=now, token_ciphertext=None)
    )
    receipt = {
        "ticket_ref": ticket.ref,
        "lease_id": lease.id,
        "reason": job.reason,
        "requested_at": requested_at.isoformat(),
        "completed_at": now.isoformat(),
        "destroyed": {
            "kv_entries": len(progress.kv_items_deleted),
            "credential_records": item_count,
            "transit_key": progress.transit_key,
            "identity_entity": progress.entity_id,
            "tokens_revoked": len(progress.tokens_revoked),
            "token_accessors": progress.tokens_revoked,
        },
        # Each object above was looked up again through Vault's API and found absent.
        "verified_absent_in_vault": True,
    }
    event = audit.record(
        "purge.completed",
        actor="worker",
        ticket_ref=ticket.ref,
        lease_id=lease.id,
        kv_entries=len(progress.kv_items_deleted),
        tokens_revoked=len(progress.tokens_revoked),
        transit_key=progress.transit_key,
    )
    receipt["audit_record_hash"] = event.hash
    db.session.execute(
        update(PurgeJob)
        .where(PurgeJob.id == job_id)
        .values(completed_at=now, locked_until=None, last_error=None, receipt=receipt)
    )
    db.session.flush()
    ticket = db.session.get(Ticket, ticket.id)
    if ticket.status == "closing" and not _has_unfinished_purge(ticket.id):
        ticket.status = "purged"
        ticket.purged_at = now
    db.session.commit()
    log.info(
        "purge completed",
        extra={"fields": {"ticket_ref": ticket.ref, "lease_id": lease.id, "job_id": job_id}},
    )
    return receipt


def claim_next_job() -> str | None:
    """Atomically take the next due purge job; safe with any number of workers on any database.

    The claim is a lease on the row (locked_until), so a worker that dies mid-purge releases it
    when the lease lapses. PostgreSQL picks candidates with FOR UPDATE SKIP LOCKED so workers never
    queue behind each other; SQLite has one writer at a time (BEGIN IMMEDIATE) and needs no more.
    """
    now = utcnow()
    query = (
        select(PurgeJob.id)
        .where(
            PurgeJob.completed_at.is_(None),
            PurgeJob.next_attempt_at <= now,
            or_(PurgeJob.locked_until.is_(None), PurgeJob.locked_until <= now),
        )
        .order_by(PurgeJob.next_attempt_at)
        .limit(5)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    candidates = db.session.scalars(query).all()
    for job_id in candidates:
        # The guarded UPDATE is the lock: only one worker's statement can match the row.
        claimed = db.session.execute(
            update(PurgeJob)
            .where(
                PurgeJob.id == job_id,
                PurgeJob.completed_at.is_(None),
                or_(PurgeJob.locked_until.is_(None), PurgeJob.locked_until <= now),
            )
            .values(
                locked_until=now + timedelta(seconds=JOB_LOCK_SECONDS),
                attempts=PurgeJob.attempts + 1,
            )
        ).rowcount
        db.session.commit()
        if claimed == 1:
            return job_id
    db.session.rollback()
    return None


def _record_failure(settings: Settings, job_id: str, error: Exception) -> None:
    db.session.rollback()
    job = db.session.get(PurgeJob, job_id)
    if job is None:
        return
    # Exponential backoff, capped, retried forever: an acknowledged close is never dropped.
    delay = min(2 ** min(job.attempts, 16), settings.purge_backoff_max_seconds)
    # Our own exception messages name an operation, never a value; anything else by class only.
    message = str(error) if isinstance(error, VaultError) else type(error).__name__
    job.locked_until = None
    job.next_attempt_at = utcnow() + timedelta(seconds=delay)
    job.last_error = message[:200]
    db.session.commit()
    log.warning(
        "purge attempt failed",
        extra={"fields": {"job_id": job_id, "attempts": job.attempts, "error": message}},
    )


def process_due_jobs(settings: Settings, vault: Vault, limit: int = 100) -> int:
    """Run due purge jobs until none is left (or `limit`); returns how many completed."""
    done = 0
    for _ in range(limit):
        job_id = claim_next_job()
        if job_id is None:
            break
        try:
            run_purge_job(settings, vault, job_id)
            done += 1
        except Exception as error:  # noqa: BLE001 - every failure is retried, none is lost
            _record_failure(settings, job_id, error)
    return done


# After this many attempts a purge job is reported as failing (/readyz, doctor, sweep output).
# It is still retried: an acknowledged close is never given up on.
FAILING_AFTER_ATTEMPTS = 5


def failing_jobs() -> list[PurgeJob]:
    """Unfinished purge jobs that have failed FAILING_AFTER_ATTEMPTS times or more."""
    jobs = db.session.scalars(
        select(PurgeJob)
        .where(PurgeJob.completed_at.is_(None), PurgeJob.attempts >= FAILING_AFTER_ATTEMPTS)
        .order_by(PurgeJob.created_at)
    ).all()
    return list(jobs)


@dataclass(frozen=True)
class SweepReport:
    """What one sweep found and did."""

    retention_closed: int
    grant_tokens_erased: int
    links_expired: int
    purges_completed: int
    purges_failing: int = 0
    orphans_removed: int = 0


def sweep(settings: Settings, vault: Vault, *, orphans: bool = True) -> SweepReport:
    """One pass: close tickets past maximum retention, erase expired grant tokens, record expired
    links, run due purges, and (unless `orphans` is False) remove orphaned Vault material."""
    now = utcnow()
    expired_tickets = db.session.scalars(
        select(Ticket)
        .join(Lease, Lease.ticket_id == Ticket.id)
        .where(
            Ticket.status == "open",
            Lease.status.in_(("provisioning", "active")),
            Lease.expires_at <= now,
        )
        .distinct()
    ).all()
    for ticket in expired_tickets:
        _schedule_purge(ticket, RETENTION_REASON, actor="worker")
    db.session.commit()

    # An expired grant's token is dead in Vault already; its wrapped copy has no reason to stay.
    expired_grants = db.session.execute(
        select(Grant.id, Grant.lease_id)
        .where(Grant.expires_at <= now, Grant.token_ciphertext.is_not(None))
        .limit(SWEEP_BATCH)
    ).all()
    for grant_id, lease_id in expired_grants:
        db.session.execute(update(Grant).where(Grant.id == grant_id).values(token_ciphertext=None))
        audit.record("sweep.grant_expired", actor="worker", grant_id=grant_id, lease_id=lease_id)
    db.session.commit()

    expired_links = db.session.scalars(
        select(SubmissionLink.id)
        .where(
            SubmissionLink.expires_at <= now,
            SubmissionLink.consumed_at.is_(None),
            SubmissionLink.expiry_recorded_at.is_(None),
        )
        .limit(SWEEP_BATCH)
    ).all()
    for link_id in expired_links:
        db.session.execute(
            update(SubmissionLink)
            .where(SubmissionLink.id == link_id)
            .values(expiry_recorded_at=now)
        )
        audit.record("sweep.link_expired", actor="worker", link_id=link_id)
    db.session.commit()

    completed = process_due_jobs(settings, vault)
    failing = len(failing_jobs())
    db.session.rollback()
    orphan_count = orphans_module.sweep_orphans(vault).found if orphans else 0
    return SweepReport(
        len(expired_tickets),
        len(expired_grants),
        len(expired_links),
        completed,
        failing,
        orphan_count,
    )
