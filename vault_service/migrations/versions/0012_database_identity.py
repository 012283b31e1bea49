"""database identity

A one-row table holding this database's random id, written by the app the first time it claims
its deployment id in Vault (not here: a migrated template copied into several databases, or a
snapshot restored elsewhere, would otherwise share it). The Vault marker of a deployment id names
the database that owns it, so a second database on the same id is refused (SECURITY.md).

Plain create/drop, no batch mode (see 0005).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

import vault_service.models

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "database_identity",
        sa.Column("singleton", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("database_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("singleton", name=op.f("pk_database_identity")),
    )


def downgrade() -> None:
    op.drop_table("database_identity")
