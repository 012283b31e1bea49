"""Schema changes go through migrations: applying them all to an empty database gives exactly the
models, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select, table, text

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


def test_every_migration_applies_to_a_populated_database_through_the_apps_own_engine(
    make_settings, empty_database_url
):
    """`init-db` upgrades with the app's engine, whose SQLite connections enforce foreign keys:
    a migration that copies and drops a referenced table (Alembic's batch mode) fails there as
    soon as rows reference it, though it passes on an empty database."""
    from vault_service import create_app

    app = create_app(make_settings(database_url=empty_database_url))
    # One row per table along the foreign keys down to a credential item (plain SQL: the rows
    # are written at revision 0004, whose schema the models no longer describe).
    rows = [
        "INSERT INTO tickets (id, ref, status, created_at) VALUES ('t1', 'T-1', 'open', {now})",
        "INSERT INTO leases (id, ticket_id, status, created_at, expires_at) "
        "VALUES ('l1', 't1', 'active', {now}, {now})",
        "INSERT INTO submission_links (id, ticket_id, lease_id, token_hash, created_at, "
        "expires_at, consumed_at) VALUES ('s1', 't1', 'l1', 'h1', {now}, {now}, {now})",
        "INSERT INTO credential_items (id, lease_id, link_id, kind, position, created_at) "
        "VALUES ('i1', 'l1', 's1', 'ftp', 0, {now})",
    ]
    tables = ("tickets", "leases", "submission_links", "credential_items")
    with app.app_context():
        try:
            for revision in ("0001", "0002", "0003", "0004"):
                schema.upgrade(db.engine, revision)
            with db.engine.begin() as connection:
                for row in rows:
                    connection.execute(text(row.format(now="CURRENT_TIMESTAMP")))
            schema.upgrade(db.engine)
            schema.downgrade(db.engine, "0004")
            schema.upgrade(db.engine)
            with db.engine.connect() as connection:
                counts = {
                    name: connection.execute(select(func.count()).select_from(table(name))).scalar()
                    for name in tables
                }
                assert counts == dict.fromkeys(tables, 1)
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                assert compare_metadata(context, db.metadata) == []
        finally:
            db.session.remove()
            db.engine.dispose()


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


def test_purge_jobs_move_into_the_generic_queue_and_back(make_settings, empty_database_url):
    """0006 moves each purge job into `jobs` with its id, times, attempts and receipt, through
    the app's engine (foreign keys on); its downgrade moves them back."""
    from vault_service import create_app

    app = create_app(make_settings(database_url=empty_database_url))
    receipt = {"ticket_ref": "T-1", "verified_absent_in_vault": True}
    rows = [
        "INSERT INTO tickets (id, ref, status, created_at) VALUES ('t1', 'T-1', 'purged', {now})",
        "INSERT INTO leases (id, ticket_id, status, created_at, expires_at) "
        "VALUES ('l1', 't1', 'purged', {now}, {now})",
        "INSERT INTO leases (id, ticket_id, status, created_at, expires_at) "
        "VALUES ('l2', 't1', 'purging', {now}, {now})",
    ]
    jobs = [
        {"id": "j1", "lease_id": "l1", "attempts": 2, "completed_at": "2024-01-02 03:04:05"},
        {"id": "j2", "lease_id": "l2", "attempts": 7, "completed_at": None},
    ]
    with app.app_context():
        try:
            schema.upgrade(db.engine, "0005")
            with db.engine.begin() as connection:
                for row in rows:
                    connection.execute(text(row.format(now="CURRENT_TIMESTAMP")))
                for job in jobs:
                    connection.execute(
                        text(
                            "INSERT INTO purge_jobs (id, lease_id, ticket_id, reason, created_at, "
                            "attempts, next_attempt_at, last_error, completed_at, receipt) VALUES "
                            "(:id, :lease_id, 't1', 'ticket_closed', '2024-01-01 00:00:00', "
                            ":attempts, '2024-01-01 00:00:00', 'unreachable', :completed_at, "
                            ":receipt)"
                        ),
                        {**job, "receipt": json.dumps(receipt) if job["completed_at"] else None},
                    )
            schema.upgrade(db.engine)
            with db.engine.connect() as connection:
                moved = connection.execute(
                    text(
                        "SELECT id, kind, dedupe_key, ticket_id, attempts, last_error, "
                        "completed_at IS NOT NULL, result FROM jobs ORDER BY id"
                    )
                ).all()
                assert "purge_jobs" not in inspect(connection).get_table_names()
            assert [tuple(row[:7]) for row in moved] == [
                ("j1", "purge", "l1", "t1", 2, "unreachable", True),
                ("j2", "purge", "l2", "t1", 7, "unreachable", False),
            ]
            assert [_json(row[7]) for row in moved] == [receipt, None]

            schema.downgrade(db.engine, "0005")
            with db.engine.connect() as connection:
                back = connection.execute(
                    text(
                        "SELECT id, lease_id, reason, attempts, receipt FROM purge_jobs ORDER BY id"
                    )
                ).all()
            assert [tuple(row[:4]) for row in back] == [
                ("j1", "l1", "ticket_closed", 2),
                ("j2", "l2", "ticket_closed", 7),
            ]
            assert [_json(row[4]) for row in back] == [receipt, None]
        finally:
            db.session.remove()
            db.engine.dispose()


def _json(value):
    """A JSON column read with plain SQL: text on SQLite, already decoded on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value
