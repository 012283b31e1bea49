"""read_only() on a busy database: a read never queues behind a writer, and a write that happens
on a read path (the session-expiry audit record) never fails because the read took a snapshot.

On SQLite every transaction() begins IMMEDIATE (writers queue for the one write lock instead of
failing mid-transaction) but a read_only() block begins DEFERRED: a snapshot, no lock. SQLite
refuses, at once and without a busy wait, to turn a snapshot into a writer once someone else has
committed (SQLITE_BUSY_SNAPSHOT); these tests make exactly that happen with a second connection.
On PostgreSQL the same tests hold (reads take no locks there either).
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select

from vault_service.extensions import db
from vault_service.models import Agent, AuditEvent
from vault_service.services import audit
from vault_service.services.agents import create_agent
from vault_service.services.authentication import record_session_expired
from vault_service.transactions import read_only, transaction


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


def _count(action: str) -> int:
    return db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
    )


def test_a_read_does_not_wait_for_a_writer(app):
    with app.app_context():
        create_agent("reader", "correct horse battery staple", actor="test")
    hold, release, errors = threading.Event(), threading.Event(), []
    writer = threading.Thread(target=_other_writer, args=(app, hold, release, errors))
    writer.start()
    try:
        assert hold.wait(30)
        with app.app_context():
            started = time.monotonic()
            with read_only() as session:
                names = session.scalars(select(Agent.username)).all()
            elapsed = time.monotonic() - started
            db.session.remove()
    finally:
        release.set()
        writer.join(30)
    assert not errors
    assert names == ["reader"]
    # An IMMEDIATE read would wait for the writer's lock: up to busy_timeout (10 s), then fail.
    assert elapsed < 2, f"the read waited {elapsed:.1f} s for the writer"


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
    hold, release, errors = threading.Event(), threading.Event(), []
    writer = threading.Thread(target=_other_writer, args=(app, hold, release, errors))
    writer.start()
    try:
        assert hold.wait(30)
        started = time.monotonic()
        response = client.get("/")
        elapsed = time.monotonic() - started
    finally:
        release.set()
        writer.join(30)
    assert not errors
    assert response.status_code == 200
    assert elapsed < 2, f"the dashboard waited {elapsed:.1f} s for the writer"
