"""Creating an agent with a set-up link, and the agent's first visit, in real Chromium: the link
copied (read back from the clipboard), the password chosen, the second factor's page reached;
no serious or critical accessibility finding; screenshots."""

from __future__ import annotations

import pytest

from .conftest import AgentBrowser
from .helpers import CHROMIUM, assert_accessible, log_browser_in, shoot

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


def test_admin_creates_an_agent_and_the_agent_sets_up_in_the_browser(app, live_server, page):
    admin = AgentBrowser(app.test_client(), app)
    admin.create("bob", role="admin")
    log_browser_in(page, live_server, admin, "bob")
    page.goto(f"{live_server}/admin/agents")
    page.fill("#new-username", "dana")
    page.click("form.create-agent button")
    page.wait_for_selector("#setup-url")
    assert_accessible(page, "set-up link shown to the admin")
    shoot(page, "admin-setup-link")
    url = page.inner_text("#setup-url")
    page.click("button:text-is('Copy')")
    page.wait_for_selector("text=Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == url
    page.goto(f"{live_server}/admin/agents")
    assert page.locator("tr[data-agent=dana]").inner_text().count("Set-up pending") == 1
    assert_accessible(page, "agents with a pending set-up")

    # The new agent, in a browser of their own (no admin session).
    page.context.clear_cookies()
    path = url.removeprefix("http://localhost")
    page.goto(f"{live_server}{path}")
    assert_accessible(page, "agent set-up")
    page.fill("#password", "password1234")
    page.fill("#confirm_password", "password1234")
    page.click("form button[type=submit]")
    page.wait_for_selector(".flash.error li")
    assert "most common" in page.inner_text(".flash.error")
    assert_accessible(page, "agent set-up, refused password")
    page.fill("#password", "copper lantern by the quay")
    page.fill("#confirm_password", "copper lantern by the quay")
    shoot(page, "agent-setup")
    page.click("form button[type=submit]")
    page.wait_for_selector("#totp-secret")
    assert page.url.endswith("/account/two-factor")
    page.goto(f"{live_server}{path}")
    assert "Link unavailable" in page.inner_text("h1")
