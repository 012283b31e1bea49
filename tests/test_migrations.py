"""Schema changes go through migrations: applying them all to an empty database gives exactly the
models, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from vault_service import schema
from vault_service.extensions import db


def test_every_migration_applied_to_an_empty_database_equals_the_models(empty_database_url):
    engine = create_engine(empty_database_url)
    try:
        schema.upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, db.metadata)
        assert differences == []
        assert "alembic_version" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_migrations_downgrade_to_nothing_and_upgrade_again(empty_database_url):
    engine = create_engine(empty_database_url)
    try:
        schema.upgrade(engine)
        schema.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        schema.upgrade(engine)
        assert "tickets" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_a_database_made_before_migrations_is_adopted_not_recreated(empty_database_url):
    engine = create_engine(empty_database_url)
    try:
        # The first revision's schema without Alembic's bookkeeping: what create_all made then.
        schema.upgrade(engine, schema.FIRST_REVISION)
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE alembic_version"))
            connection.execute(
                text(
                    "INSERT INTO tickets (id, ref, status, created_at) "
                    "VALUES ('t1', 'T-old', 'open', CURRENT_TIMESTAMP)"
                )
            )
        schema.upgrade(engine)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT ref FROM tickets")).scalar() == "T-old"
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def test_sqlite_runs_with_wal_full_sync_and_secure_delete(app, database_url):
    if not database_url.startswith("sqlite"):
        return
    with app.app_context():
        pragmas = {
            name: db.session.execute(text(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "synchronous", "secure_delete", "foreign_keys")
        }
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 2,
        "secure_delete": 1,
        "foreign_keys": 1,
    }
