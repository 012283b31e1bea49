"""The credential-kind registry: every registered kind is validated, rendered in the form, labelled
on the reveal page and described by openapi.yaml exactly as its one definition says."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
import yaml

from vault_service.errors import ValidationFailed
from vault_service.kinds import field_label, find_kind, form_sections, item_kinds, kind_label
from vault_service.kinds.base import Field
from vault_service.kinds.notes import NOTES, NOTES_FIELD
from vault_service.kinds.validation import MAX_ITEMS, check_field, validate_submission

OPENAPI = Path(__file__).resolve().parent.parent / "openapi.yaml"

# Armour-valid, not a real key: only the armour is ever checked.
OPENSSH_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBub3QtYS1yZWFsLWtleS1vbmx5LXRoZS1hcm1vdXI=\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
ENCRYPTED_PEM_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\r\n"
    "Proc-Type: 4,ENCRYPTED\r\n"
    "DEK-Info: AES-128-CBC,0123456789ABCDEF0123456789ABCDEF\r\n"
    "\r\n"
    "bm90LWEtcmVhbC1rZXk=\r\n"
    "-----END RSA PRIVATE KEY-----"
)

# One valid item per registered kind: a kind without one fails the test below, so a new kind
# comes with its examples.
GOOD_ITEMS: dict[str, dict] = {
    "ftp": {
        "kind": "ftp",
        "host": "ftp.example.test",
        "port": "21",
        "username": "u",
        "password": "p",
    },
    "sftp": {"kind": "sftp", "host": "10.0.0.7", "port": 22, "username": "u", "password": " p "},
    "ftps": {
        "kind": "ftps",
        "host": "[2001:db8::1]",
        "port": "990",
        "username": "u",
        "password": "p",
    },
    "admin_panel": {
        "kind": "admin_panel",
        "url": "https://shop.example.test/admin",
        "username": "owner",
        "password": "p",
    },
    "other": {"kind": "other", "label": "API key", "secret": "sk_live_123\n"},
    "ssh_key": {
        "kind": "ssh_key",
        "host": "bastion.example.test",
        "port": "22",
        "username": "deploy",
        "private_key": OPENSSH_KEY,
        "passphrase": " pass phrase ",
    },
    "database": {
        "kind": "database",
        "engine": "postgresql",
        "host": "db.example.test",
        "port": 5432,
        "database": "shop",
        "username": "app",
        "password": "  db pässword ",
    },
}
# (kind, changes to its good item (None removes a field), the error key, the message).
BAD_VALUES: list[tuple[str, dict, str, str]] = [
    ("ftp", {"host": "ftp://x.test"}, "host", "Enter a host name or IP address"),
    ("sftp", {"port": "65536"}, "port", "Enter a port number between 1 and 65535."),
    ("ftps", {"password": None}, "password", "This field is required."),
    ("admin_panel", {"url": "javascript:alert(1)"}, "url", "Enter a full http:// or https://"),
    ("admin_panel", {"username": "  "}, "username", "This field is required."),
    ("other", {"label": "l" * 101}, "label", "At most 100 characters."),
    ("other", {"secret": "nul\x00"}, "secret", "Contains characters that are not allowed."),
    ("ssh_key", {"private_key": None}, "private_key", "This field is required."),
    ("ssh_key", {"host": "bastion example"}, "host", "Enter a host name or IP address"),
    ("ssh_key", {"port": 0}, "port", "Enter a port number between 1 and 65535."),
    ("ssh_key", {"passphrase": "x" * 1025}, "passphrase", "At most 1024 characters."),
    ("ssh_key", {"passphrase": ["x"]}, "passphrase", "Must be text."),
    ("database", {"engine": "sqlite"}, "engine", "Choose one of postgresql, mysql, mariadb"),
    ("database", {"engine": None}, "engine", "This field is required."),
    ("database", {"engine": "PostgreSQL"}, "engine", "Choose one of"),
    ("database", {"port": "54x2"}, "port", "Enter a port number between 1 and 65535."),
    ("database", {"host": "postgres://db.example.test"}, "host", "Enter a host name"),
    ("database", {"database": "a\x01b"}, "database", "Contains characters that are not allowed."),
    ("database", {"username": None}, "username", "This field is required."),
]


def good(kind: str, **changes) -> dict:
    """The kind's good item with fields replaced (None removes one)."""
    item = {**GOOD_ITEMS[kind], **changes}
    return {name: value for name, value in item.items() if value is not None}


