"""customer status tokens

A submission gives the customer a second capability, the status page `/r/<token>`: one row per
submission, holding the token's keyed hash only, the lease its credentials live under, and what
was received (item ids and kinds, never values). The purge deletes credential_items, so the page
keeps its own record of what it reports.

Plain create/drop, no batch mode (see 0005).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

import vault_service.models

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "status_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("link_id", sa.String(length=36), nullable=False),
        sa.Column("lease_id", sa.String(length=36), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("created_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_status_tokens_lease_id_leases")
        ),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["submission_links.id"],
            name=op.f("fk_status_tokens_link_id_submission_links"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_status_tokens_token_hash")),
        sa.UniqueConstraint("link_id", name=op.f("uq_status_tokens_link_id")),
    )
    op.create_index(op.f("ix_status_tokens_lease_id"), "status_tokens", ["lease_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_status_tokens_lease_id"), table_name="status_tokens")
    op.drop_table("status_tokens")
