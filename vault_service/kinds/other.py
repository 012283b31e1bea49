"""Anything else: a secret and what it is (an API key, a licence code, ...)."""

from __future__ import annotations

from .base import Field, FormSection, Kind, check_no_control_characters, check_not_blank

LABEL = Field("label", "What is it?", 100, checks=(check_no_control_characters, check_not_blank))
SECRET = Field("secret", "Secret", 8192, secret=True, input="textarea")

SECTION = FormSection(
    code="ot",
    legend="Something else",
    kinds=(Kind("other", "Other", (LABEL, SECRET)),),
    # Last: the catch-all after every specific kind.
    position=90,
)