# -- the registry -----------------------------------------------------------------------------


def test_every_registered_kind_has_examples_in_this_file():
    assert set(GOOD_ITEMS) == {kind.name for kind in item_kinds()}
    assert {kind for kind, *_ in BAD_VALUES} == set(GOOD_ITEMS)


def test_the_registry_is_ordered_and_names_are_unique():
    sections = form_sections()
    assert [s.position for s in sections] == sorted(s.position for s in sections)
    assert sections[-1].kinds[0].name == "other"  # the catch-all comes last
    names = [kind.name for kind in item_kinds()]
    assert len(names) == len(set(names)) and NOTES.name not in names
    assert len({s.code for s in sections}) == len(sections)
    for kind in item_kinds():
        assert kind.fields and "kind" not in {field.name for field in kind.fields}
        for field in kind.fields:
            assert field.input in ("text", "password", "url", "textarea", "select"), field
            # A secret is never in a plain text input (shoulder surfing, autofill).
            assert not field.secret or field.input in ("password", "textarea"), field


def test_labels_come_from_the_registry_and_unknown_names_show_as_they_are():
    assert kind_label("sftp") == "SFTP"
    assert kind_label("admin_panel") == "Admin panel"
    assert kind_label("notes") == "Notes"
    assert field_label("url", "admin_panel") == "Login URL"
    assert field_label("notes", "notes") == NOTES_FIELD.label
    # A kind or field stored before a definition changed still shows, by its name.
    assert kind_label("retired_kind") == "retired_kind"
    assert field_label("path", "ftp") == "path"
    assert find_kind("retired_kind") is None


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(GOOD_ITEMS))
def test_a_good_item_of_every_kind_is_accepted_byte_exact(kind):
    submission = validate_submission({"items": [GOOD_ITEMS[kind]]})
    (item,) = submission.items
    assert item.kind == kind
    expected = {name: str(value) for name, value in GOOD_ITEMS[kind].items() if name != "kind"}
    assert item.fields == expected


@pytest.mark.parametrize(
    ("kind", "changes", "name", "message"),
    BAD_VALUES,
    ids=[f"{kind}-{name}-{n}" for n, (kind, _, name, _) in enumerate(BAD_VALUES)],
)
def test_a_bad_value_of_every_kind_is_refused_under_its_key(kind, changes, name, message):
    with pytest.raises(ValidationFailed) as refused:
        validate_submission({"items": [good(kind), good(kind, **changes)]})
    assert list(refused.value.fields) == [f"items[1].{name}"]
    assert refused.value.fields[f"items[1].{name}"].startswith(message)


@pytest.mark.parametrize("kind", sorted(GOOD_ITEMS))
def test_every_kind_refuses_a_field_it_does_not_have_and_every_limit_holds(kind):
    with pytest.raises(ValidationFailed) as refused:
        validate_submission({"items": [good(kind, extra="x")]})
    assert refused.value.fields == {"items[0].extra": f"Not a field of {kind}."}
    for field in find_kind(kind).fields:
        with pytest.raises(ValidationFailed) as refused:
            validate_submission(
                {"items": [good(kind, **{field.name: "a" * (field.max_length + 1)})]}
            )
        assert refused.value.fields == {
            f"items[0].{field.name}": f"At most {field.max_length} characters."
        }


@pytest.mark.parametrize(
    "key",
    [OPENSSH_KEY, ENCRYPTED_PEM_KEY, "\n  " + OPENSSH_KEY.replace("OPENSSH ", "") + "\n\n"],
    ids=["openssh", "encrypted-pem-crlf", "pkcs8-with-blank-lines-around"],
)
def test_an_ssh_private_key_is_accepted_by_its_armour_and_kept_byte_exact(key):
    (item,) = validate_submission({"items": [good("ssh_key", private_key=key)]}).items
    assert item.fields["private_key"] == key


@pytest.mark.parametrize(
    "key",
    [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHB1YmxpYw== user@host",
        "-----BEGIN PUBLIC KEY-----\nbm90LWEta2V5\n-----END PUBLIC KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90LWEta2V5\n",
        "-----BEGIN RSA PRIVATE KEY-----\nbm90LWEta2V5\n-----END OPENSSH PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n<b>not base64</b>\n-----END OPENSSH PRIVATE KEY-----",
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nPrivate-Lines: 1\nAAAA",
        OPENSSH_KEY + "trailing text after the key",
        OPENSSH_KEY + "\x00",
        OPENSSH_KEY.replace("b3Bl", "b3Bl" + "A" * 16384),
    ],
    ids=[
        "public-key-line",
        "public-key-block",
        "no-end",
        "mismatched-end",
        "empty-body",
        "markup-body",
        "putty",
        "trailing-text",
        "nul",
        "too-long",
    ],
)
def test_anything_but_a_whole_private_key_block_is_refused_without_echoing_it(key):
    with pytest.raises(ValidationFailed) as refused:
        validate_submission({"items": [good("ssh_key", private_key=key)]})
    message = refused.value.fields["items[0].private_key"]
    assert "bm90" not in message and "AAAA" not in message and "ssh-ed25519" not in message


