"""`python -m bench.audit_trail N DATABASE_URL`: the admin console's audit trail at N records.

Bulk-inserts N hash-chained records (the database is emptied first: never point it at a real
one), then times the console's service functions: a page with each filter, a page deep in the
trail, the chain's verification and a whole-trail export. No Vault is needed. README "The admin
console" quotes the numbers.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, insert, text

from vault_service import create_app, schema
from vault_service.config import load_settings
from vault_service.extensions import db
from vault_service.models import EVENTS, AuditEvent
from vault_service.services import audit, audit_trail

ACTIONS = ("access.granted", "credentials.revealed", "agent.login", "ticket.closed")
START = datetime(2026, 1, 1, tzinfo=UTC)


def empty(url: str) -> None:
    """A database with nothing in it."""
    if url.startswith("postgresql"):
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    elif os.path.exists(path := url.removeprefix("sqlite:///")):
        os.remove(path)


def seed(count: int) -> None:
    """`count` chained records a second apart, 40 actors, 5000 tickets, 4 actions."""
    prev, rows = audit.GENESIS_HASH, []
    for n in range(count):
        event = AuditEvent(
            occurred_at=START + timedelta(seconds=n),
            actor=f"agent:a{n % 40}",
            action=ACTIONS[n % 4],
            outcome="success",
            ticket_ref=f"T-{n % 5000}",
            details={"n": n},
            prev_hash=prev,
        )
        event.hash = prev = audit.compute_hash(event)
        rows.append({field: getattr(event, field) for field in audit.RECORD_FIELDS})
        if len(rows) == 5000:
            db.session.execute(insert(EVENTS), rows)
            rows = []
    if rows:
        db.session.execute(insert(EVENTS), rows)
    db.session.commit()


def timed(label: str, call: Callable[[], object], repeats: int = 20) -> None:
    call()
    started = time.perf_counter()
    for _ in range(repeats):
        call()
    print(f"{label}: {(time.perf_counter() - started) / repeats * 1000:.2f} ms")


def main(count: int, url: str) -> None:
    empty(url)
    settings = load_settings(
        {},
        env="testing",
        database_url=url,
        secret_key=secrets.token_urlsafe(48),
        ticket_api_tokens=(secrets.token_urlsafe(32),),
        webhook_secrets=(secrets.token_bytes(32),),
        public_url="http://localhost",
        vault_addr="http://127.0.0.1:1",
        vault_token="unused",  # noqa: S106 - nothing here calls Vault
        deployment_id="bench",
    )
    app = create_app(settings)
    with app.app_context():
        schema.upgrade(db.engine)
        seed(count)
        wanted = audit_trail.AuditFilter
        middle = START + timedelta(seconds=count // 2)
        timed("newest page, no filter", lambda: audit_trail.audit_page(wanted()))
        timed("a page deep in the trail", lambda: audit_trail.audit_page(wanted(), older_than=10))
        timed("by ticket", lambda: audit_trail.audit_page(wanted(ticket_ref="T-42")))
        timed("by agent", lambda: audit_trail.audit_page(wanted(agent="a7")))
        timed("by event", lambda: audit_trail.audit_page(wanted(action="agent.login")))
        timed("an agent with no record", lambda: audit_trail.audit_page(wanted(agent="nobody")))
        hour = wanted(since=middle, until=middle + timedelta(hours=1))
        timed("one hour in the middle", lambda: audit_trail.audit_page(hour), repeats=5)
        started = time.perf_counter()
        report = audit_trail.verify_chain()
        took = time.perf_counter() - started
        print(f"verify: {report.records} records, ok={report.ok}, {took:.2f} s")
        started = time.perf_counter()
        size = sum(len(line) for line in audit_trail.export(wanted(), "jsonl"))
        print(f"export jsonl: {size / 1e6:.1f} MB in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
