"""Every customer page in real Chromium (Debian's, through Playwright): axe-core finds nothing
serious or critical, the form keeps what is not secret after an error, the error summary takes
focus, input borders reach 3:1, dates show in the reader's zone. Screenshots of each page go to
the test's tmp dir, and to $VAULT_SERVICE_SCREENSHOTS when set (for people to look at)."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from vault_service import create_app
from vault_service.devtools.processes import free_port
from vault_service.extensions import db

from .helpers import (
    AXE,
    BRAND,
    CHROMIUM,
    PNG,
    PRIVACY,
    SUPPORT,
    QuietRequestHandler,
    assert_accessible,
)

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")

AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
SECRET = "pw-canary-9e41 ✓"


def serve(app) -> tuple[str, object]:
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


@pytest.fixture
def live_server(app):
    """The test's app (unbranded) on a loopback port."""
    url, server = serve(app)
    yield url
    server.shutdown()


@pytest.fixture
def branded_server(make_settings, settings, tmp_path):
    """The branded app on a loopback port, and one without Vault over the same database."""
    logo = tmp_path / "logo.png"
    logo.write_bytes(PNG)
    brand = {
        "secret_key": settings.secret_key,
        "brand_name": BRAND,
        "brand_logo": str(logo),
        "support_contact": SUPPORT,
        "privacy_url": PRIVACY,
    }
    apps = [
        create_app(make_settings(**brand)),
        create_app(make_settings(**brand, vault_addr=f"http://127.0.0.1:{free_port()}")),
    ]
    served = [serve(app) for app in apps]
    yield apps[0], served[0][0], served[1][0]
    for app, (_, server) in zip(apps, served, strict=True):
        server.shutdown()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, **context):
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(30_000)
    page.console_messages = []
    page.on("console", lambda message: page.console_messages.append(message.text))
    return page


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def shoot(page, screenshots: Path, name: str) -> None:
    """Keep a full-page picture of what the customer sees."""
    path = screenshots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    wanted = os.environ.get("VAULT_SERVICE_SCREENSHOTS")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(wanted) / path.name)


def assert_csp_clean(page, where: str) -> None:
    assert not [t for t in page.console_messages if "Content Security Policy" in t], where


def fill_good_ftp(page) -> None:
    page.select_option("#ft_kind", "sftp")
    page.fill("#ft_host", "files.example.test")
    page.fill("#ft_port", "2222")
    page.fill("#ft_username", "deploy-7c1f")
    page.fill("#ft_password", SECRET)


def test_the_vendored_axe_is_the_published_one():
    assert hashlib.sha256(AXE.read_bytes()).hexdigest() == AXE_SHA256


def test_every_customer_page_passes_axe_and_is_photographed(
    branded_server, browser, screenshots, ticket_system_factory
):
    app, base, offline = branded_server
    ticket_system, _, _ = ticket_system_factory(app)
    message = "Please send the FTP login of the staging server.\nThanks! <Acme support>"
    path = ticket_system.link_path("T-a11y", message=message)
    page = new_page(browser)

    page.goto(base + path)
    assert "Thanks! <Acme support>" in page.inner_text(".link-message")
    assert BRAND in page.inner_text("header") and page.locator("img.logo").count() == 1
    assert_accessible(page, "form")
    shoot(page, screenshots, "01-form")

    fill_good_ftp(page)
    page.fill("#ft_port", "not a port")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-error-summary]")
    assert_accessible(page, "form with errors")
    shoot(page, screenshots, "02-form-errors")

    # Vault down on submit (the same service and database, Vault unreachable): the same form,
    # values kept, a banner.
    page.goto(offline + path)
    fill_good_ftp(page)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Temporarily unavailable")
    assert page.input_value("#ft_username") == "deploy-7c1f"
    assert page.input_value("#ft_password") == ""
    assert_accessible(page, "503 form")
    shoot(page, screenshots, "03-form-503")

    page.goto(base + path)
    fill_good_ftp(page)
    page.click("button[type=submit]")
    page.wait_for_selector("text=received securely")
    assert_accessible(page, "success")
    shoot(page, screenshots, "04-success")

    page.goto(base + path)
    assert page.inner_text("h1") == "Already received"
    assert_accessible(page, "already received")
    shoot(page, screenshots, "05-already-received")

    stranger = new_page(browser)
    stranger.goto(base + path)
    assert stranger.inner_text("h1") == "Link unavailable"
    assert_accessible(stranger, "410")
    shoot(stranger, screenshots, "06-link-unavailable")

    for locale in ("de", "fr", "es"):
        local = new_page(browser, locale=locale)
        local.goto(base + ticket_system.link_path(f"T-a11y-{locale}", message=message))
        assert local.evaluate("document.documentElement.lang") == locale
        assert_accessible(local, f"form {locale}")
        shoot(local, screenshots, f"07-form-{locale}")
        assert_csp_clean(local, locale)
    for each in (page, stranger):
        assert_csp_clean(each, "pages")


