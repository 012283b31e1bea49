"""The customer's one-time link: validation that never consumes it, one 410 for every dead link,
the HTML form path, a race of concurrent posts, and a Vault outage — checked against Vault."""

from __future__ import annotations

import copy
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import hvac.exceptions
import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from vault_service.extensions import db
from vault_service.models import CredentialItem, Lease, SubmissionLink, Ticket
from vault_service.vault import KV_MOUNT

from .conftest import SAMPLE_ITEMS
from .helpers import csrf_token_of, folder_of

pytestmark = pytest.mark.usefixtures("openbao")

NOW = datetime(2030, 1, 15, 12, 0, 0, tzinfo=UTC)
FTP = {
    "kind": "ftp",
    "host": "ftp.example.test",
    "port": "21",
    "username": "uploader",
    "password": "ftp-pass",
}
ADMIN = {
    "kind": "admin_panel",
    "url": "https://shop.example.test/admin",
    "username": "owner",
    "password": "admin-pass",
}
OTHER = {"kind": "other", "label": "API key", "secret": "sk_live_123"}
VALID = {"items": [FTP], "notes": "thanks"}


def changed(item: dict, **changes) -> dict:
    """A copy of an item with fields replaced (None removes the field)."""
    result = {**item, **changes}
    return {name: value for name, value in result.items() if value is not None}


def lease_id_of(app, ticket_ref: str) -> str:
    with app.app_context():
        return db.session.scalar(
            select(Lease.id)
            .join(Ticket, Lease.ticket_id == Ticket.id)
            .where(Ticket.ref == ticket_ref)
        )


def vault_items(openbao, lease_id: str) -> set[str]:
    """Item ids Vault itself lists under a lease (asked with the root client, not the app)."""
    try:
        listing = openbao.admin().secrets.kv.v2.list_secrets(
            path=folder_of(lease_id), mount_point=KV_MOUNT
        )
    except hvac.exceptions.InvalidPath:
        return set()
    return {key.rstrip("/") for key in listing["data"]["keys"]}


def db_items(app) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(select(CredentialItem.id)))


def link_row(app) -> SubmissionLink:
    with app.app_context():
        (link,) = db.session.scalars(select(SubmissionLink)).all()
        db.session.expunge(link)
        return link


# -- JSON validation ----------------------------------------------------------------------------

