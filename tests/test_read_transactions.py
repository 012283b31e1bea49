"""read_only() on a busy database: a read never queues behind a writer, and a write that happens
on a read path (the session-expiry audit record) never fails because the read took a snapshot.

On SQLite every transaction() begins IMMEDIATE (writers queue for the one write lock instead of
failing mid-transaction) but a read_only() block begins DEFERRED: a snapshot, no lock. SQLite
refuses, at once and without a busy wait, to turn a snapshot into a writer once someone else has
committed (SQLITE_BUSY_SNAPSHOT); these tests make exactly that happen with a second connection.
On PostgreSQL the same tests hold (reads take no locks there either). There, at READ COMMITTED,
a read runs without a transaction at all (each statement has its own snapshot either way); the
tests below check that it does, that it stays a transaction under a stricter server default, and
that a read_only() block cannot write on either database.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select, text, update

from vault_service import create_app
from vault_service.extensions import db
from vault_service.models import Agent, AuditEvent
from vault_service.services import audit
from vault_service.services.agents import create_agent
from vault_service.services.authentication import load_agent, record_session_expired
from vault_service.transactions import read_only, transaction

from .conftest import TEST_DATABASE_URL

postgres_only = pytest.mark.skipif(
    not TEST_DATABASE_URL, reason="PostgreSQL only (VAULT_SERVICE_TEST_DATABASE_URL)"
)
# True in a statement that began its own transaction; False in one after BEGIN (now() is the
# transaction's start, statement_timestamp() the statement's, a round trip later).
_OWN_TRANSACTION = text("SELECT now() = statement_timestamp()")


def _other_writer(app, hold: threading.Event, release: threading.Event, errors: list) -> None:
    """A second connection that writes, signals `hold` with its transaction still open (on
    SQLite: holding the write lock), and commits once `release` is set."""
    try:
        with app.app_context():
            with transaction():
                audit.record("bench.writer", actor="test")
                db.session.flush()
                hold.set()
                release.wait(30)
            db.session.remove()
    except Exception as error:  # noqa: BLE001 - reported to the test thread
        errors.append(error)
        hold.set()


def _while_another_connection_writes(app, action):
    """Run `action` while a second connection holds an open write transaction (on SQLite: the
    write lock); returns its result and how long it took. The writer commits afterwards."""
    hold, release, errors = threading.Event(), threading.Event(), []
    writer = threading.Thread(target=_other_writer, args=(app, hold, release, errors))
    writer.start()
    try:
        assert hold.wait(30)
        started = time.monotonic()
        result = action()
        elapsed = time.monotonic() - started
    finally:
        release.set()
        writer.join(30)
    assert not errors
    return result, elapsed


def _count(action: str) -> int:
    return db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
    )


def test_a_read_does_not_wait_for_a_writer(app):
    with app.app_context():
        create_agent("reader", "correct horse battery staple", actor="test")

    def read():
        with app.app_context():
            with read_only() as session:
                names = session.scalars(select(Agent.username)).all()
            db.session.remove()
        return names

    names, elapsed = _while_another_connection_writes(app, read)
    assert names == ["reader"]
    # An IMMEDIATE read would wait for the writer's lock: up to busy_timeout (10 s), then fail.
    assert elapsed < 2, f"the read waited {elapsed:.1f} s for the writer"


def test_loading_the_signed_in_agent_is_a_read_that_does_not_wait_for_a_writer(app):
    with app.app_context():
        agent = create_agent("signed-in", "correct horse battery staple", actor="test")
        session_id = f"{agent.id}:{agent.session_nonce}"
        db.session.remove()

    def load():
        with app.app_context():
            loaded = load_agent(session_id)  # flask-login's loader, on every agent request
            # Ended, not left open for the request's first read to join.
            assert not db.session().in_transaction()
            db.session.remove()
        return loaded

    loaded, elapsed = _while_another_connection_writes(app, load)
    assert loaded is not None and loaded.username == "signed-in"
    # In a transaction the session began itself it would be IMMEDIATE on SQLite: it would wait
    # for the writer's lock for up to busy_timeout (10 s), then fail.
    assert elapsed < 2, f"loading the agent waited {elapsed:.1f} s for the writer"


def test_a_write_on_a_read_path_survives_a_commit_after_the_snapshot(app):
    with app.app_context():
        agent = create_agent("expiring", "correct horse battery staple", actor="test")
        session_id = f"{agent.id}:{agent.session_nonce}"
    with app.app_context():
        with read_only() as session:
            # The read's snapshot begins here...
            assert session.scalar(select(Agent.username).where(Agent.id == agent.id))
            # ...another connection commits after it...
            hold, release, errors = threading.Event(), threading.Event(), []
            release.set()
            writer = threading.Thread(target=_other_writer, args=(app, hold, release, errors))
            writer.start()
            writer.join(30)
            assert not errors
            # ...and the read path now writes (the session-expiry audit record). Written from
            # inside the snapshot this fails at once on SQLite ("database is locked").
            record_session_expired(session_id, "idle timeout")
        assert _count("agent.session_expired") == 1
        assert _count("bench.writer") == 1
        db.session.remove()


def test_a_read_only_block_still_refuses_changes(app):
    with app.app_context():
        create_agent("unchanged", "correct horse battery staple", actor="test")
        try:
            with read_only() as session:
                found = session.scalar(select(Agent).where(Agent.username == "unchanged"))
                found.role = "admin"
        except RuntimeError as error:
            assert "made changes" in str(error)
        else:
            raise AssertionError("read_only() committed a change")
        db.session.remove()
        with read_only() as session:
            role = session.scalar(select(Agent.role).where(Agent.username == "unchanged"))
            assert role == "agent"
        db.session.remove()


def test_a_signed_in_page_does_not_wait_for_a_writer(app, client, agent):
    # Loading the signed-in agent is a read too: were it to autobegin (IMMEDIATE on SQLite),
    # every signed-in request would queue for the write lock, and the page's own reads would
    # join that transaction instead of taking a snapshot.
    agent.login()
    response, elapsed = _while_another_connection_writes(app, lambda: client.get("/"))
    assert response.status_code == 200
    assert elapsed < 2, f"the dashboard waited {elapsed:.1f} s for the writer"


def test_a_read_only_block_refuses_a_write_before_it_is_sent(app):
    with app.app_context():
        create_agent("unwritten", "correct horse battery staple", actor="test")
        with pytest.raises(RuntimeError, match="made changes"):
            with read_only() as session:
                session.execute(update(Agent).values(role="admin"))
        with pytest.raises(RuntimeError, match="made changes"):
            with read_only() as session:
                found = session.scalar(select(Agent).where(Agent.username == "unwritten"))
                found.role = "admin"
                session.flush()
        db.session.remove()
        with read_only() as session:
            assert session.scalar(select(Agent.role)) == "agent"
        db.session.remove()


@postgres_only
def test_on_postgresql_a_read_runs_without_a_transaction(app):
    with app.app_context():
        with read_only() as session:
            # Each statement its own transaction: no BEGIN, no COMMIT, no round trips for them.
            assert session.scalar(_OWN_TRANSACTION) is True
            assert session.scalar(_OWN_TRANSACTION) is True
        with transaction() as session:
            assert session.scalar(_OWN_TRANSACTION) is False
        db.session.remove()


@postgres_only
def test_on_postgresql_under_a_stricter_default_a_read_keeps_one_snapshot(app, make_settings):
    # A server (or role) whose transactions default to SERIALIZABLE: one snapshot per read
    # block is then what the read would get in a transaction, so it stays one.
    strict = create_app(
        make_settings(
            database_url=f"{TEST_DATABASE_URL}?options=-cdefault_transaction_isolation%3Dserializable"
        )
    )
    try:
        with strict.app_context():
            with read_only():
                assert _count("bench.writer") == 0  # the first connection: the default is known
            db.session.remove()
            with read_only() as session:
                assert session.scalar(_OWN_TRANSACTION) is False
                before = _count("bench.writer")
                hold, release, errors = threading.Event(), threading.Event(), []
                release.set()
                writer = threading.Thread(target=_other_writer, args=(app, hold, release, errors))
                writer.start()
                writer.join(30)
                assert not errors
                # Committed meanwhile, and not seen: the block reads one snapshot.
                assert _count("bench.writer") == before == 0
            assert _count("bench.writer") == 1
            db.session.remove()
    finally:
        with strict.app_context():
            db.engine.dispose()
