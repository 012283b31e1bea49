"""signed receipts and link revocation

Every purge's receipt gets a home of its own, `receipts` (one row per purged lease, so every
reopen cycle keeps its receipt), holding the signed claims and their JWS. Receipts of purges
completed before this revision move across from their jobs' results, unsigned (`jws` NULL): the
past cannot be signed after the fact. `submission_links.revoked_at` lets the ticket system
revoke an unused link.

Plain create/add/drop, no batch mode: batch mode copies and drops tables, which SQLite refuses
while rows reference them and foreign keys are on (see 0005).

Revision ID: 0007
Revises: 0006
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op

import vault_service.models

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PURGE = "purge"
# Rows copied per statement: a long history moves without holding it all in memory at once.
BATCH = 1000


def _utc_column(name: str, *, nullable: bool) -> sa.Column[datetime]:
    return sa.Column(name, vault_service.models.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.add_column("submission_links", _utc_column("revoked_at", nullable=True))
    receipts = op.create_table(
        "receipts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("ticket_id", sa.String(length=36), nullable=False),
        sa.Column("lease_id", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("jws", sa.Text(), nullable=True),
        sa.Column("audit_record_hash", sa.String(length=64), nullable=True),
        _utc_column("created_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_receipts_lease_id_leases")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_receipts_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipts")),
        sa.UniqueConstraint("lease_id", name=op.f("uq_receipts_lease_id")),
    )
    op.create_index(op.f("ix_receipts_ticket_id"), "receipts", ["ticket_id"], unique=False)
    _copy_legacy_receipts(receipts)


def _copy_legacy_receipts(receipts: sa.Table) -> None:
    """Each completed purge job's receipt becomes an (unsigned) receipts row."""
    jobs = sa.Table(
        "jobs",
        sa.MetaData(),
        sa.Column("id", sa.String(36)),
        sa.Column("kind", sa.String(32)),
        sa.Column("ticket_id", sa.String(36)),
        sa.Column("payload", sa.JSON()),
        sa.Column("result", sa.JSON()),
        _utc_column("completed_at", nullable=True),
    )
    connection = op.get_bind()
    last_id = ""
    while True:
        rows = connection.execute(
            jobs.select()
            .where(jobs.c.id > last_id, jobs.c.kind == PURGE, jobs.c.completed_at.is_not(None))
            .order_by(jobs.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        values = []
        for row in rows:
            if not row.result or not row.ticket_id:
                continue
            claims = {k: v for k, v in row.result.items() if k != "audit_record_hash"}
            values.append(
                {
                    # The job's id: unique, and names where the receipt came from.
                    "id": row.id,
                    "ticket_id": row.ticket_id,
                    "lease_id": row.payload["lease_id"],
                    "reason": row.payload["reason"],
                    "payload": claims,
                    "jws": None,
                    "audit_record_hash": row.result.get("audit_record_hash"),
                    "created_at": row.completed_at,
                }
            )
        if values:
            connection.execute(receipts.insert(), values)
        last_id = rows[-1].id


def downgrade() -> None:
    # The receipts stay in their jobs' results, which 0006's downgrade carries on; only the
    # signatures are lost, and they never existed before this revision.
    op.drop_index(op.f("ix_receipts_ticket_id"), table_name="receipts")
    op.drop_table("receipts")
    op.drop_column("submission_links", "revoked_at")
