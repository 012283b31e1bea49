"""A submission's JSON checked against the registry: every problem listed under its key."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import ValidationFailed
from . import item_kinds
from .base import Field
from .notes import NOTES_FIELD

MAX_ITEMS = 20


@dataclass(frozen=True)
class CredentialInput:
    """One validated credential: its kind and its string fields (an empty optional one left out)."""

    kind: str
    fields: dict[str, str]

    def plaintext(self) -> str:
        """What is encrypted into Vault: the kind and fields as JSON (never logged)."""
        return json.dumps({"kind": self.kind, "fields": self.fields}, ensure_ascii=False)


@dataclass(frozen=True)
class SubmissionInput:
    """A validated submission."""

    items: list[CredentialInput]
    notes: str


def check_field(field: Field, value: object, errors: dict[str, str], key: str) -> str | None:
    """The field's text if it is valid; else note the problem under `key`. None when an
    optional field is empty (it is then left out of the item)."""
    if value is None or value == "":
        if field.required:
            errors[key] = "This field is required."
        return None
    # Every stored value is text; only a port may also come as a JSON number.
    allowed = str | int if field.accepts_integer else str
    if not isinstance(value, allowed) or isinstance(value, bool):
        errors[key] = "Must be text."
        return None
    text = str(value)
    if len(text) > field.max_length:
        errors[key] = f"At most {field.max_length} characters."
        return text
    for check in field.checks:
        problem = check(text)
        if problem:
            errors[key] = problem
            return text
    if field.choices and text not in dict(field.choices):
        errors[key] = "Choose one of " + ", ".join(choice for choice, _ in field.choices) + "."
    # Values are kept byte-exact: a password's spaces are part of it.
    return text


def _check_item(raw: object, prefix: str, errors: dict[str, str]) -> CredentialInput | None:
    if not isinstance(raw, dict):
        errors[prefix] = "Each credential must be an object."
        return None
    kinds = {kind.name: kind for kind in item_kinds()}
    name = raw.get("kind")
    # isinstance first: `[] in kinds` raises TypeError (unhashable), a 500.
    if not isinstance(name, str) or name not in kinds:
        *others, last = kinds
        errors[f"{prefix}.kind"] = f"Choose {', '.join(others)} or {last}."
        return None
    kind = kinds[name]
    for unknown in sorted(map(str, set(raw) - {field.name for field in kind.fields} - {"kind"})):
        errors[f"{prefix}.{unknown}"] = f"Not a field of {name}."
    fields = {}
    for field in kind.fields:
        text = check_field(field, raw.get(field.name), errors, f"{prefix}.{field.name}")
        if text is not None:
            fields[field.name] = text
    return CredentialInput(name, fields)


def validate_submission(payload: object) -> SubmissionInput:
    """Check a submission's shape and every field; raise ValidationFailed listing each problem."""
    if not isinstance(payload, dict):
        raise ValidationFailed("The submission must be a JSON object.")
    errors: dict[str, str] = {}
    for name in sorted(map(str, set(payload) - {"items", "notes"})):
        errors[name] = "Unknown field."
    raw_items = payload.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        errors["items"] = "Add at least one credential."
        raw_items = []
    elif len(raw_items) > MAX_ITEMS:
        errors["items"] = f"At most {MAX_ITEMS} credentials per submission."
        raw_items = []
    items = []
    for index, raw in enumerate(raw_items):
        item = _check_item(raw, f"items[{index}]", errors)
        if item is not None:
            items.append(item)
    notes = check_field(NOTES_FIELD, payload.get("notes"), errors, "notes")
    if errors:
        raise ValidationFailed(fields=errors)
    return SubmissionInput(items, notes or "")
