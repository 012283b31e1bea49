"""agent set-up links; audit trail indexes for the admin console

One-time links an admin hands a new agent instead of a password: the link's token is stored
only as a keyed hash (as customer links and status tokens are), with its expiry and the moment
it was used. And two indexes on audit_events, for the console's filters by actor and by time
(without them a rare actor or an old range scans the whole trail). Plain create/drop, no batch
mode (see 0005).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

import vault_service.models

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_setup_links",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", vault_service.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", vault_service.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_agent_setup_links_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_setup_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_agent_setup_links_token_hash")),
    )
    op.create_index(
        op.f("ix_agent_setup_links_agent_id"), "agent_setup_links", ["agent_id"], unique=False
    )
    op.create_index("ix_audit_events_actor", "audit_events", ["actor"], unique=False)
    op.create_index("ix_audit_events_occurred_at", "audit_events", ["occurred_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_events_occurred_at", table_name="audit_events")
    op.drop_index("ix_audit_events_actor", table_name="audit_events")
    op.drop_index(op.f("ix_agent_setup_links_agent_id"), table_name="agent_setup_links")
    op.drop_table("agent_setup_links")
