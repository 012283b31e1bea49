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
from .text import check_no_hidden_characters

URL = Field(
    "url",
    "Login URL",
    2048,
    checks=(check_no_control_characters, check_no_hidden_characters, check_web_address),
    input="url",
    address="url",
)

SECTION = FormSection(
    code="ap",
    legend="Admin panel",
    kinds=(Kind("admin_panel", "Admin panel", (URL, USERNAME, PASSWORD)),),
    position=20,
)