def test_the_form_keeps_values_and_the_error_summary_takes_focus(
    live_server, browser, ticket_system
):
    page = new_page(browser)
    page.goto(live_server + ticket_system.link_path("T-focus"))
    fill_good_ftp(page)
    page.fill("#ft_port", "99999")
    page.fill("#ap_url", "ftp://not-http.example")
    page.fill("#notes", "my notes\nline two")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-error-summary]")

    # Focus is on the summary, so a screen reader announces it first.
    assert page.evaluate("document.activeElement.hasAttribute('data-error-summary')")
    assert page.input_value("#ft_host") == "files.example.test"
    assert page.input_value("#ft_username") == "deploy-7c1f"
    assert page.input_value("#ft_port") == "99999"
    assert page.input_value("#ap_url") == "ftp://not-http.example"
    assert page.input_value("#notes") == "my notes\nline two"
    assert page.input_value("#ft_kind") == "sftp"
    assert page.input_value("#ft_password") == ""
    assert SECRET not in page.content()
    assert "enter the password again" in page.inner_text("#ft_password-retype")

    links = page.eval_on_selector_all(
        "[data-error-summary] a", "nodes => nodes.map(n => n.getAttribute('href'))"
    )
    assert links == ["#ft_port", "#ap_url", "#ap_username", "#ap_password"]
    page.click("[data-error-summary] a[href='#ap_url']")
    assert page.evaluate("document.activeElement.id") == "ap_url"
    assert_csp_clean(page, "form")


def contrast(first: tuple[int, ...], second: tuple[int, ...]) -> float:
    def luminance(rgb):
        channels = [c / 255 for c in rgb[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_input_borders_have_three_to_one_contrast_with_what_is_behind_them(
    live_server, browser, ticket_system
):
    page = new_page(browser)
    page.goto(live_server + ticket_system.link_path("T-contrast"))
    measured = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
        .map(el => {
            let behind = el.parentElement;
            while (behind && getComputedStyle(behind).backgroundColor === 'rgba(0, 0, 0, 0)') {
                behind = behind.parentElement;
            }
            const rgb = s => s.match(/[0-9.]+/g).map(Number);
            return [el.id, rgb(getComputedStyle(el).borderTopColor),
                    rgb(getComputedStyle(behind || document.body).backgroundColor)];
        })"""
    )
    assert len(measured) > 10
    for name, border, background in measured:
        assert contrast(tuple(border), tuple(background)) >= 3.0, (name, border, background)


def test_dates_show_in_the_readers_time_zone_with_utc_in_the_markup(
    live_server, browser, ticket_system
):
    page = new_page(browser, timezone_id="Asia/Tokyo", locale="en-US")
    page.goto(live_server + ticket_system.link_path("T-tz"))
    element = page.locator("time[data-local]").first
    instant = element.get_attribute("datetime")
    assert instant.endswith("Z")
    shown = element.inner_text()
    expected = page.evaluate(
        "iso => new Date(iso).toLocaleString('en', {dateStyle: 'long', timeStyle: 'short',"
        " timeZone: 'Asia/Tokyo'})",
        instant,
    )
    assert shown == expected and "UTC" not in shown
    assert element.get_attribute("title").endswith("UTC")  # the server's UTC text, kept
