"""The customer's HTML form as a JSON submission, and the validator's error keys as input names."""

from __future__ import annotations

from collections.abc import Mapping

from . import form_sections
from .notes import NOTES_FIELD


def form_to_payload(form: Mapping[str, str]) -> tuple[dict[str, object], dict[str, str]]:
    """Build the JSON-shaped submission from the form, and map item indexes to section codes."""
    items: list[dict[str, str]] = []
    origin: dict[str, str] = {}
    for section in form_sections():
        names = [field.name for field in section.fields]
        values = {name: form.get(f"{section.code}_{name}", "") for name in names}
        # A section counts only when something was typed into it: a scanner that posts the
        # untouched form (all empty, defaults only) submits nothing.
        if not any(values.values()):
            continue
        kind = form.get(f"{section.code}_kind", "") if section.has_choice else section.kinds[0].name
        origin[f"items[{len(items)}]"] = section.code
        items.append({"kind": kind, **values})
    return {"items": items, NOTES_FIELD.name: form.get(NOTES_FIELD.name, "")}, origin


def form_errors(fields: dict[str, str], origin: dict[str, str]) -> dict[str, str]:
    """The validator's `items[0].host` keys as the form's input names (`ft_host`)."""
    translated = {}
    for key, message in fields.items():
        prefix, _, name = key.partition(".")
        section = origin.get(prefix)
        if section is None:
            translated["form" if key == "items" else key] = message
        else:
            translated[f"{section}_{name or 'kind'}"] = message
    return translated


def kind_choices(form: Mapping[str, str]) -> dict[str, str]:
    """The kind picked in each section that offers a choice: the one thing a re-rendered form
    keeps, since no typed value may reach any page but the agent's reveal."""
    names = [f"{section.code}_kind" for section in form_sections() if section.has_choice]
    return {name: form.get(name, "") for name in names}