INVALID_SUBMISSIONS = [
    pytest.param({"items": [changed(FTP, host=None)]}, "items[0].host", id="ftp-without-host"),
    pytest.param({"items": [changed(FTP, port=None)]}, "items[0].port", id="ftp-without-port"),
    pytest.param(
        {"items": [changed(FTP, kind="sftp", username=None)]},
        "items[0].username",
        id="sftp-without-username",
    ),
    pytest.param(
        {"items": [changed(FTP, kind="ftps", password="")]},
        "items[0].password",
        id="ftps-with-empty-password",
    ),
    pytest.param({"items": [changed(FTP, username="   ")]}, "items[0].username", id="blank-user"),
    pytest.param({"items": [changed(FTP, port="0")]}, "items[0].port", id="port-0"),
    pytest.param({"items": [changed(FTP, port="65536")]}, "items[0].port", id="port-65536"),
    pytest.param({"items": [changed(FTP, port=-21)]}, "items[0].port", id="port-negative"),
    pytest.param({"items": [changed(FTP, port="21a")]}, "items[0].port", id="port-not-a-number"),
    pytest.param({"items": [changed(FTP, port=True)]}, "items[0].port", id="port-bool"),
    pytest.param({"items": [changed(FTP, port=21.5)]}, "items[0].port", id="port-float"),
    pytest.param(
        {"items": [changed(FTP, host="ftp://ftp.example.test")]},
        "items[0].host",
        id="host-with-scheme",
    ),
    pytest.param(
        {"items": [changed(FTP, host="ftp.example.test:21")]}, "items[0].host", id="host-with-port"
    ),
    pytest.param({"items": [changed(FTP, host="ftp example")]}, "items[0].host", id="host-space"),
    pytest.param(
        {"items": [changed(ADMIN, url="ftp://shop.example.test/")]},
        "items[0].url",
        id="admin-url-ftp",
    ),
    pytest.param(
        {"items": [changed(ADMIN, url="javascript:alert(1)")]}, "items[0].url", id="admin-url-js"
    ),
    pytest.param(
        {"items": [changed(ADMIN, url="shop.example.test/admin")]},
        "items[0].url",
        id="admin-url-without-scheme",
    ),
    pytest.param({"items": [changed(ADMIN, url=None)]}, "items[0].url", id="admin-without-url"),
    pytest.param(
        {"items": [changed(ADMIN, username=None)]}, "items[0].username", id="admin-without-user"
    ),
    pytest.param({"items": [changed(OTHER, label=None)]}, "items[0].label", id="other-no-label"),
    pytest.param({"items": [changed(OTHER, secret=None)]}, "items[0].secret", id="other-no-secret"),
    pytest.param({"items": [changed(FTP, kind="ssh")]}, "items[0].kind", id="unknown-kind"),
    pytest.param({"items": [changed(FTP, kind=None)]}, "items[0].kind", id="missing-kind"),
    pytest.param({"items": [changed(FTP, path="/www")]}, "items[0].path", id="unknown-item-field"),
    pytest.param({"items": [FTP], "priority": "high"}, "priority", id="unknown-top-level-field"),
    pytest.param({"items": [FTP] * 21}, "items", id="21-items"),
    pytest.param({"items": []}, "items", id="no-items"),
    pytest.param({"notes": "only notes"}, "items", id="items-missing"),
    pytest.param({"items": FTP}, "items", id="items-not-a-list"),
    pytest.param({"items": ["ftp://u:p@host"]}, "items[0]", id="item-is-a-string"),
    pytest.param({"items": [FTP, None]}, "items[1]", id="item-is-null"),
    pytest.param({"items": [FTP, [FTP]]}, "items[1]", id="item-is-a-list"),
    pytest.param(
        {"items": [FTP, changed(FTP, port="99999")]}, "items[1].port", id="second-item-port"
    ),
    pytest.param(
        {"items": [changed(FTP, password="p" * 1025)]}, "items[0].password", id="password-1025"
    ),
    pytest.param(
        {"items": [changed(FTP, username="u" * 257)]}, "items[0].username", id="username-257"
    ),
    pytest.param({"items": [changed(FTP, host="h" * 254)]}, "items[0].host", id="host-254"),
    pytest.param(
        {"items": [changed(OTHER, secret="s" * 8193)]}, "items[0].secret", id="secret-8193"
    ),
    pytest.param({"items": [changed(OTHER, label="l" * 101)]}, "items[0].label", id="label-101"),
    pytest.param(
        {"items": [changed(ADMIN, url="https://x.test/" + "a" * 2040)]},
        "items[0].url",
        id="url-2049",
    ),
    pytest.param({"items": [FTP], "notes": "n" * 4001}, "notes", id="notes-4001"),
    pytest.param({"items": [FTP], "notes": ["a"]}, "notes", id="notes-not-text"),
    pytest.param(
        {"items": [changed(FTP, password="nul\x00byte")]}, "items[0].password", id="nul-in-password"
    ),
    pytest.param({"items": [FTP], "notes": "nul\x00"}, "notes", id="nul-in-notes"),
    pytest.param(
        {"items": [changed(FTP, password={"value": "x"})]}, "items[0].password", id="password-obj"
    ),
]


@pytest.mark.parametrize(("payload", "field"), INVALID_SUBMISSIONS)
def test_invalid_submission_is_422_naming_the_field_and_does_not_consume_the_link(
    app, client, ticket_system, openbao, payload, field
):
    path = ticket_system.link_path("T-invalid")
    response = client.post(path, json=payload)
    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert body["error"] == "validation_failed"
    assert field in body["fields"], body["fields"]
    assert vault_items(openbao, lease_id_of(app, "T-invalid")) == set()

    # The customer fixes it and tries again on the same link.
    assert client.post(path, json=VALID).status_code == 201


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[]", "application/json"),
        (b'"items"', "application/json"),
        (b"null", "application/json"),
        (b"\xff\xfe", "application/json"),
    ],
    ids=["malformed", "array", "string", "null", "not-utf8"],
)
def test_non_object_json_body_is_422_and_does_not_consume_the_link(
    client, ticket_system, raw, content_type
):
    path = ticket_system.link_path("T-raw")
    response = client.post(path, data=raw, headers={"Content-Type": content_type})
    assert response.status_code == 422
    assert response.get_json()["error"] == "validation_failed"
    assert client.post(path, json=VALID).status_code == 201


