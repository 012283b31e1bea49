"""Bidi controls and invisible characters are refused where they would disguise an address or a
name, internationalized hosts must be valid IDNA and are shown in punycode beside the Unicode
form, and where such characters are allowed (passwords, notes) the reveal marks them visibly
(issue 13 item 7)."""

from __future__ import annotations

import re

import pytest

from vault_service.errors import ValidationFailed
from vault_service.kinds.validation import validate_submission

from .conftest import SAMPLE_ITEMS

DISGUISES = ["\u202e", "\u200b", "\u2066", "\u200f", "\ufeff", "\u00ad", "\u00a0", "\u2028"]


def admin_panel(**fields) -> dict:
    return {
        "kind": "admin_panel",
        "url": "https://shop.example/admin",
        "username": "owner",
        "password": "pw",
        **fields,
    }


@pytest.mark.parametrize("char", DISGUISES)
def test_bidi_and_invisible_characters_are_refused_in_urls_hosts_and_usernames(char):
    cases = {
        "items[0].url": admin_panel(url=f"https://bank.example{char}/nigol.moc.elgoog.www"),
        "items[0].username": admin_panel(username=f"adm{char}in"),
        "items[0].host": {
            "kind": "sftp",
            "host": f"files{char}.example",
            "port": "22",
            "username": "u",
            "password": "p",
        },
    }
    for key, item in cases.items():
        with pytest.raises(ValidationFailed) as refused:
            validate_submission({"items": [item]})
        assert key in refused.value.fields, (key, refused.value.fields)


def test_internationalized_hosts_must_be_valid_idna():
    ok = validate_submission(
        {
            "items": [
                admin_panel(url="https://bücher.example/admin"),
                {
                    "kind": "sftp",
                    "host": "пример.испытание",
                    "port": "22",
                    "username": "u",
                    "password": "p",
                },
            ]
        }
    )
    assert len(ok.items) == 2
    for host in ("a\u0301\u0301\u0301-.example", "xn--zz.example", "-bad.пример"):
        with pytest.raises(ValidationFailed):
            validate_submission(
                {
                    "items": [
                        {
                            "kind": "sftp",
                            "host": host,
                            "port": "22",
                            "username": "u",
                            "password": "p",
                        }
                    ]
                }
            )
        with pytest.raises(ValidationFailed):
            validate_submission({"items": [admin_panel(url=f"https://{host}/")]})


def test_the_reveal_shows_punycode_beside_unicode_hosts_and_marks_hidden_characters(
    client, ticket_system, agent
):
    path = ticket_system.link_path("T-unicode")
    items = [
        # A Cyrillic "а" in a Latin-looking name: allowed by IDNA, so the agent sees the ASCII.
        admin_panel(url="https://pаypal.example/login", password="pass\u202eword\u200b!"),
        {
            "kind": "sftp",
            "host": "bücher.example",
            "port": "22",
            "username": "u",
            "password": SAMPLE_ITEMS[0]["password"],
        },
    ]
    response = client.post(path, json={"items": items, "notes": "call\u2066 me\u00a0now"})
    assert response.status_code == 201, response.get_json()
    agent.login()
    agent.request_access("T-unicode")
    page = agent.reveal("T-unicode").get_data(as_text=True)
    assert "https://pаypal.example/login" in page
    assert "(ASCII: <code>https://xn--pypal-4ve.example/login</code>)" in page
    assert "(ASCII: <code>xn--bcher-kva.example</code>)" in page
    # Hidden characters are shown as marked code points, never raw.
    for code in ("U+202E", "U+200B", "U+2066", "U+00A0"):
        assert re.search(
            rf'<mark class="hidden-char" title="[^"]+">{re.escape(code)}</mark>', page
        ), code
    for raw in ("\u202e", "\u200b", "\u2066", "\u00a0"):
        assert raw not in page
    # An ordinary password with spaces is shown exactly as typed.
    assert "  pässwörd with spaces ✓  " in page
