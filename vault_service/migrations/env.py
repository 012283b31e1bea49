"""Alembic environment: the models' metadata, and the connection handed over by schema.py."""

from alembic import context

from vault_service.extensions import db

config = context.config
target_metadata = db.metadata


def run_migrations_online() -> None:
    """Run against the connection schema.upgrade() passes in `config.attributes`."""
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline migrations are not supported; run `vault-service init-db`")
run_migrations_online()