def test_an_ssh_key_without_a_passphrase_is_stored_without_one():
    for missing in (None, ""):
        (item,) = validate_submission({"items": [good("ssh_key", passphrase=missing)]}).items
        assert "passphrase" not in item.fields
    (item,) = validate_submission({"items": [{**good("ssh_key"), "passphrase": None}]}).items
    assert "passphrase" not in item.fields


@pytest.mark.parametrize(
    "engine", ["postgresql", "mysql", "mariadb", "mssql", "oracle", "mongodb", "redis", "other"]
)
def test_every_database_engine_is_accepted_and_the_database_name_is_optional(engine):
    (item,) = validate_submission({"items": [good("database", engine=engine, database=None)]}).items
    assert item.fields["engine"] == engine
    assert "database" not in item.fields


def test_the_database_engine_is_a_select_with_an_empty_default(client, ticket_system):
    """An untouched select posts "": the section counts only once the customer types into it."""
    page = client.get(ticket_system.link_path("T-kinds-engine")).get_data(as_text=True)
    select = page.split('<select id="db_engine" name="db_engine"')[1].split("</select>")[0]
    assert '<option value="">Choose…</option>' in select
    assert '<option value="mssql">Microsoft SQL Server</option>' in select
    assert " selected" not in select


def test_an_unknown_kind_is_refused_naming_every_registered_kind():
    with pytest.raises(ValidationFailed) as refused:
        validate_submission({"items": [{"kind": "notes", "notes": "x"}]})
    message = refused.value.fields["items[0].kind"]
    for kind in item_kinds():
        assert kind.name in message


# -- the customer form ------------------------------------------------------------------------


def test_the_form_renders_a_section_for_every_registered_kind(client, ticket_system):
    page = client.get(ticket_system.link_path("T-kinds-form")).get_data(as_text=True)
    for section in form_sections():
        assert f'data-section="{section.code}"' in page
        assert f"<legend>{html.escape(section.legend)}</legend>" in page
        if section.has_choice:
            for kind in section.kinds:
                assert f'<option value="{kind.name}" >{html.escape(kind.label)}</option>' in page
        for field in section.fields:
            name = f"{section.code}_{field.name}"
            assert f'id="{name}" name="{name}"' in page
    assert 'id="notes" name="notes"' in page
    # The page stays CSP-clean: no inline script or handler (only same-origin script files).
    assert (
        page.count("<script") == page.count("<script src=")
        and " on" + "change=" not in page
        and " on" + "click=" not in page
    )


# -- openapi.yaml -----------------------------------------------------------------------------


def _resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        node = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _string_schema(document: dict, schema: dict) -> dict:
    """The string form of a property (a port is an integer or a string)."""
    schema = _resolve(document, schema)
    for branch in schema.get("oneOf", []):
        branch = _resolve(document, branch)
        if branch.get("type") == "string":
            return branch
    return schema


def _types(schema: dict) -> set[str]:
    declared = schema.get("type", [])
    return {declared} if isinstance(declared, str) else set(declared)


def _check_field_schema(document: dict, field: Field, schema: dict) -> None:
    schema = _resolve(document, schema)
    if field.choices:
        assert schema["enum"] == [value for value, _ in field.choices], field.name
    else:
        assert _string_schema(document, schema).get("maxLength") == field.max_length, field.name
    # The validator takes null or "" for an optional field: the schema must too, or the fuzzer's
    # "refuse what the schema refuses" check fails on them.
    if not field.required:
        assert "null" in _types(schema), field.name
        assert not schema.get("minLength"), field.name


