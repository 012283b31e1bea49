"""The customer's form and the agent's reveal in a real browser (Debian's Chromium, Playwright)."""

from __future__ import annotations

import shutil
import threading

import pytest
from werkzeug.serving import make_server

from .conftest import AGENT_PASSWORD

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")

# Values a browser must carry byte-exact: unicode, leading and trailing spaces, and markup that
# would run if any page rendered it unescaped.
PASSWORD = "  pä ss wörd ✓ "
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


@pytest.fixture
def live_server(app):
    """The app on a loopback port, served by werkzeug in a thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


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


def test_customer_submits_in_a_browser_and_the_agent_reveals_exact_values(
    live_server, page, ticket_system, agent
):
    console = []
    page.on("console", lambda message: console.append(message.text))
    responses = {}
    page.on("response", lambda response: responses.setdefault(response.url, response))

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
    # Reloading the link now shows the same page as any dead link.
    page.goto(live_server + path)
    assert "Link unavailable" in page.inner_text("h1")

    page.goto(live_server + "/login")
    page.fill("#username", "alice")
    page.fill("#password", AGENT_PASSWORD)
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
