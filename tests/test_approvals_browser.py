"""Four-eyes approval in real Chromium: alice asks and waits, bob (an admin, in his own browser)
approves from the console, alice reveals; every page checked with axe-core and photographed."""

from __future__ import annotations

import pytest

from .conftest import SAMPLE_ITEMS, AgentBrowser
from .helpers import CHROMIUM, assert_accessible, log_browser_in, shoot

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


@pytest.fixture
def settings(make_settings):
    return make_settings(access_approval="required")


def test_a_request_waits_an_admin_approves_it_in_the_console_and_the_requester_reveals(
    app, live_server, page, agent, submitted_ticket
):
    log_browser_in(page, live_server, agent)
    page.goto(f"{live_server}/tickets/{submitted_ticket}")
    assert page.locator("text=An admin must approve your request").count() == 1
    page.fill("#reason", "customer says the upload fails")
    page.fill("#duration_minutes", "15")
    page.click("button:has-text('Request access')")
    page.wait_for_selector("text=Your request is waiting for an admin's approval.")
    assert page.locator("h2:has-text('Waiting for approval')").count() == 1
    assert page.locator("button:has-text('Reveal credentials')").count() == 0
    assert page.locator("button:has-text('Request access')").count() == 0
    assert_accessible(page, "ticket page, waiting for approval")
    shoot(page, "approval-pending")

    # Bob, an admin, in a browser of his own.
    bob = AgentBrowser(app.test_client(), app)
    bob.create("bob", role="admin")
    admin_page = page.context.browser.new_context(
        viewport={"width": 1100, "height": 900}
    ).new_page()
    # log_browser_in signs in as alice; bob's login is handed to his browser the same way.
    bob.client.environ_base["HTTP_USER_AGENT"] = admin_page.evaluate("navigator.userAgent")
    assert bob.login("bob").status_code == 302
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = bob.client.get_cookie(name)
    admin_page.context.add_cookies([{"name": name, "value": cookie.value, "url": live_server}])
    admin_page.goto(f"{live_server}/tickets/{submitted_ticket}")
    row = admin_page.locator("section.approval-pending tr.request-row")
    assert row.count() == 1 and "alice" in row.inner_text()
    assert_accessible(admin_page, "ticket page, an admin with a request to decide")
    shoot(admin_page, "approval-ticket-admin")

    admin_page.goto(f"{live_server}/admin/approvals")
    row = admin_page.locator("tr.request-row")
    assert row.count() == 1
    assert "customer says the upload fails" in row.inner_text()
    assert "15 min from approval" in row.inner_text()
    assert_accessible(admin_page, "admin console, access requests")
    shoot(admin_page, "admin-approvals")
    row.locator("button:has-text('Approve')").click()
    admin_page.wait_for_selector("text=Approved: the agent has access until")
    assert admin_page.locator("text=No access request is waiting for approval.").count() == 1

    # Alice, on her ticket page again: access, and the reveal works as without approval.
    page.goto(f"{live_server}/tickets/{submitted_ticket}")
    assert page.locator("h2:has-text('Waiting for approval')").count() == 0
    page.click("button:has-text('Reveal credentials')")
    page.wait_for_selector("#credentials dd.field .tools")
    raw = page.evaluate(
        "() => Array.from(document.querySelectorAll('#credentials .secret-raw'),"
        " n => JSON.parse(n.textContent))"
    )
    assert SAMPLE_ITEMS[0]["password"] in raw
    assert_accessible(page, "reveal page after an approval")
