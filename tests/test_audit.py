"""The audit trail: every lifecycle step recorded, no secrets, and tampering detected."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from datetime import UTC, datetime

from sqlalchemy import func, select, text, update

from vault_service.extensions import db
from vault_service.models import AuditEvent
from vault_service.services import audit
from vault_service.transactions import transaction

from .conftest import SAMPLE_ITEMS
from .helpers import run_worker_pass


def story(client, ticket_system, agent, app) -> None:
    path = ticket_system.link_path("T-audit")
    client.post(path, json={"items": SAMPLE_ITEMS})
    agent.login()
    agent.login(password="wrong password!")
    agent.request_access("T-audit", reason="customer asked for a fix")
    agent.reveal("T-audit")
    ticket_system.close("T-audit")
    run_worker_pass(app)


def test_every_lifecycle_step_is_in_the_chain_and_the_chain_verifies(
    app, client, ticket_system, agent, runner
):
    story(client, ticket_system, agent, app)
    with app.app_context():
        actions = [(e.action, e.outcome) for e in db.session.scalars(select(AuditEvent))]
    for expected in [
        ("agent.created", "success"),
        ("link.created", "success"),
        ("submission.received", "success"),
        ("agent.login", "success"),
        ("agent.login", "failure"),
        ("access.granted", "success"),
        ("credentials.revealed", "success"),
        ("ticket.closed", "success"),
        ("purge.completed", "success"),
    ]:
        assert expected in actions
    result = runner.invoke(args=["audit-verify"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"ok: {len(actions)} records")


def test_an_edited_record_is_named_by_audit_verify(app, client, ticket_system, agent, runner):
    story(client, ticket_system, agent, app)
    with app.app_context():
        target = db.session.scalar(
            select(AuditEvent.id).where(AuditEvent.action == "credentials.revealed")
        )
        db.session.execute(
            update(AuditEvent).where(AuditEvent.id == target).values(actor="agent:mallory")
        )
        db.session.commit()
    result = runner.invoke(args=["audit-verify"])
    assert result.exit_code == 1
    assert f"record {target} content does not match its hash" in result.output


def test_a_deleted_record_is_detected_at_its_successor(app, client, ticket_system, agent, runner):
    story(client, ticket_system, agent, app)
    with app.app_context():
        ids = list(db.session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)))
        db.session.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": ids[3]})
        db.session.commit()
    result = runner.invoke(args=["audit-verify"])
    assert result.exit_code == 1
    assert f"record {ids[4]} does not follow the previous record" in result.output


def test_swapped_records_are_detected(app, client, ticket_system, agent, runner):
    story(client, ticket_system, agent, app)
    with app.app_context():
        first, second = db.session.scalars(
            select(AuditEvent).order_by(AuditEvent.id).offset(2).limit(2)
        ).all()
        a, b = first.id, second.id
        # Move both out of the way, then back in each other's place.
        db.session.execute(update(AuditEvent).where(AuditEvent.id == a).values(id=-1))
        db.session.execute(update(AuditEvent).where(AuditEvent.id == b).values(id=a))
        db.session.execute(update(AuditEvent).where(AuditEvent.id == -1).values(id=b))
        db.session.commit()
    result = runner.invoke(args=["audit-verify"])
    assert result.exit_code == 1
    assert f"record {a}" in result.output


def test_export_writes_json_lines_and_csv_without_secret_values(
    app, client, ticket_system, agent, runner
):
    story(client, ticket_system, agent, app)
    jsonl = runner.invoke(args=["audit-export", "--format", "jsonl"]).output
    rows = [json.loads(line) for line in jsonl.splitlines()]
    assert {"id", "occurred_at", "actor", "action", "hash", "prev_hash"} <= set(rows[0])
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    table = list(
        csv.DictReader(io.StringIO(runner.invoke(args=["audit-export", "--format", "csv"]).output))
    )
    assert len(table) == len(rows)
    for item in SAMPLE_ITEMS:
        assert item["password"] not in jsonl
    assert "customer asked for a fix" in jsonl  # the agent's reason is on record


def test_concurrent_appends_make_one_unbroken_chain(app):
    """Writers racing for the chain head, some writing two records in a transaction and some
    rolling back after appending: every committed record is in one chain, none forks it."""
    writers, rounds = 6, 8
    start, errors = threading.Barrier(writers), []

    def append(writer: int) -> None:
        try:
            with app.app_context():
                start.wait(30)
                for n in range(rounds):
                    try:
                        with transaction():
                            audit.record("test.race", actor=f"writer-{writer}", n=n)
                            if n % 3 == 1:
                                audit.record("test.race", actor=f"writer-{writer}", n=n)
                            if n % 4 == 3:
                                raise _RolledBack()
                    except _RolledBack:
                        pass
                db.session.remove()
        except Exception as error:  # noqa: BLE001 - reported to the test thread
            errors.append(error)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    committed = sum(1 + (n % 3 == 1) for n in range(rounds) if n % 4 != 3) * writers
    with app.app_context():
        report = audit.verify_chain()
        assert report.ok, report
        raced = select(func.count()).where(AuditEvent.action == "test.race")
        assert db.session.scalar(raced) == committed


class _RolledBack(Exception):
    """Ends a test transaction after its appends, so that they roll back."""


def test_the_hashed_text_split_around_the_predecessor_makes_the_same_hash():
    """What PostgreSQL hashes (before + head + after) is what compute_hash hashes."""
    event = AuditEvent(
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        actor="agent-ü",
        action="credentials.revealed",
        outcome="success",
        ticket_ref='T-"1"',
        details={"prev_hash": "", "reason": 'naïve "quote" 漢字 \\ \n', "ids": [1, "b"]},
        prev_hash=hashlib.sha256(b"head").hexdigest(),
    )
    before, after = audit.hashed_text_around_prev(event)
    hashed = hashlib.sha256((before + event.prev_hash + after).encode()).hexdigest()
    assert hashed == audit.compute_hash(event)
