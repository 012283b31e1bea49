"""The audit trail across tickets in the admin console: filters checked against an independent
reading of the whole table, keyset pages that never load the table, exports byte-identical to
`vault-service audit-export`, the chain's status (and a tampered record named), every reading
audited, and malformed input answered 400 with nothing written."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import event, select, update

from vault_service.extensions import db
from vault_service.models import AuditEvent
from vault_service.services import audit
from vault_service.transactions import transaction

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
ACTORS = ("agent:alice", "agent:carol", "system", "cli")
ACTIONS = ("access.granted", "credentials.revealed", "agent.login", "ticket.closed")


def seed(app, count: int) -> None:
    """`count` records a minute apart from START, cycling through actors, actions and tickets."""
    with app.app_context():
        for n in range(count):
            with freeze_time(START + timedelta(minutes=n)), transaction():
                audit.record(
                    ACTIONS[n % 4],
                    actor=ACTORS[n % 3],
                    ticket_ref=f"T-{n % 5}" if n % 7 else None,
                    n=n,
                )


def all_records(app) -> list[AuditEvent]:
    with app.app_context():
        rows = list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())))
        db.session.expunge_all()
        db.session.rollback()
        return rows


def shown_ids(html: str) -> list[int]:
    marker = 'class="audit-row" data-id="'
    ids, start = [], html.find(marker)
    while start != -1:
        start += len(marker)
        ids.append(int(html[start : html.index('"', start)]))
        start = html.find(marker, start)
    return ids


def link(html: str, rel: str) -> str | None:
    marker = f'rel="{rel}" href="'
    start = html.find(marker)
    if start == -1:
        return None
    start += len(marker)
    return html[start : html.index('"', start)].replace("&amp;", "&")


def walk(client, first: str) -> tuple[list[int], list[str]]:
    """Every record id shown from `first` following "Older records" to the end; the pages."""
    ids, pages, path = [], [], first
    while path:
        html = client.get(path).get_data(as_text=True)
        ids += shown_ids(html)
        pages.append(html)
        path = link(html, "next")
    return ids, pages


def test_filters_match_an_independent_reading_of_the_table(app, admin_browser):
    seed(app, 60)
    client = admin_browser.client
    cases = {
        "ticket=T-2": lambda r: r.ticket_ref == "T-2",
        "agent=carol": lambda r: r.actor == "agent:carol",
        "event=credentials.revealed": lambda r: r.action == "credentials.revealed",
        "from=2026-03-01T08:10&to=2026-03-01T08:20": lambda r: (
            START + timedelta(minutes=10) <= r.occurred_at <= START + timedelta(minutes=20)
        ),
        "ticket=T-1&agent=alice&event=access.granted&from=2026-03-01T08:00:00Z": lambda r: (
            r.ticket_ref == "T-1" and r.actor == "agent:alice" and r.action == "access.granted"
        ),
    }
    for query, wanted in cases.items():
        ids, _ = walk(client, f"/admin/audit?{query}")
        # The table read after the walk: every page view is audited, and no filter above
        # matches those records (no ticket, actor bob, action audit.viewed, the present time).
        expected = [r.id for r in all_records(app) if wanted(r)]
        assert expected, query
        assert ids == expected, query


def test_pages_are_found_by_keyset_with_limit_and_walk_both_ways(app, admin_browser):
    seed(app, 120)
    client = admin_browser.client
    statements: list[str] = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        if "FROM audit_events" in statement and "ORDER BY" in statement:
            statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", keep)
    try:
        ids, pages = walk(client, "/admin/audit?to=2026-03-01T12:00")
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    expected = [r.id for r in all_records(app) if r.occurred_at <= START + timedelta(hours=4)]
    assert ids == expected and len(pages) == 3
    # Each page was one bounded query, the later ones starting below the last id shown (a
    # keyset: no page counts or skips the rows before it).
    reads = [s for s in statements if "LIMIT" in s and "audit_events.occurred_at" in s]
    assert len(reads) == len(pages) >= 2
    assert all("audit_events.id <" in s for s in reads[1:])

    # Back from the last page by "Newer records": the same pages, in reverse.
    html, back = pages[-1], []
    while (newer := link(html, "prev")) is not None:
        html = client.get(newer).get_data(as_text=True)
        back.insert(0, shown_ids(html))
    assert [i for page in back for i in page] == ids[: -len(shown_ids(pages[-1]))]


def test_exports_are_exactly_the_cli_format_whole_and_filtered(app, admin_browser, runner):
    seed(app, 30)
    client = admin_browser.client
    # Read at once: the body streams, and is read from the database as it is sent.
    page_csv = client.get("/admin/audit/export.csv", buffered=True)
    page_jsonl = client.get("/admin/audit/export.jsonl", buffered=True)
    assert page_csv.status_code == page_jsonl.status_code == 200
    assert page_csv.mimetype == "text/csv"
    assert page_csv.headers["Content-Disposition"].startswith('attachment; filename="audit-')
    assert page_csv.headers["Cache-Control"] == "no-store"
    # The CLI after both downloads: it writes no record of its own, so the trail is the same.
    # The bytes as written (click's `output` folds CSV's CRLF line ends).
    cli_jsonl = runner.invoke(args=["audit-export", "--format", "jsonl"]).stdout_bytes.decode()
    cli_csv = runner.invoke(args=["audit-export", "--format", "csv"]).stdout_bytes.decode()
    # The second export's own record came after the first was sent.
    assert page_jsonl.get_data(as_text=True) == cli_jsonl
    assert page_csv.get_data(as_text=True) == "".join(cli_csv.splitlines(keepends=True)[:-1])

    filtered = client.get("/admin/audit/export.jsonl?ticket=T-3&from=2026-03-01T08:05")
    rows = [json.loads(line) for line in cli_jsonl.splitlines()]
    wanted = [
        json.dumps(row, sort_keys=True) + "\n"
        for row in rows
        if row["ticket_ref"] == "T-3" and row["occurred_at"] >= "2026-03-01T08:05"
    ]
    assert wanted and filtered.get_data(as_text=True) == "".join(wanted)
    carol = client.get("/admin/audit/export.csv?agent=carol").text
    table = list(csv.DictReader(io.StringIO(carol)))
    assert table and {row["actor"] for row in table} == {"agent:carol"}
    assert json.loads(table[0]["details"])["n"] >= 0


def test_every_reading_is_audited_with_its_filter(app, admin_browser):
    client = admin_browser.client
    client.get("/admin/audit?ticket=T-9&event=agent.login")
    client.get("/admin/audit/export.csv?agent=alice")
    client.get("/admin/audit/verify")
    readings = [r for r in all_records(app) if r.action.startswith("audit.")][::-1]
    assert [r.action for r in readings] == [
        "audit.viewed",
        "audit.exported",
        "audit.verified",
        "audit.viewed",
    ]
    assert {r.actor for r in readings} == {"agent:bob"}
    assert readings[0].details["filter_ticket"] == "T-9"
    assert readings[0].details["filter_event"] == "agent.login"
    assert readings[0].ticket_ref is None  # a reading is not an event of the ticket
    assert readings[1].details["format"] == "csv"
    assert readings[1].details["filter_agent"] == "alice"
    assert readings[2].details["chain_ok"] is True


def test_chain_status_is_shown_and_a_tampered_record_is_named(app, admin_browser):
    seed(app, 12)
    client = admin_browser.client
    page = client.get("/admin/audit").get_data(as_text=True)
    assert 'data-chain="unchecked"' in page
    page = client.get("/admin/audit/verify").get_data(as_text=True)
    assert 'data-chain="ok"' in page and "Intact" in page
    victim = all_records(app)[-5]
    with app.app_context():
        db.session.execute(
            update(AuditEvent).where(AuditEvent.id == victim.id).values(outcome="failure")
        )
        db.session.commit()
    page = client.get("/admin/audit/verify").get_data(as_text=True)
    assert 'data-chain="broken"' in page
    assert f"record {victim.id} content does not match its hash" in page


@pytest.mark.parametrize(
    "query",
    [
        "ticket=../../etc",
        "agent=Robert'); DROP TABLE agents;--",
        "event=<script>",
        "from=yesterday",
        "to=2026-13-01T00:00",
        "from=2026-03-02T00:00&to=2026-03-01T00:00",
        "before=-1",
        "after=1e9",
    ],
)
def test_malformed_filters_are_a_clear_400_and_write_nothing(app, admin_browser, query):
    before = len(all_records(app))
    response = admin_browser.client.get(f"/admin/audit?{query}")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'role="alert"' in page and "Traceback" not in page and "<script>" not in page
    export = admin_browser.client.get(f"/admin/audit/export.csv?{query}")
    assert export.status_code == 400 or query.startswith(("before", "after"))
    assert len(all_records(app)) == before + (1 if export.status_code == 200 else 0)


def test_an_unknown_export_format_is_404(admin_browser):
    assert admin_browser.client.get("/admin/audit/export.xml").status_code == 404