def test_oversized_body_is_413_and_does_not_consume_the_link(client, ticket_system, settings):
    path = ticket_system.link_path("T-huge")
    payload = {"items": [changed(OTHER, secret="s" * settings.max_request_bytes)]}
    response = client.post(path, json=payload)
    assert response.status_code == 413
    assert client.post(path, json=VALID).status_code == 201


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"items": [changed(FTP, port="1")]}, id="port-1"),
        pytest.param({"items": [changed(FTP, port="65535")]}, id="port-65535"),
        pytest.param({"items": [changed(FTP, port=2121)]}, id="port-as-integer"),
        pytest.param({"items": [changed(FTP, host="192.0.2.10")]}, id="ipv4-host"),
        pytest.param({"items": [changed(FTP, host="[2001:db8::1]")]}, id="ipv6-host"),
        pytest.param(
            {"items": [changed(FTP, host=".".join(["a" * 63] * 3 + ["b" * 61]))]}, id="host-253"
        ),
        pytest.param({"items": [changed(FTP, password="p" * 1024)]}, id="password-1024"),
        pytest.param({"items": [changed(OTHER, secret="s" * 8192)]}, id="secret-8192"),
        pytest.param({"items": [changed(ADMIN, url="http://10.0.0.5:8080/wp-admin")]}, id="http"),
        pytest.param({"items": [FTP] * 20}, id="20-items"),
        pytest.param({"items": [FTP], "notes": "n" * 4000}, id="notes-4000"),
        pytest.param({"items": [OTHER], "notes": None}, id="notes-null"),
        pytest.param({"items": [changed(FTP, password="tab\tnew\nline\r")]}, id="whitespace"),
    ],
)
def test_values_at_the_limits_are_accepted(app, client, ticket_system, openbao, payload):
    path = ticket_system.link_path("T-limits")
    response = client.post(path, json=payload)
    assert response.status_code == 201, response.get_json()
    expected = len(payload["items"]) + (1 if payload.get("notes") else 0)
    assert response.get_json()["item_count"] == expected
    assert vault_items(openbao, lease_id_of(app, "T-limits")) == db_items(app)
    assert len(db_items(app)) == expected


# -- dead links ---------------------------------------------------------------------------------


@pytest.fixture
def dead_links(app, client, ticket_system) -> dict[str, str]:
    """Paths of unknown, over-long, used, expired (at NOW + 60) and closed-ticket links."""
    used = ticket_system.link_path("T-dead")
    assert client.post(used, json=VALID).status_code == 201
    with freeze_time(NOW):
        expired = ticket_system.link_path("T-dead", ttl_seconds=60)
        closed = ticket_system.link_path("T-dead-closed", ttl_seconds=3600)
    assert ticket_system.close("T-dead-closed").status_code == 202
    return {
        "unknown": "/s/" + secrets.token_urlsafe(32),
        "over-long": "/s/" + "a" * 129,
        "used": used,
        "expired": expired,
        "closed-ticket": closed,
    }


def test_link_is_usable_one_second_before_expiry_and_gone_at_it(client, ticket_system):
    with freeze_time(NOW):
        path = ticket_system.link_path("T-expiry", ttl_seconds=60)
    with freeze_time(NOW + timedelta(seconds=59)):
        assert client.get(path).status_code == 200
    with freeze_time(NOW + timedelta(seconds=60)):
        assert client.get(path).status_code == 410
        assert client.post(path, json=VALID).status_code == 410
    with freeze_time(NOW + timedelta(seconds=59)):
        assert client.post(path, json=VALID).status_code == 201


def test_used_expired_closed_and_unknown_links_get_the_same_410_for_get(client, dead_links):
    bodies = {}
    for case, path in dead_links.items():
        with freeze_time(NOW + timedelta(seconds=60)):
            response = client.get(path)
        assert response.status_code == 410, case
        bodies[case] = response.get_data()
    assert len(set(bodies.values())) == 1, bodies
    assert b"no longer valid" in bodies["used"]


@pytest.mark.parametrize(
    "payload", [VALID, {"items": []}, {"junk": True}], ids=["valid", "invalid", "unknown-fields"]
)
def test_used_expired_closed_and_unknown_links_get_the_same_410_for_json_post(
    app, client, dead_links, payload
):
    before = db_items(app)
    bodies = {}
    for case, path in dead_links.items():
        with freeze_time(NOW + timedelta(seconds=60)):
            response = client.post(path, json=payload)
        assert response.status_code == 410, case
        bodies[case] = response.get_data()
    assert len(set(bodies.values())) == 1, bodies
    assert response.get_json()["error"] == "link_unavailable"
    assert db_items(app) == before


