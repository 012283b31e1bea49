"""four-eyes access requests

With VAULT_SERVICE_ACCESS_APPROVAL=required an agent's request for access waits here for another
agent with the admin role; only the approval mints the grant token in Vault (grant_id then names
the grant). No token, no value: ids, a reason, a window, times.

Plain create/drop, no batch mode (see 0005).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

import vault_service.models

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("lease_id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", vault_service.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("grant_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_access_requests_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["agents.id"], name=op.f("fk_access_requests_decided_by_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["grants.id"], name=op.f("fk_access_requests_grant_id_grants")
        ),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_access_requests_lease_id_leases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_requests")),
    )
    op.create_index(op.f("ix_access_requests_agent_id"), "access_requests", ["agent_id"])
    op.create_index(op.f("ix_access_requests_lease_id"), "access_requests", ["lease_id"])
    op.create_index(op.f("ix_access_requests_status"), "access_requests", ["status"])


def downgrade() -> None:
    op.drop_index(op.f("ix_access_requests_status"), table_name="access_requests")
    op.drop_index(op.f("ix_access_requests_lease_id"), table_name="access_requests")
    op.drop_index(op.f("ix_access_requests_agent_id"), table_name="access_requests")
    op.drop_table("access_requests")
