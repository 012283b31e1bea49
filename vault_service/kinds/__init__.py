"""The credential-kind registry: every module of this package that defines a `SECTION` adds its
kinds, so a new kind is one file. Validation, the customer form, the reveal page's labels and the
OpenAPI check all read the kinds from here, in the sections' `position` order."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import TYPE_CHECKING

from .base import FormSection, Kind
from .notes import NOTES
from .text import ascii_form, mark_hidden

if TYPE_CHECKING:
    from flask import Flask  # only init_app's annotation: the registry itself needs no app


@cache
def form_sections() -> tuple[FormSection, ...]:
    """Every kind's form section, in form order; refuses two definitions of one name."""
    sections = []
    for module in pkgutil.iter_modules(__path__):
        section = getattr(importlib.import_module(f"{__name__}.{module.name}"), "SECTION", None)
        if isinstance(section, FormSection):
            sections.append(section)
    sections.sort(key=lambda section: (section.position, section.code))
    _refuse_duplicates([section.code for section in sections], "form section code")
    names = [kind.name for section in sections for kind in section.kinds]
    _refuse_duplicates([*names, NOTES.name], "kind")
    return tuple(sections)


def _refuse_duplicates(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"two credential kinds define the {what} {name!r}")
        seen.add(name)


def item_kinds() -> tuple[Kind, ...]:
    """The kinds a submission's items may have, in form order (notes is not one of them)."""
    return tuple(kind for section in form_sections() for kind in section.kinds)


def find_kind(name: str) -> Kind | None:
    """The kind of that name, notes included; None for a name no definition has (any more)."""
    return next((kind for kind in (*item_kinds(), NOTES) if kind.name == name), None)


def kind_label(name: str) -> str:
    """What people call a kind; an unknown stored kind shows as its name."""
    kind = find_kind(name)
    return kind.label if kind else name


def field_label(name: str, kind_name: str) -> str:
    """What people call a kind's field; an unknown field shows as its name."""
    kind = find_kind(kind_name)
    field = kind.field_named(name) if kind else None
    return field.label if field else name


def field_address(name: str, kind_name: str) -> str | None:
    """Whether a kind's field holds a "host" or a "url" (None for anything else)."""
    kind = find_kind(kind_name)
    field = kind.field_named(name) if kind else None
    return field.address if field else None


def init_app(app: Flask) -> None:
    """Load the registry at startup (a duplicate fails here, not mid-request) and give the
    templates its labels."""
    form_sections()
    app.add_template_filter(kind_label, "kind_label")
    app.add_template_filter(field_label, "field_label")
    app.add_template_filter(field_address, "field_address")
    app.add_template_filter(ascii_form, "ascii_form")
    app.add_template_filter(mark_hidden, "mark_hidden")
