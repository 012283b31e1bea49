"""The durable job queue: enqueue in the caller's transaction, claim, run, retry with backoff.

A job kind is one module in services/job_kinds/ that defines `KIND = JobKind(...)`; the worker
finds every module there, so adding a kind is that one file (and its tests). A kind's `run`
does the slow work with no database transaction open (Vault, a remote call); its `finish`
writes what the work changed inside the transaction that marks the job done, so a job is
completed exactly when its effects are recorded. A run that fails or a worker that dies is
retried: each kind's steps must be idempotent.

Ordering: jobs enqueued with the same `ordering_key` (e.g. a ticket's outbound event
deliveries, keyed by its ticket id) run one at a time in the order they were enqueued: a job is
not claimed while an older unfinished job shares its key. Jobs without a key run in any order.

A job's state is derived from its columns (`job_state`), never stored: pending, running (a
worker's row lease is ahead), failing (FAILING_AFTER_ATTEMPTS failed attempts or more; still
retried: an acknowledged request is never given up on), done.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import aliased

from ..clock import utcnow
from ..config import Settings
from ..extensions import db
from ..models import Job, JobState, JsonObject
from ..transactions import read_only, transaction
from ..vault import Vault, VaultError

log = logging.getLogger(__name__)

# A job is held this long by the worker that claimed it; a crashed worker's job is retried after.
JOB_LOCK_SECONDS = 300
# After this many attempts a job is reported as failing (/readyz, doctor, sweep output).
FAILING_AFTER_ATTEMPTS = 5
# 2**16 s is beyond any kind's cap: the exponent stops growing there.
_MAX_BACKOFF_EXPONENT = 16


class JobFailed(Exception):
    """A kind's own failure whose message names what failed, never a value: recorded as is."""


# What a kind's `run` hands its `finish`.
Outcome = TypeVar("Outcome")
# A job's result, kept on its row as JSON (a kind may return a TypedDict).
JobResult = Mapping[str, object]


@dataclass(frozen=True)
class JobKind(Generic[Outcome]):
    """One kind of job. `name` is a singular noun: reports pluralise it ("purges_failing")."""

    name: str
    # The work, with no database transaction open; returns what `finish` needs.
    run: Callable[[Settings, Vault, Job], Outcome]
    # Inside the transaction that completes the job; returns the result kept on its row.
    finish: Callable[[Job, Outcome], JobResult | None]
    # The longest wait between two attempts.
    max_backoff_seconds: Callable[[Settings], int]


@cache
def registered_kinds() -> dict[str, JobKind[Any]]:
    """Every job kind by name: the KIND of each module in services/job_kinds/."""
    from . import job_kinds

    # Any: each kind has its own outcome type; run_job hands a kind's outcome to that kind only.
    kinds: dict[str, JobKind[Any]] = {}
    for module in pkgutil.iter_modules(job_kinds.__path__):
        kind = importlib.import_module(f"{job_kinds.__name__}.{module.name}").KIND
        kinds[kind.name] = kind
    return kinds


def enqueue(
    kind: str,
    payload: JsonObject,
    *,
    ticket_id: str | None = None,
    dedupe_key: str | None = None,
    ordering_key: str | None = None,
) -> Job:
    """Add a job in the caller's transaction: it exists, and runs, only if the caller commits."""
    if kind not in registered_kinds():
        raise ValueError(f"unknown job kind {kind!r}")
    job = Job(
        kind=kind,
        payload=payload,
        ticket_id=ticket_id,
        dedupe_key=dedupe_key,
        ordering_key=ordering_key,
        next_attempt_at=utcnow(),
    )
    db.session.add(job)
    db.session.flush()
    return job


def job_state(job: Job, now: datetime) -> JobState:
    """Where a job stands, from its columns."""
    if job.completed_at is not None:
        return JobState.DONE
    if job.locked_until is not None and job.locked_until > now:
        return JobState.RUNNING
    if job.attempts >= FAILING_AFTER_ATTEMPTS:
        return JobState.FAILING
    return JobState.PENDING


def _claimable(now: ColumnElement[datetime]) -> ColumnElement[bool]:
    """Unfinished, due, not leased to a live worker, and first of its ordering key."""
    older = aliased(Job)
    return and_(
        Job.completed_at.is_(None),
        Job.next_attempt_at <= now,
        or_(Job.locked_until.is_(None), Job.locked_until <= now),
        or_(
            Job.ordering_key.is_(None),
            # Compared as one (created_at, id) pair, the way ix_jobs_unfinished_ordering_key
            # orders them: one index probe, where an OR of two comparisons walked every
            # unfinished job of the key.
            ~exists().where(
                older.ordering_key == Job.ordering_key,
                older.completed_at.is_(None),
                tuple_(older.created_at, older.id) < tuple_(Job.created_at, Job.id),
            ),
        ),
    )


