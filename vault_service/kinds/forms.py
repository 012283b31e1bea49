"""The customer's HTML form as a JSON submission, and back: the validator's error keys as input
names, and what a re-rendered form keeps of what was typed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from . import form_sections
from .base import Field
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


def _inputs() -> list[tuple[str, Field | None]]:
    """Every input of the form by name, in page order (a section's kind select has no Field)."""
    inputs: list[tuple[str, Field | None]] = []
    for section in form_sections():
        if section.has_choice:
            inputs.append((f"{section.code}_kind", None))
        inputs += [(f"{section.code}_{field.name}", field) for field in section.fields]
    return [*inputs, (NOTES_FIELD.name, NOTES_FIELD)]


def kept_values(form: Mapping[str, str]) -> dict[str, str]:
    """What a re-rendered form gives back: the kind choices and every refilled field, never a
    password or another secret (those are typed again)."""
    return {
        name: form.get(name, "") for name, field in _inputs() if field is None or field.refilled
    }


def to_retype(form: Mapping[str, str]) -> set[str]:
    """The secret inputs that held something: their hint says to enter them again."""
    return {
        name
        for name, field in _inputs()
        if field is not None and not field.refilled and form.get(name)
    }


@dataclass(frozen=True)
class SummaryEntry:
    """One line of the error summary: the input it links to, where it sits, and the problem."""

    input: str
    legend: str
    label: str
    message: str


def error_summary(errors: Mapping[str, str]) -> list[SummaryEntry]:
    """The errors in page order, each with its section and field label (untranslated: the page
    translates), so the summary reads top to bottom like the form."""
    order = {name: position for position, (name, _) in enumerate(_inputs())}
    where: dict[str, tuple[str, str]] = {NOTES_FIELD.name: ("", NOTES_FIELD.label)}
    for section in form_sections():
        where[f"{section.code}_kind"] = (section.legend, section.choice_label)
        for field in section.fields:
            where[f"{section.code}_{field.name}"] = (section.legend, field.label)
    entries = []
    for name, message in sorted(errors.items(), key=lambda item: order.get(item[0], -1)):
        legend, label = where.get(name, ("", ""))
        # An error on the whole form (no credential at all) links to the first input.
        target = name if name in order else _inputs()[0][0]
        entries.append(SummaryEntry(target, legend, label, message))
    return entries
