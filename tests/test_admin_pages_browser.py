"""The dashboard and the admin console in real Chromium: paging and search by clicking, no
serious or critical accessibility finding (axe-core), and screenshots of each page."""

from __future__ import annotations

from datetime import timedelta

import pytest

from vault_service.clock import utcnow
from vault_service.extensions import db
from vault_service.models import Job
from vault_service.services import jobs

from .conftest import AgentBrowser
from .helpers import CHROMIUM, add_waiting_tickets, assert_accessible, log_browser_in, shoot

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


def test_dashboard_pages_and_searches_in_the_browser_and_is_accessible(
    app,
    live_server,
    page,
    agent,
    submitted_ticket,
):
    add_waiting_tickets(app, 60)
    log_browser_in(page, live_server, agent)
    page.goto(f"{live_server}/")
    assert page.locator("tr.dashboard-ticket").count() == 50
    assert_accessible(page, "dashboard")
    shoot(page, "dashboard")
    page.click("a[rel=next]")
    assert page.locator("tr.dashboard-ticket").count() == 11  # 61 open tickets
    assert page.locator(f"a:text-is('{submitted_ticket}')").count() == 1
    page.fill("#q", "BULK-005")
    page.click("form.search button")
    assert page.locator("tr.dashboard-ticket").count() == 10
    assert_accessible(page, "dashboard, searched")
    shoot(page, "dashboard-search")


def test_admin_console_pages_are_accessible(app, live_server, page, agent, submitted_ticket):
    """Agents, live grants and failing jobs, each with content, checked and photographed."""
    admin = AgentBrowser(app.test_client(), app)
    admin.create("bob", role="admin")
    agent.login()
    agent.request_access(submitted_ticket, reason="customer says the upload fails")
    with app.app_context():
        db.session.add(
            Job(
                kind="event_delivery",
                payload={},
                attempts=jobs.FAILING_AFTER_ATTEMPTS,
                next_attempt_at=utcnow() + timedelta(minutes=20),
                last_error="HTTP 502 from the receiver",
            )
        )
        db.session.commit()
    # log_browser_in signs in as alice; bob's login handed to the browser the same way.
    admin.client.environ_base["HTTP_USER_AGENT"] = page.evaluate("navigator.userAgent")
    assert admin.login("bob").status_code == 302
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = admin.client.get_cookie(name)
    page.context.add_cookies([{"name": name, "value": cookie.value, "url": live_server}])
    for path, name in (
        ("/admin/agents", "admin-agents"),
        ("/admin/grants", "admin-grants"),
        ("/admin/jobs", "admin-jobs"),
    ):
        page.goto(f"{live_server}{path}")
        assert_accessible(page, name)
        shoot(page, name)
    page.goto(f"{live_server}/admin/grants")
    page.click("tr.grant-row button")
    page.wait_for_selector("text=The access is revoked.")
    shoot(page, "admin-grants-revoked")
