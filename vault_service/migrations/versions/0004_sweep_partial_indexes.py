"""partial indexes for the sweep

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_grants_live_token_expires_at",
        "grants",
        ["expires_at"],
        sqlite_where=sa.text("token_ciphertext IS NOT NULL"),
        postgresql_where=sa.text("token_ciphertext IS NOT NULL"),
    )
    op.create_index(
        "ix_submission_links_unrecorded_expires_at",
        "submission_links",
        ["expires_at"],
        sqlite_where=sa.text("consumed_at IS NULL AND expiry_recorded_at IS NULL"),
        postgresql_where=sa.text("consumed_at IS NULL AND expiry_recorded_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_submission_links_unrecorded_expires_at", table_name="submission_links")
    op.drop_index("ix_grants_live_token_expires_at", table_name="grants")
