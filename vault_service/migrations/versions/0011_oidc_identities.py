"""oidc identities

Agents signing in through an OpenID Connect provider: the (issuer, subject) pair bound to an agent
(an email can change hands at the provider, `sub` never does), and the provider's session ids
(`sid`) of logins, so a back-channel logout naming only a sid finds its agent.

New tables only: no batch mode needed (see 0005).

Revision ID: 0011
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from vault_service.models import UTCDateTime

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oidc_identities",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", UTCDateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("issuer", "subject", name="uq_oidc_identities_issuer_subject"),
    )
    op.create_index("ix_oidc_identities_agent_id", "oidc_identities", ["agent_id"])
    op.create_table(
        "oidc_sessions",
        sa.Column("issuer", sa.String(length=255), primary_key=True),
        sa.Column("sid", sa.String(length=255), primary_key=True),
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("oidc_sessions")
    op.drop_index("ix_oidc_identities_agent_id", table_name="oidc_identities")
    op.drop_table("oidc_identities")