def test_openapi_describes_every_kind_as_the_registry_defines_it():
    document = yaml.safe_load(OPENAPI.read_text())
    schemas = document["components"]["schemas"]
    submission = schemas["Submission"]
    assert submission["properties"]["items"]["maxItems"] == MAX_ITEMS
    _check_field_schema(document, NOTES_FIELD, submission["properties"]["notes"])

    described: dict[str, dict] = {}
    for ref in submission["properties"]["items"]["items"]["oneOf"]:
        schema = _resolve(document, ref)
        kind_schema = schema["properties"]["kind"]
        for name in kind_schema.get("enum", [kind_schema.get("const")]):
            assert name not in described, f"{name} is described twice"
            described[name] = schema
    assert set(described) == {kind.name for kind in item_kinds()}

    for kind in item_kinds():
        schema = described[kind.name]
        assert schema["additionalProperties"] is False, kind.name
        assert set(schema["properties"]) == {"kind", *(field.name for field in kind.fields)}
        required = {"kind", *(field.name for field in kind.fields if field.required)}
        assert set(schema["required"]) == required, kind.name
        for field in kind.fields:
            _check_field_schema(document, field, schema["properties"][field.name])

    receipt_kinds = schemas["SubmissionReceipt"]["properties"]["kinds"]["items"]["enum"]
    assert receipt_kinds == [*(kind.name for kind in item_kinds()), NOTES.name]


def _form_data(section) -> dict[str, str]:
    """A section's inputs filled from its (first) kind's good item, as a browser posts them."""
    kind = section.kinds[0].name
    data = {f"{section.code}_{name}": str(value) for name, value in good(kind).items()}
    data.pop(f"{section.code}_kind")
    if section.has_choice:
        data[f"{section.code}_kind"] = kind
    return data


def test_a_form_post_filling_every_section_stores_one_item_per_section_in_order(
    app, client, ticket_system
):
    path = ticket_system.link_path("T-kinds-post")
    page = client.get(path).get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    data = {"csrf_token": token, "notes": "n"}
    for section in form_sections():
        data |= _form_data(section)
    response = client.post(path, data=data)
    assert response.status_code == 201, response.get_data(as_text=True)
    expected = [section.kinds[0].name for section in form_sections()] + ["notes"]
    assert f"We stored {len(expected)} items" in response.get_data(as_text=True)
    assert ticket_system.status("T-kinds-post").get_json()["credential_count"] == len(expected)


def test_an_invalid_form_post_marks_the_field_keeps_what_is_not_secret_and_no_secret(
    client, ticket_system
):
    path = ticket_system.link_path("T-kinds-echo")
    token = client.get(path).get_data(as_text=True).split('name="csrf_token" value="')[1]
    data = {"csrf_token": token.split('"')[0]}
    for section in form_sections():
        for name, value in _form_data(section).items():
            data[name] = value if name.endswith("_kind") else f"typed-{name}-value"
    response = client.post(path, data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    # The registry decides: every refilled field comes back, no other secret does.
    for section in form_sections():
        for field in section.fields:
            name = f"{section.code}_{field.name}"
            if field.input == "select":
                continue  # a select keeps only one of its own choices (none of these texts)
            assert (data[name] in page) == field.refilled, name
    # Each field the validator refuses that text for is marked (a host, a port, a URL, ...).
    expected: dict[str, str] = {}
    for section in form_sections():
        for field in section.fields:
            name = f"{section.code}_{field.name}"
            check_field(field, data[name], expected, name)
    assert expected
    for name in expected:
        assert f'id="{name}-error"' in page, name


# -- through the real OpenBao: stored, and revealed with the registry's labels ------------------


def test_every_kind_is_stored_in_vault_and_revealed_with_its_labels(client, ticket_system, agent):
    items = [GOOD_ITEMS[kind.name] for kind in item_kinds()]
    notes = "  notes, byte-exact \t"
    path = ticket_system.link_path("T-kinds-reveal")
    response = client.post(path, json={"items": items, "notes": notes})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["kinds"] == [item["kind"] for item in items] + ["notes"]

    assert agent.login().status_code == 302
    assert agent.request_access("T-kinds-reveal").status_code == 302
    revealed = agent.reveal("T-kinds-reveal")
    assert revealed.status_code == 200
    page = revealed.get_data(as_text=True)
    for item in items:
        kind = find_kind(item["kind"])
        assert f"<h2>{html.escape(kind.label)}</h2>" in page
        for name, value in item.items():
            if name != "kind":
                assert f"<dt>{html.escape(field_label(name, kind.name))}</dt>" in page
                assert f'<code class="secret">{html.escape(str(value))}</code>' in page
    assert f"<h2>{NOTES.label}</h2>" in page
    assert f'<code class="secret">{notes}</code>' in page
