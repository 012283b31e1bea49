"""generic job queue

The purge jobs become the first kind of a generic durable queue: `jobs` holds any kind, with its
payload as JSON. Every purge_jobs row moves across with its id, times, attempts and receipt (now
the job's `result`), then purge_jobs goes. A downgrade moves the purge jobs back; jobs of any
other kind have no place in the old schema and are dropped with the table.

Plain create/insert/drop, no batch mode: batch mode copies and drops tables, which SQLite
refuses while rows reference them and foreign keys are on (see 0005).

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import vault_service.models

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PURGE = "purge"
# Rows copied per statement: a long history moves without holding it all in memory at once.
BATCH = 1000


def _utc_column(name: str, *, nullable: bool) -> sa.Column[datetime]:
    return sa.Column(name, vault_service.models.UTCDateTime(timezone=True), nullable=nullable)


def _create_jobs() -> sa.Table:
    jobs = op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("ticket_id", sa.String(length=36), nullable=True),
        sa.Column("dedupe_key", sa.String(length=64), nullable=True),
        sa.Column("ordering_key", sa.String(length=64), nullable=True),
        _utc_column("created_at", nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _utc_column("next_attempt_at", nullable=False),
        _utc_column("locked_until", nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        _utc_column("completed_at", nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_jobs_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("kind", "dedupe_key", name="uq_jobs_kind_dedupe_key"),
    )
    for column in ("completed_at", "next_attempt_at", "ordering_key", "ticket_id"):
        op.create_index(op.f(f"ix_jobs_{column}"), "jobs", [column], unique=False)
    return jobs


def _create_purge_jobs() -> sa.Table:
    purge_jobs = op.create_table(
        "purge_jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("lease_id", sa.String(length=36), nullable=False),
        sa.Column("ticket_id", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        _utc_column("created_at", nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _utc_column("next_attempt_at", nullable=False),
        _utc_column("locked_until", nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        _utc_column("completed_at", nullable=True),
        sa.Column("receipt", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_purge_jobs_lease_id_leases")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_purge_jobs_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purge_jobs")),
        sa.UniqueConstraint("lease_id", name=op.f("uq_purge_jobs_lease_id")),
    )
    for column in ("completed_at", "next_attempt_at", "ticket_id"):
        op.create_index(op.f(f"ix_purge_jobs_{column}"), "purge_jobs", [column], unique=False)
    return purge_jobs


# The columns both tables share, copied as they are.
COMMON = (
    "id",
    "ticket_id",
    "created_at",
    "attempts",
    "next_attempt_at",
    "locked_until",
    "last_error",
    "completed_at",
)


def _copy(
    source: sa.Table,
    target: sa.Table,
    convert: Callable[[sa.RowMapping], dict[str, Any]],
    where: sa.ColumnElement[bool] | None = None,
) -> None:
    """Copy every row of `source` (converted) into `target`, BATCH rows at a time, by id."""
    connection = op.get_bind()
    last_id = ""
    while True:
        query = source.select().where(source.c.id > last_id).order_by(source.c.id).limit(BATCH)
        rows = connection.execute(query if where is None else query.where(where)).mappings().all()
        if not rows:
            return
        connection.execute(target.insert(), [convert(row) for row in rows])
        last_id = rows[-1]["id"]


def upgrade() -> None:
    jobs = _create_jobs()

    def to_job(row: sa.RowMapping) -> dict[str, Any]:
        return {
            **{name: row[name] for name in COMMON},
            "kind": PURGE,
            "payload": {"lease_id": row["lease_id"], "reason": row["reason"]},
            "dedupe_key": row["lease_id"],
            "ordering_key": None,
            "result": row["receipt"],
        }

    _copy(_purge_jobs_table(), jobs, to_job)
    op.drop_table("purge_jobs")


def downgrade() -> None:
    purge_jobs = _create_purge_jobs()
    jobs = _jobs_table()

    def to_purge_job(row: sa.RowMapping) -> dict[str, Any]:
        return {
            **{name: row[name] for name in COMMON},
            "lease_id": row["payload"]["lease_id"],
            "reason": row["payload"]["reason"],
            "receipt": row["result"],
        }

    _copy(jobs, purge_jobs, to_purge_job, where=jobs.c.kind == PURGE)
    op.drop_table("jobs")


def _purge_jobs_table() -> sa.Table:
    """purge_jobs as a typed Table for reading: its times come back as aware UTC."""
    return sa.Table(
        "purge_jobs",
        sa.MetaData(),
        sa.Column("id", sa.String(36)),
        sa.Column("lease_id", sa.String(36)),
        sa.Column("ticket_id", sa.String(36)),
        sa.Column("reason", sa.String(32)),
        *(
            _utc_column(column, nullable=True)
            for column in ("created_at", "next_attempt_at", "locked_until", "completed_at")
        ),
        sa.Column("attempts", sa.Integer()),
        sa.Column("last_error", sa.String(200)),
        sa.Column("receipt", sa.JSON()),
    )


def _jobs_table() -> sa.Table:
    """jobs as a typed Table for reading: its times come back as aware UTC."""
    return sa.Table(
        "jobs",
        sa.MetaData(),
        sa.Column("id", sa.String(36)),
        sa.Column("kind", sa.String(32)),
        sa.Column("payload", sa.JSON()),
        sa.Column("ticket_id", sa.String(36)),
        *(
            _utc_column(column, nullable=True)
            for column in ("created_at", "next_attempt_at", "locked_until", "completed_at")
        ),
        sa.Column("attempts", sa.Integer()),
        sa.Column("last_error", sa.String(200)),
        sa.Column("result", sa.JSON()),
    )
