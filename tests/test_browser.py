"""The customer's form and the agent's pages in a real browser (Debian's Chromium, Playwright):
exact values survive the round trip, and markup typed by a customer into any field never runs on
any agent page."""

from __future__ import annotations

import pytest

from .conftest import AGENT_PASSWORD
from .helpers import CHROMIUM, log_browser_in

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")

# Values a browser must carry byte-exact: unicode, leading and trailing spaces, and markup that
# would run if any page rendered it unescaped.
PASSWORD = "  pä ss wörd ✓ "
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def payload(tag: str) -> str:
    """Markup that runs if a page renders it unescaped, in text or in an attribute; tagged by
    its field so that each shows up where it belongs. `&amp;` must come back as typed, too."""
    return (
        f"\"'><img src=x onerror=\"window.__xss='{tag}'\">"
        f"<script>window.__xss='{tag}'</script>&amp;{tag}"
    )


# A URL the validator accepts (http(s), a host, no spaces) with markup in its path and query.
URL_PAYLOAD = (
    "https://shop.example.test/\"'><svg/onload=window.__xss='url'>"
    "?q=<script>window.__xss='url'</script>&amp;url"
)
# Every free-text field of the form; host and port are validated, so markup never gets in there.
FORM_PAYLOADS = {
    "#ft_username": payload("fu"),
    "#ft_password": payload("fp"),
    "#ap_url": URL_PAYLOAD,
    "#ap_username": payload("au"),
    "#ap_password": payload("ap"),
    "#ot_label": payload("ol"),  # at most 100 characters: short tags keep it under
    "#ot_secret": payload("os"),
    "#notes": payload("no"),
}


@pytest.fixture
def page():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)  # generous: CI machines are shared and noisy
            yield page
        finally:
            browser.close()


def record_responses(page) -> list:
    """Every response the browser receives, in order."""
    seen: list = []
    page.on("response", lambda response: seen.append(response))
    return seen


def assert_no_server_banner(responses) -> None:
    for response in responses:
        server = response.headers.get("server", "")
        assert "werkzeug" not in server.lower() and "python" not in server.lower(), response.url


def assert_inert(page, where: str) -> None:
    """Nothing a customer typed ran or became an element."""
    assert page.evaluate("window.__xss") is None, where
    injected = page.evaluate(
        "document.querySelectorAll('img[src=x], svg, script:not([src])').length"
    )
    assert injected == 0, where


def test_customer_submits_in_a_browser_and_the_agent_reveals_exact_values(
    live_server, page, ticket_system, agent
):
    console = []
    page.on("console", lambda message: console.append(message.text))
    responses = {}
    page.on("response", lambda response: responses.setdefault(response.url, response))
    every_response = record_responses(page)

    path = ticket_system.link_path("T-browser")
    page.goto(live_server + path)
    assert "at most 30 days" in page.inner_text(".promise")
    page.select_option("#ft_kind", "sftp")
    page.fill("#ft_host", "files.example.test")
    page.fill("#ft_port", "2222")
    page.fill("#ft_username", "deploy")
    page.fill("#ft_password", PASSWORD)
    page.fill("#ot_label", XSS)
    page.fill("#ot_secret", XSS)
    page.fill("#notes", XSS)
    page.click("button[type=submit]")
    assert "received securely" in page.inner_text("h1")
    # Reloading the link tells this browser (it holds the link's proof cookie) it was received;
    # tests/test_customer_form.py proves every other visitor gets the one "link unavailable".
    page.goto(live_server + path)
    assert "Already received" in page.inner_text("h1")

    page.goto(live_server + "/login")
    page.fill("#username", "alice")
    page.fill("#password", AGENT_PASSWORD)
    page.fill("#code", agent.totp_code())
    page.click("button[type=submit]")
    page.click("text=T-browser")
    page.fill("#reason", "customer reported a broken upload")
    page.fill("#duration_minutes", "15")
    page.click("button:has-text('Request access')")
    page.click("button:has-text('Reveal credentials')")

    values = page.eval_on_selector_all("code.secret", "nodes => nodes.map(n => n.textContent)")
    assert PASSWORD in values
    assert values.count(XSS) == 3  # shown as text, byte-exact...
    assert page.evaluate("window.__xss") is None  # ...and never run
    reveal = next(r for url, r in responses.items() if url.endswith("/tickets/T-browser/reveal"))
    assert reveal.request.method == "POST"
    assert reveal.headers["cache-control"] == "no-store"
    # The CSP blocks nothing the pages themselves need.
    assert not [text for text in console if "Content Security Policy" in text]
    assert_no_server_banner(every_response)


def test_markup_in_every_customer_field_is_inert_on_every_agent_page(
    live_server, page, ticket_system, agent
):
    every_response = record_responses(page)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    # The customer types markup into every free-text field, in the browser.
    path = ticket_system.link_path("T-xss")
    page.goto(live_server + path)
    page.select_option("#ft_kind", "ftps")
    page.fill("#ft_host", "files.example.test")
    page.fill("#ft_port", "990")
    for selector, value in FORM_PAYLOADS.items():
        page.fill(selector, value)
    page.click("button[type=submit]")
    assert "received securely" in page.inner_text("h1"), page.content()[:2000]
    assert_inert(page, "customer success page")

    log_browser_in(page, live_server, agent)
    # The access request is the agent's own step; it goes through the helper as well.
    assert agent.request_access("T-xss", reason="customer asked for a fix").status_code == 302

    page.goto(live_server + "/")
    # Its row, and the agent's grant on it under "Your active access".
    assert page.locator("tr.dashboard-ticket a", has_text="T-xss").count() == 1
    assert_inert(page, "dashboard")
    assert "__xss" not in page.content()
    page.click("tr.dashboard-ticket a:text-is('T-xss')")
    assert page.url.endswith("/tickets/T-xss")
    assert_inert(page, "ticket page")
    # Kinds and dates only: no customer value, escaped or not, is on the ticket page.
    assert "__xss" not in page.content()

    page.locator("form[action$='/tickets/T-xss/reveal'] button[type=submit]").click()
    page.wait_for_selector("code.secret", state="attached")  # masked (hidden) until asked
    assert_inert(page, "reveal page")
    shown = page.eval_on_selector_all("code.secret", "nodes => nodes.map(n => n.textContent)")
    # Each value is on the page as text, exactly as typed (quotes, tags and `&amp;` included).
    for selector, value in FORM_PAYLOADS.items():
        assert shown.count(value) == 1, (selector, shown)
    assert "files.example.test" in shown and "990" in shown
    assert not dialogs
    assert_no_server_banner(every_response)
