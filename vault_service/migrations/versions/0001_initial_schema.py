"""Initial schema: tickets, leases, links, items, grants, purge jobs, webhooks, audit, agents.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 07:29:51.018532
"""

import sqlalchemy as sa
from alembic import op

import vault_service.models

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("session_nonce", sa.String(length=36), nullable=False),
        sa.Column("disabled_at", vault_service.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("username", name=op.f("uq_agents_username")),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("occurred_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("ticket_ref", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_events_hash")),
        sa.UniqueConstraint("prev_hash", name=op.f("uq_audit_events_prev_hash")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_action"), ["action"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_audit_events_ticket_ref"), ["ticket_ref"], unique=False
        )

    op.create_table(
        "tickets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", vault_service.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("purged_at", vault_service.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
        sa.UniqueConstraint("ref", name=op.f("uq_tickets_ref")),
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tickets_status"), ["status"], unique=False)

    op.create_table(
        "webhook_deliveries",
        sa.Column("webhook_id", sa.String(length=128), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("received_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("webhook_id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_table(
        "leases",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("ticket_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("token_accessor", sa.String(length=64), nullable=True),
        sa.Column("entity_id", sa.String(length=64), nullable=True),
        sa.Column("token_ciphertext", sa.Text(), nullable=True),
        sa.Column("purged_at", vault_service.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_leases_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leases")),
    )
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_leases_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_leases_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_leases_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "grants",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("lease_id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", vault_service.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("token_accessor", sa.String(length=64), nullable=False),
        sa.Column("token_ciphertext", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_grants_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_grants_lease_id_leases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants")),
    )
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grants_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_grants_lease_id"), ["lease_id"], unique=False)

    op.create_table(
        "purge_jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("lease_id", sa.String(length=36), nullable=False),
        sa.Column("ticket_id", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("created_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "next_attempt_at", vault_service.models.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("locked_until", vault_service.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("completed_at", vault_service.models.UTCDateTime(timezone=True), nullable=True),
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
    with op.batch_alter_table("purge_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_purge_jobs_completed_at"), ["completed_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_purge_jobs_next_attempt_at"), ["next_attempt_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_purge_jobs_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "submission_links",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("ticket_id", sa.String(length=36), nullable=False),
        sa.Column("lease_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", vault_service.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("consumed_at", vault_service.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_submission_links_lease_id_leases")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_submission_links_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submission_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_submission_links_token_hash")),
    )
    with op.batch_alter_table("submission_links", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_submission_links_lease_id"), ["lease_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_submission_links_ticket_id"), ["ticket_id"], unique=False
        )

    op.create_table(
        "credential_items",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("lease_id", sa.String(length=36), nullable=False),
        sa.Column("link_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_credential_items_lease_id_leases")
        ),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["submission_links.id"],
            name=op.f("fk_credential_items_link_id_submission_links"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credential_items")),
    )
    with op.batch_alter_table("credential_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credential_items_lease_id"), ["lease_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("credential_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credential_items_lease_id"))

    op.drop_table("credential_items")
    with op.batch_alter_table("submission_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_submission_links_ticket_id"))
        batch_op.drop_index(batch_op.f("ix_submission_links_lease_id"))

    op.drop_table("submission_links")
    with op.batch_alter_table("purge_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_purge_jobs_ticket_id"))
        batch_op.drop_index(batch_op.f("ix_purge_jobs_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_purge_jobs_completed_at"))

    op.drop_table("purge_jobs")
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grants_lease_id"))
        batch_op.drop_index(batch_op.f("ix_grants_agent_id"))

    op.drop_table("grants")
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_leases_ticket_id"))
        batch_op.drop_index(batch_op.f("ix_leases_status"))
        batch_op.drop_index(batch_op.f("ix_leases_expires_at"))

    op.drop_table("leases")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tickets_status"))

    op.drop_table("tickets")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_ticket_ref"))
        batch_op.drop_index(batch_op.f("ix_audit_events_action"))

    op.drop_table("audit_events")
    op.drop_table("agents")
