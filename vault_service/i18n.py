"""The customer's language: the link's `locale`, else the browser's Accept-Language, else English.

Only the customer pages are translated (English, German, French, Spanish); agent pages stay in
English. The catalogs are committed as .po (what translators edit) and .mo (what gettext reads),
and tests/test_customer_form.py fails when a .mo no longer matches its .po or a string shown to
customers has no translation; `python -m vault_service.i18n` recompiles them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from babel.dates import format_date, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.units import format_unit
from flask import Flask, g, request
from flask_babel import (
    Babel,
    get_locale,
    get_translations,
    refresh,
)
from markupsafe import Markup, escape

SUPPORTED_LOCALES = ("en", "de", "fr", "es")
DEFAULT_LOCALE = "en"
# The customer's pages: the form's (/s/...) and the status page's (/r/...).
CUSTOMER_BLUEPRINTS = ("customer", "status")
TRANSLATIONS = Path(__file__).parent / "translations"
# A BCP 47 language tag as a ticket system would send it ("de", "fr-CA", "es_419").
LOCALE_TAG = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8}){0,4}$")

babel = Babel()


def supported_locale(tag: str | None) -> str | None:
    """The supported language a tag names (its primary subtag), or None."""
    if not tag:
        return None
    language = re.split(r"[-_]", tag, maxsplit=1)[0].lower()
    return language if language in SUPPORTED_LOCALES else None


def use_link_locale(tag: str | None) -> None:
    """The page being built is for this link: its locale, when supported, wins."""
    g.link_locale = supported_locale(tag)
    refresh()  # Flask-Babel caches the locale per request; it may have been read already


def select_locale() -> str:
    """The link's locale, else the best of Accept-Language; English for every non-customer page."""
    if request.blueprint not in CUSTOMER_BLUEPRINTS:
        return DEFAULT_LOCALE
    return g.get("link_locale") or request.accept_languages.best_match(
        SUPPORTED_LOCALES, default=DEFAULT_LOCALE
    )


def translated(text: str) -> str:
    """A message that is data (a field's label, a validator's message), in the page's language;
    unlike `_()`, never %-formatted, so a literal % in it is safe."""
    return str(get_translations().ugettext(text))


def localized_duration(seconds: int) -> str:
    """'30 days' / '30 Tage': the largest unit that divides evenly, in the page's language."""
    locale = str(get_locale() or DEFAULT_LOCALE)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            return format_unit(seconds // size, f"duration-{unit}", locale=locale)
    return format_unit(seconds, "duration-second", locale=locale)


def time_tag(moment: datetime | str) -> Markup:
    """A <time> holding the UTC instant; static/customer.js shows it in the reader's own zone,
    and without script the UTC text stays (with "UTC" said)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    moment = moment.astimezone(UTC)
    locale = str(get_locale() or DEFAULT_LOCALE)
    text = (
        f"{format_date(moment, 'long', locale=locale)} "
        f"{format_time(moment, 'short', tzinfo=UTC, locale=locale)} UTC"
    )
    iso = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return Markup('<time datetime="{}" data-local>{}</time>').format(iso, escape(text))


def compile_catalogs(directory: Path = TRANSLATIONS) -> list[Path]:
    """Write each messages.mo from its messages.po (the committed .mo files come from here)."""
    written = []
    for po_path in sorted(directory.glob("*/LC_MESSAGES/messages.po")):
        with po_path.open("rb") as source:
            catalog = read_po(source, locale=po_path.parts[-3])
        mo_path = po_path.with_suffix(".mo")
        with mo_path.open("wb") as target:
            write_mo(target, catalog, use_fuzzy=False)
        written.append(mo_path)
    return written


def init_app(app: Flask) -> None:
    """Bind Flask-Babel with the selector, and give the templates the localized formatters."""
    babel.init_app(
        app,
        default_locale=DEFAULT_LOCALE,
        default_translation_directories=str(TRANSLATIONS),
        locale_selector=select_locale,
    )
    app.add_template_filter(localized_duration, "local_duration")
    app.add_template_filter(translated, "translated")
    app.add_template_global(time_tag, "time_tag")
    app.add_template_global(lambda: str(get_locale() or DEFAULT_LOCALE), "page_locale")


if __name__ == "__main__":
    for path in compile_catalogs():
        print(f"compiled {path.relative_to(TRANSLATIONS.parent.parent)}")
