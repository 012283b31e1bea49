"""grants by agent and end

The dashboard lists an agent's live grants, and disabling an agent revokes them: with an index
on agent_id alone both read every grant the agent ever had (make bench's scale curve: the
dashboard took twice as long at 100k tickets of history as at 1k, 21 ms of it this query). By
agent and then by end, only the unexpired ones are read; the index serves lookups by agent
alone too, so it replaces the old one.

Plain create/drop index, no batch mode (see 0005).

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_grants_agent_id_expires_at", "grants", ["agent_id", "expires_at"], unique=False
    )
    op.drop_index(op.f("ix_grants_agent_id"), table_name="grants")


def downgrade() -> None:
    op.create_index(op.f("ix_grants_agent_id"), "grants", ["agent_id"], unique=False)
    op.drop_index("ix_grants_agent_id_expires_at", table_name="grants")
