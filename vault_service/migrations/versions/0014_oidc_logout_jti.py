"""oidc logout jti

The `jti` of every back-channel logout token accepted, per issuer, until the token could no
longer be accepted anyway (its `exp`, or the age limit on its `iat`): a replayed logout token is
refused (OpenID Connect Back-Channel Logout 1.0, section 2.6). The database, not the rate
limiter's storage: the limiter's is per process (memory) and may forget, a replay must be refused
by every worker and after a restart.

New table only: no batch mode needed (see 0005).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

from vault_service.models import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oidc_logout_tokens",
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "jti", name=op.f("pk_oidc_logout_tokens")),
    )
    op.create_index(op.f("ix_oidc_logout_tokens_expires_at"), "oidc_logout_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_oidc_logout_tokens_expires_at"), table_name="oidc_logout_tokens")
    op.drop_table("oidc_logout_tokens")
