"""The agents' dashboard: every open ticket (waiting or holding credentials), searched by
reference and paged in SQL, with the agent's own live grants."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event

from vault_service.extensions import db
from vault_service.services import dashboard

from .conftest import SAMPLE_ITEMS
from .helpers import add_waiting_tickets


def refs_on(page_html: str) -> list[str]:
    return re.findall(r'<tr class="dashboard-ticket">\s*<td><a href="/tickets/([^"]+)"', page_html)


def test_dashboard_shows_status_kinds_by_label_retention_and_own_grants(
    client, agent, submitted_ticket, ticket_system
):
    ticket_system.create_link("T-waiting")
    agent.login()
    agent.request_access(submitted_ticket, reason="check the upload")
    page = client.get("/").get_data(as_text=True)
    rows = {
        ref: row
        for ref, row in re.findall(r"/tickets/([^\"]+)\">[^<]+</a></td>(.*?)</tr>", page, re.S)
    }
    assert "Credentials received" in rows[submitted_ticket]
    assert "SFTP" in rows[submitted_ticket] and "sftp" not in rows[submitted_ticket].split(">")
    assert "Waiting for the customer" in rows["T-waiting"]
    assert "Your active access" in page and "check the upload" in page
    assert page.count(f'href="/tickets/{submitted_ticket}"') == 2  # its row and the grant
    assert SAMPLE_ITEMS[0]["password"] not in page


def test_a_closed_ticket_leaves_the_dashboard(client, agent, submitted_ticket, ticket_system):
    ticket_system.close(submitted_ticket)
    agent.login()
    assert submitted_ticket not in client.get("/").get_data(as_text=True)


def test_dashboard_pages_120_tickets_by_50_newest_first(app, client, agent):
    add_waiting_tickets(app, 120)
    agent.login()
    first = refs_on(client.get("/").get_data(as_text=True))
    second = refs_on(client.get("/?page=2").get_data(as_text=True))
    third = client.get("/?page=3").get_data(as_text=True)
    assert first == [f"BULK-{n:04d}" for n in range(119, 69, -1)]
    assert second == [f"BULK-{n:04d}" for n in range(69, 19, -1)]
    assert refs_on(third) == [f"BULK-{n:04d}" for n in range(19, -1, -1)]
    assert "page 3 of 3" in third and 'rel="next"' not in third and 'rel="prev"' in third
    assert refs_on(client.get("/?page=9").get_data(as_text=True)) == []


def test_search_is_a_reference_prefix_and_pages_within_its_results(app, client, agent):
    add_waiting_tickets(app, 120)
    add_waiting_tickets(app, 3, prefix="OTHER_")
    agent.login()
    assert refs_on(client.get("/?q=BULK-001").get_data(as_text=True)) == [
        f"BULK-{n:04d}" for n in range(19, 9, -1)
    ]
    # "_" is literal, not LIKE's wildcard; the search is a prefix, not a substring.
    assert refs_on(client.get("/?q=OTHER_").get_data(as_text=True)) == [
        "OTHER_0002",
        "OTHER_0001",
        "OTHER_0000",
    ]
    assert refs_on(client.get("/?q=OTHERX").get_data(as_text=True)) == []
    assert refs_on(client.get("/?q=0001").get_data(as_text=True)) == []
    page2 = client.get("/?q=BULK&page=2").get_data(as_text=True)
    assert len(refs_on(page2)) == 50 and "q=BULK&amp;page=3" in page2


@pytest.mark.parametrize("query", ["page=0", "page=-1", "page=abc", "page=1e3", "q=%25", "q=a%20b"])
def test_bad_paging_or_search_is_a_clear_400(client, agent, query):
    agent.login()
    response = client.get(f"/?{query}")
    assert response.status_code == 400


def test_the_page_query_is_limited_in_sql_never_loading_every_ticket(app, agent):
    """The statements carry LIMIT/OFFSET, and no row beyond the page is fetched."""
    add_waiting_tickets(app, 120)
    statements: list[str] = []
    with app.app_context():
        engine = db.engine

        def capture(conn, cursor, statement, parameters, context, executemany):
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", capture)
        try:
            result = dashboard.dashboard_page(1, page=2)
        finally:
            event.remove(engine, "before_cursor_execute", capture)
    assert len(result.tickets) == 50 and result.total == 120 and result.pages == 3
    paged = [s for s in statements if "FROM tickets" in s and "count(" not in s.lower()]
    assert paged and all("LIMIT" in s and "OFFSET" in s for s in paged)