def test_used_expired_closed_and_unknown_links_get_the_same_410_for_form_post(
    client, ticket_system, dead_links
):
    # The CSRF token belongs to the browser session, so a live link's form provides one. The
    # session cookie is time-stamped, so it is issued under the same frozen clock.
    with freeze_time(NOW):
        live = ticket_system.link_path("T-live", ttl_seconds=3600)
    bodies = {}
    with freeze_time(NOW + timedelta(seconds=60)):
        token = csrf_token_of(client.get(live).get_data(as_text=True))
        for case, path in dead_links.items():
            response = client.post(
                path, data={"csrf_token": token, "ft_kind": "ftp", "ft_host": "h.example.test"}
            )
            assert response.status_code == 410, case
            bodies[case] = response.get_data()
    assert len(bodies) == len(dead_links)
    assert len(set(bodies.values())) == 1, bodies


def test_a_closed_tickets_link_is_gone_too(client, ticket_system):
    path = ticket_system.link_path("T-closing")
    assert ticket_system.close("T-closing").status_code == 202
    assert client.get(path).status_code == 410
    assert client.post(path, json=VALID).status_code == 410


# -- the HTML form ------------------------------------------------------------------------------


def test_form_post_of_the_ftp_section_stores_it_and_shows_the_retention(
    app, client, ticket_system, openbao
):
    path = ticket_system.link_path("T-form")
    page = client.get(path)
    assert page.status_code == 200
    response = client.post(
        path,
        data={
            "csrf_token": csrf_token_of(page.get_data(as_text=True)),
            "ft_kind": "sftp",
            "ft_host": "files.example.test",
            "ft_port": "22",
            "ft_username": "deploy",
            "ft_password": "form-pässword ",
        },
    )
    assert response.status_code == 201
    html = response.get_data(as_text=True)
    assert "We stored 1 item for ticket T-form" in html
    assert "at most <strong>30 days</strong>" in html
    assert "form-pässword" not in html
    assert len(vault_items(openbao, lease_id_of(app, "T-form"))) == 1
    with app.app_context():
        assert db.session.scalar(select(CredentialItem.kind)) == "sftp"
    assert client.get(path).status_code == 410


def test_form_post_of_every_section_stores_one_item_each(app, client, ticket_system, openbao):
    path = ticket_system.link_path("T-form-all")
    response = client.post(
        path,
        data={
            "csrf_token": csrf_token_of(client.get(path).get_data(as_text=True)),
            "ft_kind": "ftps",
            "ft_host": "files.example.test",
            "ft_port": "990",
            "ft_username": "deploy",
            "ft_password": "p1",
            "ap_url": "https://shop.example.test/admin",
            "ap_username": "owner",
            "ap_password": "p2",
            "ot_label": "Database",
            "ot_secret": "p3",
            "notes": "staging only",
        },
    )
    assert response.status_code == 201
    with app.app_context():
        kinds = list(db.session.scalars(select(CredentialItem.kind).order_by("position")))
    assert kinds == ["ftps", "admin_panel", "other", "notes"]
    assert vault_items(openbao, lease_id_of(app, "T-form-all")) == db_items(app)


def test_empty_form_post_is_422_and_does_not_consume_the_link(app, client, ticket_system):
    """What a scanner posting the untouched form sends: the CSRF token and the default kind."""
    path = ticket_system.link_path("T-empty-form")
    token = csrf_token_of(client.get(path).get_data(as_text=True))
    response = client.post(path, data={"csrf_token": token, "ft_kind": "ftp"})
    assert response.status_code == 422
    assert "Add at least one credential." in response.get_data(as_text=True)
    assert link_row(app).consumed_at is None
    assert client.post(path, json=VALID).status_code == 201


@pytest.mark.parametrize("csrf_token", [None, "", "not-a-token"], ids=["absent", "empty", "forged"])
def test_form_post_without_a_valid_csrf_token_is_400_and_does_not_consume_the_link(
    app, client, ticket_system, openbao, csrf_token
):
    path = ticket_system.link_path("T-csrf")
    client.get(path)  # the browser has a session, just not this form's token
    data = {"ft_kind": "ftp", "ft_host": "h.example.test", "ft_port": "21"}
    data |= {"ft_username": "u", "ft_password": "p"}
    if csrf_token is not None:
        data["csrf_token"] = csrf_token
    response = client.post(path, data=data)
    assert response.status_code == 400
    assert "csrf" in response.get_data(as_text=True).lower() or "form expired" in (
        response.get_data(as_text=True)
    )
    assert link_row(app).consumed_at is None
    assert vault_items(openbao, lease_id_of(app, "T-csrf")) == set()
    assert client.post(path, json=VALID).status_code == 201


