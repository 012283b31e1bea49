"""The form respects the customer (issue 11): it keeps what they typed except secrets, says what
is wrong at the top, speaks their language, shows whose page it is, and tells the browser that
used a link (and only that browser) that it was received. Browser checks live in
tests/test_customer_pages_browser.py."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from freezegun import freeze_time
from jinja2.ext import babel_extract
from markupsafe import escape
from sqlalchemy import select

from vault_service import create_app
from vault_service.clock import utcnow
from vault_service.config import ConfigError
from vault_service.extensions import db
from vault_service.i18n import SUPPORTED_LOCALES, TRANSLATIONS
from vault_service.kinds import form_sections
from vault_service.kinds.notes import NOTES_FIELD
from vault_service.kinds.validation import check_field
from vault_service.models import SubmissionLink
from vault_service.services.customer_form import RECEIVED_COOKIE

from .helpers import BRAND, GOOD, PNG, PRIVACY, SUPPORT, csrf_token_of, form_post


@pytest.fixture
def logo_file(tmp_path) -> Path:
    path = tmp_path / "logo.png"
    path.write_bytes(PNG)
    return path


@pytest.fixture
def branded_app(make_settings, settings, logo_file):
    """The service as an organisation configures it: name, logo, support contact, privacy URL."""
    app = create_app(
        make_settings(
            secret_key=settings.secret_key,
            brand_name=BRAND,
            brand_logo=str(logo_file),
            support_contact=SUPPORT,
            privacy_url=PRIVACY,
        )
    )
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


# Every field of every section filled with text the validator refuses somewhere (a host with a
# space, a port of letters, ...), each value unique so the page can be searched for it.
def typed_everywhere() -> dict[str, str]:
    data = {}
    for section in form_sections():
        if section.has_choice:
            data[f"{section.code}_kind"] = section.kinds[-1].name
        for field in section.fields:
            name = f"{section.code}_{field.name}"
            data[name] = field.choices[0][0] if field.choices else f"typed {name} value"
    data[NOTES_FIELD.name] = "typed notes <b>value</b> & more"
    return data


# -- keeping values, retyping secrets, the error summary -----------------------------------------


def test_after_an_error_every_refilled_value_is_kept_and_no_secret_is(client, ticket_system):
    path = ticket_system.link_path("T-keep")
    data = typed_everywhere()
    response = form_post(client, path, data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    for section in form_sections():
        for field in section.fields:
            name = f"{section.code}_{field.name}"
            if field.input == "select":
                assert f'<option value="{data[name]}" selected>' in page, name
            elif field.refilled:
                assert html.escape(data[name]) in page, name
            else:
                # A password's value is nowhere in the page, and its hint says to type it again.
                assert data[name] not in page and html.escape(data[name]) not in page, name
                assert f'id="{name}-retype"' in page, name
                assert "For your security, enter" in page
        if section.has_choice:
            kind = data[f"{section.code}_kind"]
            assert f'<option value="{kind}" selected>' in page
    # Notes: secret to everyone else, but the author's own text comes back, escaped.
    assert html.escape(data["notes"]) in page and "<b>value</b>" not in page


def test_the_error_summary_comes_first_and_links_every_error_to_its_field(client, ticket_system):
    path = ticket_system.link_path("T-summary")
    data = typed_everywhere()
    page = form_post(client, path, data).get_data(as_text=True)
    main = page.split("<main>")[1]
    assert main.lstrip().startswith('<div class="error-summary" tabindex="-1" data-error-summary')
    summary = main.split("</div>")[0]
    expected: dict[str, str] = {}
    for section in form_sections():
        for field in section.fields:
            name = f"{section.code}_{field.name}"
            check_field(field, data[name], expected, name)
    assert expected
    links = re.findall(r'<a href="#([a-z_]+)">', summary)
    assert sorted(links) == sorted(expected)
    for name in links:
        assert f'id="{name}"' in page and f'id="{name}-error"' in page
    # In page order: the summary reads like the form, top to bottom.
    assert links == sorted(links, key=page.index)


def test_a_form_with_nothing_in_it_says_so_in_the_summary(client, ticket_system):
    path = ticket_system.link_path("T-empty")
    page = form_post(client, path, {}).get_data(as_text=True)
    assert "Add at least one credential." in page
    assert re.search(r'<a href="#ft_kind">[^<]*Add at least one credential\.</a>', page)


def test_required_fields_are_marked_and_optional_ones_say_so(client, ticket_system):
    page = client.get(ticket_system.link_path("T-required")).get_data(as_text=True)
    for section in form_sections():
        for field in section.fields:
            name = f"{section.code}_{field.name}"
            label = page.split(f'<label for="{name}">')[1].split("</label>")[0]
            marker = "(required)" if field.required else "(optional)"
            assert marker in label, name
    assert "Fields marked with an asterisk (*) are required" in page


def test_a_vault_outage_on_submit_keeps_the_form_with_a_banner(
    ticket_system,
    app_without_vault,  # noqa: F811
):
    path = ticket_system.link_path("T-503-form")
    browser = app_without_vault.test_client()
    data = {
        "ft_kind": "sftp",
        "ft_host": "files.example.test",
        "ft_port": "22",
        "ft_username": "deploy-5f0e",
        "ft_password": "canary-pass-503",
        "notes": "notes-503",
    }
    response = form_post(browser, path, data)
    assert response.status_code == 503
    page = response.get_data(as_text=True)
    assert "Temporarily unavailable" in page and "Nothing was stored" in page
    assert '<form method="post"' in page
    for name in ("ft_host", "ft_port", "ft_username", "notes"):
        assert data[name] in page, name
    assert "canary-pass-503" not in page and 'id="ft_password-retype"' in page


# -- the link's message and locale (API) --------------------------------------------------------


def test_a_link_carries_the_ticket_systems_message_and_locale(app, ticket_system, client):
    message = "Bitte die FTP-Zugangsdaten\nder Staging-Umgebung."
    response = ticket_system.create_link("T-msg", message=message, locale="de-CH")
    assert response.status_code == 201, response.get_json()
    with app.app_context():
        link = db.session.scalar(select(SubmissionLink))
        assert (link.message, link.locale) == (message, "de-CH")
    page = client.get(response.get_json()["url"].removeprefix("http://localhost"))
    text = page.get_data(as_text=True)
    assert '<html lang="de">' in text and message in text
    assert "Zugangsdaten für Ticket T-msg übermitteln" in text


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"message": 42}, "message must be a string"),
        ({"message": None}, "message must be a string"),
        ({"locale": None}, "locale must be a string"),
        ({"message": "x" * 1001}, "at most 1000"),
        ({"message": "bell\x07"}, "control characters"),
        ({"locale": "german please"}, "language tag"),
        ({"locale": 7}, "language tag"),
        ({"locale": "d"}, "language tag"),
    ],
)
def test_a_bad_message_or_locale_is_a_400_and_creates_nothing(app, ticket_system, body, problem):
    response = ticket_system.create_link("T-bad-msg", **body)
    assert response.status_code == 400
    assert problem in response.get_json()["message"]
    with app.app_context():
        assert db.session.scalar(select(SubmissionLink)) is None


def test_the_message_is_plain_text_shown_escaped(client, ticket_system):
    markup = '<script>alert(1)</script><a href="https://evil.example">click</a>'
    path = ticket_system.link_path("T-msg-xss", message=markup)
    page = client.get(path).get_data(as_text=True)
    assert str(escape(markup)) in page
    assert "<script>alert" not in page and 'href="https://evil.example"' not in page
    assert "Message from your support team" in page


# -- languages ----------------------------------------------------------------------------------

GREETINGS = {
    "en": "Share credentials for ticket",
    "de": "Zugangsdaten für Ticket",
    "fr": "Transmettre des identifiants pour le ticket",
    "es": "Compartir credenciales para el ticket",
}
SUBMIT = {"en": "Submit securely", "de": "Sicher absenden", "fr": "Envoyer en toute sécurité",
          "es": "Enviar de forma segura"}  # fmt: skip


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_the_form_speaks_the_browsers_language(client, ticket_system, locale):
    path = ticket_system.link_path(f"T-lang-{locale}")
    headers = {"Accept-Language": f"{locale};q=0.9, ja;q=0.5"}
    page = client.get(path, headers=headers).get_data(as_text=True)
    assert f'<html lang="{locale}">' in page
    assert GREETINGS[locale] in page and SUBMIT[locale] in page


@pytest.mark.parametrize("locale", ["de", "fr", "es"])
def test_the_links_locale_beats_the_browsers_language(client, ticket_system, locale):
    path = ticket_system.link_path(f"T-link-{locale}", locale=locale)
    page = client.get(path, headers={"Accept-Language": "en-US,en;q=0.9"}).get_data(as_text=True)
    assert f'<html lang="{locale}">' in page and GREETINGS[locale] in page


def test_an_unsupported_link_locale_falls_back_to_the_browser(client, ticket_system):
    path = ticket_system.link_path("T-link-ja", locale="ja")
    page = client.get(path, headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert '<html lang="fr">' in page and GREETINGS["fr"] in page


def test_errors_and_the_success_page_are_translated_too(client, ticket_system):
    path = ticket_system.link_path("T-lang-flow", locale="es")
    refused = form_post(client, path, {"ft_kind": "ftp", "ft_host": "a b", "ft_port": "x"})
    page = refused.get_data(as_text=True)
    assert "Hay un problema" in page
    assert "Introduzca un número de puerto entre 1 y 65535." in page
    good = {"ft_kind": "ftp", "ft_host": "h.example", "ft_port": "21", "ft_username": "u",
            "ft_password": "p"}  # fmt: skip
    done = form_post(client, path, good).get_data(as_text=True)
    assert "Gracias: recibido de forma segura" in done
    assert "Hemos guardado 1 elemento del ticket T-lang-flow" in done


def test_dates_carry_the_utc_instant_in_the_markup(client, ticket_system):
    with freeze_time("2030-05-17 08:30:00"):
        path = ticket_system.link_path("T-dates", ttl_seconds=3600)
        page = client.get(path, headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert '<time datetime="2030-05-17T09:30:00Z" data-local>17. Mai 2030 09:30 UTC</time>' in page


def _customer_msgids() -> set[str]:
    """Every string a customer page may show: the templates' and the registry's."""
    ids: set[str] = set()
    templates = Path(TRANSLATIONS).parent / "templates"
    for name in ("customer/base.html", "customer/form.html", "customer/success.html",
                 "customer/received.html", "customer/status.html",
                 "customer/status_deleted.html", "error.html"):  # fmt: skip
        with (templates / name).open("rb") as source:
            for _, _, message, _ in babel_extract(source, ("_", "gettext", "ngettext"), [], {}):
                # A plural is catalogued under its singular (the plural is checked with it).
                ids.add(message[0] if isinstance(message, tuple) else message)
    for section in form_sections():
        ids.update([section.legend, section.choice_label, *(k.label for k in section.kinds)])
        ids.add(section.help)
        for field in section.fields:
            ids.update([field.label, field.help, *(label for _, label in field.choices)])
    ids.add(NOTES_FIELD.label)
    return {text for text in ids if text}


@pytest.mark.parametrize("locale", ["de", "fr", "es"])
def test_every_customer_string_is_translated_and_the_mo_matches_the_po(locale):
    directory = Path(TRANSLATIONS) / locale / "LC_MESSAGES"
    with (directory / "messages.po").open("rb") as source:
        po = read_po(source, locale=locale)
    with (directory / "messages.mo").open("rb") as source:
        mo = read_mo(source)

    def translated(msgid: str) -> bool:
        entry = po.get(msgid)
        strings = (
            entry.string if entry and isinstance(entry.string, tuple) else (entry and entry.string,)
        )
        return entry is not None and all(strings)

    missing = [msgid for msgid in sorted(_customer_msgids()) if not translated(msgid)]
    assert not missing, f"untranslated in {locale}: {missing}"
    for message in po:
        if not message.id:
            continue
        compiled = mo.get(message.id)
        as_tuple = lambda s: tuple(s) if isinstance(s, list | tuple) else s  # noqa: E731
        assert compiled is not None and as_tuple(compiled.string) == as_tuple(message.string), (
            f"{locale} .mo is stale for {message.id!r}: run python -m vault_service.i18n"
        )
        # A translation keeps every placeholder of its original.
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        wanted = set(re.findall(r"%\(\w+\)[sd]", " ".join(ids)))
        for string in strings:
            assert set(re.findall(r"%\(\w+\)[sd]", string)) == wanted, message.id


# -- branding -----------------------------------------------------------------------------------


def test_branding_is_on_every_customer_page(branded_app, ticket_system_factory):
    ticket_system, _, client = ticket_system_factory(branded_app)
    path = ticket_system.link_path("T-brand")
    other = ticket_system.link_path("T-brand")
    pages = {
        "form": client.get(path),
        "refused": form_post(client, path, {"ft_kind": "ftp", "ft_port": "x"}),
        "success": form_post(client, path, {"ot_label": "API key", "ot_secret": "s"}),
        "received": client.get(path),
        "gone": client.get("/s/" + "x" * 43),
        "other": client.get(other),
    }
    assert [r.status_code for r in pages.values()] == [200, 422, 201, 410, 410, 200]
    for name, response in pages.items():
        page = response.get_data(as_text=True)
        assert html.escape(BRAND) in page and BRAND not in page, name
        assert f'<a href="mailto:{SUPPORT}">{SUPPORT}</a>' in page, name
        assert f'<a href="{PRIVACY}">Privacy policy</a>' in page, name
        assert re.search(r'<img class="logo" src="/brand/logo\?v=[0-9a-f]{16}"', page), name
        # The CSP is the one every page has: the logo is same-origin, nothing is loosened.
        assert "img-src 'self' data:" in response.headers["Content-Security-Policy"]
    logo = client.get("/brand/logo")
    assert logo.status_code == 200 and logo.data == PNG and logo.mimetype == "image/png"


def test_no_logo_configured_is_a_404_and_the_page_names_no_one(client, ticket_system):
    assert client.get("/brand/logo").status_code == 404
    page = client.get(ticket_system.link_path("T-unbranded")).get_data(as_text=True)
    assert '<span class="brand">Secure credentials</span>' in page
    assert "Privacy policy" not in page and "<footer" not in page


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"privacy_url": "http://acme.example/privacy"}, "VAULT_SERVICE_PRIVACY_URL"),
        ({"brand_name": "two\nlines"}, "VAULT_SERVICE_BRAND_NAME"),
        ({"brand_logo": "/etc/passwd"}, "VAULT_SERVICE_BRAND_LOGO"),
        ({"brand_logo": "/nonexistent/logo.png"}, "VAULT_SERVICE_BRAND_LOGO"),
    ],
)
def test_branding_that_cannot_be_trusted_refuses_to_start(make_settings, overrides, problem):
    with pytest.raises(ConfigError, match=problem):
        make_settings(**overrides)


def test_branding_comes_from_the_environment(logo_file):
    from vault_service.config import load_settings

    settings = load_settings(
        {
            "VAULT_SERVICE_ENV": "testing",
            "VAULT_SERVICE_SECRET_KEY": "k" * 40,
            "VAULT_SERVICE_TICKET_API_TOKEN": "t" * 40,
            "VAULT_SERVICE_VAULT_TOKEN": "dev-token",
            "VAULT_SERVICE_BRAND_NAME": " Acme ",
            "VAULT_SERVICE_BRAND_LOGO": str(logo_file),
            "VAULT_SERVICE_SUPPORT_CONTACT": "https://acme.example/help",
            "VAULT_SERVICE_PRIVACY_URL": PRIVACY,
        }
    )
    assert (settings.brand_name, settings.brand_logo) == ("Acme", str(logo_file))
    assert (settings.support_contact, settings.privacy_url) == (
        "https://acme.example/help",
        PRIVACY,
    )


# -- the used link: "already received" for its submitter only ----------------------------------


def test_the_submitting_browser_gets_a_proof_cookie_scoped_to_its_link(client, ticket_system):
    path = ticket_system.link_path("T-cookie")
    response = form_post(client, path, GOOD)
    assert response.status_code == 201
    (header,) = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(RECEIVED_COOKIE)]
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert header.startswith(f"{RECEIVED_COOKIE}=")
    assert f"Path={path}" in header and "HttpOnly" in header and "SameSite=Strict" in header
    assert "secure" not in attributes  # testing runs over http; production sets it (below)
    assert "pw-4b1d" not in header


def test_in_production_the_proof_cookie_is_secure(make_settings, settings, ticket_system):
    production = create_app(
        make_settings(
            env="production", public_url="https://vault.example", secret_key=settings.secret_key
        )
    )
    path = ticket_system.link_path("T-cookie-prod")
    client = production.test_client()
    environ = {"wsgi.url_scheme": "https"}
    token = csrf_token_of(client.get(path, environ_overrides=environ).get_data(as_text=True))
    response = client.post(
        path, data={"csrf_token": token, **GOOD}, environ_overrides=environ,
        headers={"Referer": "https://localhost/"},
    )  # fmt: skip
    assert response.status_code == 201, response.get_data(as_text=True)[:500]
    cookie = next(
        h for h in response.headers.getlist("Set-Cookie") if h.startswith(RECEIVED_COOKIE)
    )
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    with production.app_context():
        db.session.remove()
        db.engine.dispose()


def test_a_used_link_says_received_only_to_the_browser_that_used_it(
    app, client, ticket_system, ticket_system_factory
):
    path = ticket_system.link_path("T-used")
    other_path = ticket_system.link_path("T-used")
    expired_path = ticket_system.link_path("T-used", ttl_seconds=60)
    assert form_post(client, path, GOOD).status_code == 201
    proof = client.get_cookie(RECEIVED_COOKIE, path=path).value
    # Another customer uses another link.
    assert form_post(app.test_client(), other_path, GOOD).status_code == 201

    with app.app_context():
        consumed_at = db.session.scalar(
            select(SubmissionLink.consumed_at).where(SubmissionLink.consumed_at.is_not(None))
        )
    mine = client.get(path)
    assert mine.status_code == 410
    page = mine.get_data(as_text=True)
    assert "Already received" in page
    assert f'<time datetime="{consumed_at.strftime("%Y-%m-%dT%H:%M:%SZ")}" data-local>' in page
    assert "confirmation page" in page  # where the status link was given

    # Everyone else: one body, byte for byte, whatever the link was.
    stranger = app.test_client()
    unknown = stranger.get("/s/" + "A" * 43)
    bodies = {
        "unknown": unknown.data,
        "used": stranger.get(path).data,
        # A cookie is sent only to its own path: this one was made for the right name but a
        # forged value, and another link's real proof does not open this one.
        "forged": _with_cookie(app, path, "A" * 43).get(path).data,
        "another link's proof": _with_cookie(app, other_path, proof).get(other_path).data,
    }
    with freeze_time(utcnow() + timedelta(seconds=61)):
        bodies["expired"] = stranger.get(expired_path).data
        bodies["expired with a proof"] = (
            _with_cookie(app, expired_path, proof).get(expired_path).data
        )
    assert all(body == unknown.data for body in bodies.values()), [
        name for name, body in bodies.items() if body != unknown.data
    ]
    assert b"Link unavailable" in unknown.data and b"Already received" not in unknown.data
    # The link's locale never reaches the 410 (it would tell a stranger the link exists).
    german_link = ticket_system.link_path("T-used-de", locale="de")
    assert form_post(app.test_client(), german_link, GOOD).status_code == 201
    assert app.test_client().get(german_link).data == unknown.data


def _with_cookie(app, path: str, value: str):
    """A fresh browser holding a `received` cookie for `path`."""
    client = app.test_client()
    client.set_cookie(RECEIVED_COOKIE, value, path=path)
    return client


def test_a_used_link_posted_again_by_its_submitter_also_says_received(client, ticket_system):
    path = ticket_system.link_path("T-used-post")
    token = csrf_token_of(client.get(path).get_data(as_text=True))
    assert client.post(path, data={"csrf_token": token, **GOOD}).status_code == 201
    again = client.post(path, data={"csrf_token": token, **GOOD})
    assert again.status_code == 410 and b"Already received" in again.data
