"""submission without a link claim

A submission no longer claims its link while it writes to Vault: the link is consumed in one
transaction after the writes, and a post that loses the race deletes what it wrote. The claim
column has nothing left to hold.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

import vault_service.models

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not Alembic's batch mode: batch mode
    # copies the table and drops the original, which SQLite refuses while credential_items
    # rows reference it and foreign keys are on (as the app's connections have them).
    op.drop_column("submission_links", "claimed_until")


def downgrade() -> None:
    op.add_column(
        "submission_links",
        sa.Column("claimed_until", vault_service.models.UTCDateTime(timezone=True), nullable=True),
    )
