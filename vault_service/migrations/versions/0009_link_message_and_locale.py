"""link message and locale

A submission link may carry the ticket system's plain-text message for the customer (shown on the
form) and the form's language. Both nullable: every existing link simply has neither.

Plain ADD/DROP COLUMN, no batch mode (see 0005: SQLite refuses batch mode's table copy while
credential_items rows reference submission_links with foreign keys on).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("submission_links", sa.Column("message", sa.String(length=1000), nullable=True))
    op.add_column("submission_links", sa.Column("locale", sa.String(length=35), nullable=True))


def downgrade() -> None:
    op.drop_column("submission_links", "locale")
    op.drop_column("submission_links", "message")
