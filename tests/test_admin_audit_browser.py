"""The admin console's audit trail in real Chromium: filtering by the form, paging, the chain
verified, no serious or critical accessibility finding, and screenshots."""

from __future__ import annotations

import pytest

from .conftest import AgentBrowser
from .helpers import CHROMIUM, assert_accessible, log_browser_in, shoot

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


def test_audit_trail_filters_pages_verifies_and_is_accessible(
    app, live_server, page, agent, submitted_ticket
):
    agent.login()
    agent.request_access(submitted_ticket, reason="customer says the upload fails")
    agent.reveal(submitted_ticket)
    admin = AgentBrowser(app.test_client(), app)
    admin.create("bob", role="admin")
    log_browser_in(page, live_server, admin, "bob")
    page.goto(f"{live_server}/admin/audit")
    assert page.locator("#chain-status[data-chain=unchecked]").count() == 1
    assert page.locator("tr.audit-row").count() > 5
    assert_accessible(page, "audit trail")
    shoot(page, "admin-audit")

    page.fill("#ticket", submitted_ticket)
    page.fill("#agent", "alice")
    page.click("form.audit-filter button")
    page.wait_for_url(f"**ticket={submitted_ticket}**")
    actions = page.locator("tr.audit-row td:nth-child(3)").all_inner_texts()
    assert actions == ["credentials.revealed", "access.granted"]
    page.click("text=Verify the whole chain now")
    page.wait_for_selector("#chain-status[data-chain=ok]")
    # The filter is kept through the verification.
    assert page.locator("tr.audit-row").count() == 2
    assert_accessible(page, "audit trail, filtered and verified")
    shoot(page, "admin-audit-filtered")

    page.goto(f"{live_server}/admin/audit?from=not-a-time")
    assert page.locator("p.flash.error[role=alert]").inner_text().startswith("from:")
    assert_accessible(page, "audit trail, bad filter")
