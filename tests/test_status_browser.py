"""The status page in a real browser (Debian's Chromium, Playwright): from the success page's
link to the receipt, through the two-step "delete now" whose Origin the browser itself sends.

Every state of the page (open, confirm, deleting, deleted) passes axe-core; the page wears the
organisation's branding and speaks the customer's language. Screenshots go to
$VAULT_SERVICE_SCREENSHOTS when set (else the test's temporary directory)."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from vault_service import create_app
from vault_service.devtools.processes import free_port

from .conftest import AGENT_PASSWORD  # noqa: F401  (the agent helper logs in with it)
from .helpers import BRAND, PNG, PRIVACY, SUPPORT, assert_accessible, run_worker_pass

CHROMIUM = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed"),
    pytest.mark.usefixtures("openbao"),
]


@pytest.fixture
def screenshots(tmp_path) -> Path:
    directory = Path(os.environ.get("VAULT_SERVICE_SCREENSHOTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def served(make_settings, ticket_system_factory, tmp_path):
    """The branded app on a loopback port that is also its public URL, so the browser's Origin
    is ours."""
    port = free_port()
    logo = tmp_path / "logo.png"
    logo.write_bytes(PNG)
    app = create_app(
        make_settings(
            public_url=f"http://127.0.0.1:{port}",
            brand_name=BRAND,
            brand_logo=str(logo),
            support_contact=SUPPORT,
            privacy_url=PRIVACY,
        )
    )
    ticket_system, agent, _ = ticket_system_factory(app)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{port}", ticket_system, agent
    server.shutdown()


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, **options):
    """A page of the size the screenshots are read at (UTC: the local-time text is known)."""
    page = browser.new_page(viewport={"width": 1000, "height": 900}, timezone_id="UTC", **options)
    page.set_default_timeout(30_000)
    return page


@pytest.fixture
def page(browser):
    return new_page(browser)


def submit_sftp(page, base: str, path: str) -> None:
    """The customer sends one SFTP login through the form."""
    page.goto(base + path)
    page.select_option("#ft_kind", "sftp")
    page.fill("#ft_host", "files.example.test")
    page.fill("#ft_port", "22")
    page.fill("#ft_username", "deploy")
    page.fill("#ft_password", "browser-canary-secret")
    page.click("button[type=submit]")


def assert_branded(page, where: str) -> None:
    """The organisation's name, logo, support contact and privacy link, as on the form."""
    assert page.inner_text("header .brand .name") == BRAND, where
    assert page.locator("header img.logo").evaluate("img => img.complete && img.naturalWidth > 0")
    assert page.get_attribute("footer.site a[href^='mailto:']", "href") == f"mailto:{SUPPORT}"
    assert page.locator(f"footer.site a[href='{PRIVACY}']").count() == 1, where


def test_the_customer_follows_and_deletes_in_a_browser(served, page, screenshots):
    app, base, ticket_system, agent = served
    console = []
    page.on("console", lambda message: console.append(message.text))

    path = ticket_system.link_path("T-browser-status").removeprefix(base)
    submit_sftp(page, base, path)
    assert "shown only once" in page.inner_text(".status-link")
    page.screenshot(path=screenshots / "success-with-status-link.png", full_page=True)
    page.click(".status-link a")
    assert page.url.startswith(base + "/r/")
    assert "SFTP" in page.inner_text("main")

    # An agent looks, with a reason; the customer's page shows it.
    assert agent.login().status_code == 302
    assert agent.request_access("T-browser-status", reason="fix the upload").status_code == 302
    grant_id = agent.current_grant_id("T-browser-status")
    assert agent.reveal("T-browser-status", grant_id).status_code == 200
    page.reload()
    assert "fix the upload" in page.inner_text("table")
    assert_branded(page, "open")
    assert_accessible(page, "status page, open")
    page.screenshot(path=screenshots / "status-before-deletion.png", full_page=True)

    # Two steps: the button, then the confirmation, posted with the browser's own Origin.
    page.click("button:has-text('Delete my credentials now')")
    assert "Delete everything now?" in page.inner_text(".confirm")
    assert_accessible(page, "status page, confirming")
    page.screenshot(path=screenshots / "status-confirm-deletion.png", full_page=True)
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("button:has-text('Yes, delete everything now')")
    assert posted.value.status == 202
    assert "being deleted" in page.inner_text("h1")
    assert_branded(page, "deleting")
    assert_accessible(page, "status page, deleting")
    page.screenshot(path=screenshots / "status-deleting.png", full_page=True)
    assert agent.reveal("T-browser-status", grant_id).status_code == 403

    run_worker_pass(app)
    page.click("text=Back to your status page")
    assert "Deletion receipt" in page.inner_text("main")
    assert "customer_deleted" in page.inner_text("pre.receipt")
    assert "browser-canary-secret" not in page.content()
    assert_branded(page, "deleted")
    assert_accessible(page, "status page, deleted")
    page.screenshot(path=screenshots / "status-after-deletion.png", full_page=True)
    assert not [text for text in console if "Content Security Policy" in text]


def test_the_status_page_is_branded_and_speaks_the_browsers_language(served, browser, screenshots):
    app, base, ticket_system, agent = served
    page = new_page(browser, extra_http_headers={"Accept-Language": "de"})
    path = ticket_system.link_path("T-browser-de").removeprefix(base)
    submit_sftp(page, base, path)
    page.click(".status-link a")
    assert page.url.startswith(base + "/r/")
    assert page.get_attribute("html", "lang") == "de"
    assert page.inner_text("h1") == "Ihre Zugangsdaten für Ticket T-browser-de"
    main = page.inner_text("main")
    assert "Was wir erhalten haben" in main and "Niemand hat darauf zugegriffen." in main
    assert "Sicher gespeichert" in main and "Delete" not in main
    assert page.inner_text("footer.site a[href^='http']") == "Datenschutzerklärung"
    assert_branded(page, "German")
    # Dates: the UTC instant in the markup, shown by customer.js in the reader's zone.
    stamp = page.get_attribute("section[aria-labelledby=received] time", "datetime")
    assert stamp and stamp.endswith("Z")
    page.click("button:has-text('Meine Zugangsdaten jetzt löschen')")
    assert "Jetzt alles löschen?" in page.inner_text(".confirm")
    assert_accessible(page, "status page in German, confirming")
    page.screenshot(path=screenshots / "status-german-confirm.png", full_page=True)
    page.click("button:has-text('Ja, jetzt alles löschen')")
    assert page.inner_text("h1") == "Ihre Zugangsdaten werden gelöscht"
    run_worker_pass(app)
    page.click("text=Zurück zu Ihrer Statusseite")
    assert "Löschbestätigung" in page.inner_text("main")
    assert "weil Sie uns gebeten haben, sie zu löschen" in page.inner_text("main")
    assert_accessible(page, "status page in German, deleted")
    page.screenshot(path=screenshots / "status-german-deleted.png", full_page=True)