@cache
def _candidates_query(dialect: str) -> Select[str]:
    """The next due jobs' ids, `now` bound at execution. Built once per process and database:
    building it (an aliased jobs table, a dozen clauses) cost more CPU than running it."""
    query = select(Job.id).where(_claimable(bindparam("now"))).order_by(Job.next_attempt_at)
    query = query.limit(5)
    if dialect == "postgresql":
        query = query.with_for_update(of=Job, skip_locked=True)
    return query


def claim_next_job() -> Job | None:
    """Atomically take the next due job; safe with any number of workers on any database.

    The claim is a lease on the row (locked_until), so a worker that dies mid-job releases it
    when the lease lapses. PostgreSQL picks candidates with FOR UPDATE SKIP LOCKED so workers never
    queue behind each other; SQLite has one writer at a time (BEGIN IMMEDIATE) and needs no more.
    """
    now = utcnow()
    with transaction() as session:
        query = _candidates_query(session.get_bind().dialect.name)
        for job_id in session.scalars(query, {"now": now}).all():
            # The guarded UPDATE is the lock: only one worker's statement can match the row. It
            # returns the claimed row, so the job is not read again.
            claimed = session.scalars(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.completed_at.is_(None),
                    or_(Job.locked_until.is_(None), Job.locked_until <= now),
                )
                .values(
                    locked_until=now + timedelta(seconds=JOB_LOCK_SECONDS),
                    attempts=Job.attempts + 1,
                )
                .returning(Job)
                .execution_options(populate_existing=True)
            ).one_or_none()
            if claimed is not None:
                return claimed
    return None


def run_job(settings: Settings, vault: Vault, job: Job) -> JobResult | None:
    """Run a claimed job's kind, then record its effects and its completion in one transaction."""
    kind = registered_kinds()[job.kind]
    outcome = kind.run(settings, vault, job)
    now = utcnow()
    with transaction() as session:
        result = kind.finish(job, outcome)
        session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(completed_at=now, locked_until=None, last_error=None, result=result)
        )
    log.info("job completed", extra={"fields": {"kind": job.kind, "job_id": job.id}})
    return result


def _record_failure(settings: Settings, job: Job, error: Exception) -> None:
    """Release the job for a later attempt, after a capped exponential backoff."""
    cap = registered_kinds()[job.kind].max_backoff_seconds(settings)
    delay = min(2 ** min(job.attempts, _MAX_BACKOFF_EXPONENT), cap)
    # Our own exception messages name an operation, never a value; anything else by class only.
    message = str(error) if isinstance(error, VaultError | JobFailed) else type(error).__name__
    with transaction() as session:
        session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(
                locked_until=None,
                next_attempt_at=utcnow() + timedelta(seconds=delay),
                last_error=message[:200],
            )
        )
    log.warning(
        "job attempt failed",
        extra={
            "fields": {
                "kind": job.kind,
                "job_id": job.id,
                "attempts": job.attempts,
                "error": message,
            }
        },
    )


def process_due_jobs(settings: Settings, vault: Vault, limit: int = 100) -> Counter[str]:
    """Run due jobs until none is left (or `limit`); returns how many completed, by kind."""
    completed: Counter[str] = Counter()
    for _ in range(limit):
        job = claim_next_job()
        if job is None:
            break
        try:
            run_job(settings, vault, job)
            completed[job.kind] += 1
        except Exception as error:  # noqa: BLE001 - every failure is retried, none is lost
            _record_failure(settings, job, error)
    return completed


def failing_jobs() -> list[Job]:
    """Unfinished jobs of every kind that have failed FAILING_AFTER_ATTEMPTS times or more."""
    return list(
        db.session.scalars(
            select(Job)
            .where(Job.completed_at.is_(None), Job.attempts >= FAILING_AFTER_ATTEMPTS)
            .order_by(Job.created_at)
        )
    )


def failing_counts() -> dict[str, int]:
    """How many jobs of each registered kind are failing (zero included), in one read."""
    with read_only() as session:
        rows = session.execute(
            select(Job.kind, func.count(Job.id))
            .where(Job.completed_at.is_(None), Job.attempts >= FAILING_AFTER_ATTEMPTS)
            .group_by(Job.kind)
        ).all()
    counts = dict.fromkeys(registered_kinds(), 0)
    counts.update({kind: count for kind, count in rows})
    return counts
