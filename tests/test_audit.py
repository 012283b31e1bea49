"""The audit trail: every lifecycle step recorded, no secrets, and tampering detected."""

from __future__ import annotations

import csv
import io
import json

from sqlalchemy import select, text, update

from vault_service.extensions import db
from vault_service.models import AuditEvent

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
