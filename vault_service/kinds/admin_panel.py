"""A web application's admin login: its address, username and password."""

from __future__ import annotations

from .base import (
    PASSWORD,
    USERNAME,
    Field,
    FormSection,
    Kind,
    check_no_control_characters,
    check_web_address,
)

URL = Field(
    "url",
    "Login URL",
    2048,
    checks=(check_no_control_characters, check_web_address),
    input="url",
)

SECTION = FormSection(
    code="ap",
    legend="Admin panel",
    kinds=(Kind("admin_panel", "Admin panel", (URL, USERNAME, PASSWORD)),),
    position=20,
)
