"""record link expiry once

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 07:32:57.359812
"""

import sqlalchemy as sa
from alembic import op

import vault_service.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submission_links", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "expiry_recorded_at", vault_service.models.UTCDateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("submission_links", schema=None) as batch_op:
        batch_op.drop_column("expiry_recorded_at")