def test_form_validation_error_page_keeps_what_was_typed_except_passwords(
    app, client, ticket_system
):
    path = ticket_system.link_path("T-echo")
    kept = {
        "ft_host": "canary-host-7f3a.example.test",
        "ft_port": "99999",  # the one invalid field
        "ft_username": "canary-user-91b2",
        "ap_url": "ftp://canary-admin-5e1d.example.test",  # invalid: not http(s)
        "ap_username": "canary-admin-user-ab12",
        "notes": "canary-notes-e9f8",
    }
    secrets = {"ft_password": "canary-pass-c0ffee", "ap_password": "canary-admin-pass-34cd"}
    token = csrf_token_of(client.get(path).get_data(as_text=True))
    response = client.post(path, data={"csrf_token": token, "ft_kind": "sftp", **kept, **secrets})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    for name, value in kept.items():
        assert value in html, name
    for name, value in secrets.items():
        assert value not in html, name
        assert f'id="{name}-retype"' in html, name
    assert 'id="ft_port-error"' in html
    assert 'id="ap_url-error"' in html
    assert '<option value="sftp" selected>' in html
    assert link_row(app).consumed_at is None


# -- concurrency --------------------------------------------------------------------------------


def test_concurrent_posts_to_one_link_store_exactly_one_submission(app, ticket_system, openbao):
    path = ticket_system.link_path("T-race")
    threads = 8
    barrier = threading.Barrier(threads)

    def post(payload: dict) -> int:
        client = app.test_client()
        barrier.wait(timeout=30)
        return client.post(path, json=payload).status_code

    # Each thread posts its own distinct (valid) submission so the stored one can be told apart.
    payloads = [
        {"items": [changed(FTP, username=f"racer-{n}")] * (1 + n % 3)} for n in range(threads)
    ]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        statuses = list(pool.map(post, copy.deepcopy(payloads)))

    assert statuses.count(201) == 1, statuses
    # The losers wrote too, then found the link consumed and deleted what they wrote.
    assert set(statuses) == {201, 410}, statuses
    winner = payloads[statuses.index(201)]
    stored = vault_items(openbao, lease_id_of(app, "T-race"))
    assert len(stored) == len(winner["items"])
    assert stored == db_items(app)
    link = link_row(app)
    assert link.consumed_at is not None


# -- Vault outage -------------------------------------------------------------------------------


def test_vault_outage_is_a_clear_503_stores_nothing_and_keeps_the_link(
    app, client, ticket_system, openbao, app_without_vault
):
    path = ticket_system.link_path("T-outage")
    payload = {"items": SAMPLE_ITEMS, "notes": "canary-outage-note"}

    response = app_without_vault.test_client().post(path, json=payload)
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"] == "unavailable"
    assert "Nothing was stored" in body["message"]
    assert "canary-outage-note" not in response.get_data(as_text=True)

    assert vault_items(openbao, lease_id_of(app, "T-outage")) == set()
    assert db_items(app) == set()
    link = link_row(app)
    assert link.consumed_at is None

    # Vault is back (the working app): the same link takes the same submission.
    assert client.get(path).status_code == 200
    assert client.post(path, json=payload).status_code == 201
    assert len(vault_items(openbao, lease_id_of(app, "T-outage"))) == 3


def test_vault_outage_on_the_form_path_is_a_503_page_and_keeps_the_link(
    app, client, ticket_system, app_without_vault
):
    path = ticket_system.link_path("T-outage-form")
    browser = app_without_vault.test_client()
    token = csrf_token_of(browser.get(path).get_data(as_text=True))
    response = browser.post(
        path,
        data={"csrf_token": token, "ot_label": "Database", "ot_secret": "canary-secret-77aa"},
    )
    assert response.status_code == 503
    html = response.get_data(as_text=True)
    assert "Temporarily unavailable" in html and "Nothing was stored" in html
    assert "canary-secret-77aa" not in html
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(CredentialItem)) == 0
    assert client.post(path, json=VALID).status_code == 201
