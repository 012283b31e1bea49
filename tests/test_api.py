"""The ticket system's JSON API: bearer auth, ticket_ref and ttl validation, media types, and
that every rejected request is a clean JSON 4xx that changes nothing."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from vault_service.extensions import db
from vault_service.models import AuditEvent, Lease, SubmissionLink, Ticket

from .conftest import TICKET_API_TOKEN

pytestmark = pytest.mark.usefixtures("openbao")

NOW = datetime(2030, 1, 15, 12, 0, 0, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {TICKET_API_TOKEN}"}


def links_path(ticket_ref: str) -> str:
    return f"/api/v1/tickets/{ticket_ref}/submission-links"


def row_counts(app) -> dict[str, int]:
    """How many rows each table that a request could change holds."""
    with app.app_context():
        return {
            model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
            for model in (Ticket, Lease, SubmissionLink, AuditEvent)
        }


def assert_json_error(response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) >= {"error", "message"}
    if code is not None:
        assert body["error"] == code
    assert "Traceback" not in response.get_data(as_text=True)


# -- bearer auth --------------------------------------------------------------------------------

BAD_AUTHORIZATION = [
    pytest.param(None, id="missing"),
    pytest.param("", id="empty"),
    pytest.param("Bearer", id="scheme-only"),
    pytest.param("Bearer ", id="scheme-and-space"),
    pytest.param(f"Basic {TICKET_API_TOKEN}", id="basic-scheme"),
    pytest.param(f"Token {TICKET_API_TOKEN}", id="token-scheme"),
    pytest.param(TICKET_API_TOKEN, id="no-scheme"),
    pytest.param(f"Bearer  {TICKET_API_TOKEN}", id="double-space"),
    pytest.param(f"Bearer {TICKET_API_TOKEN}x", id="token-with-suffix"),
    pytest.param(f"Bearer {TICKET_API_TOKEN[:-1]}", id="token-prefix"),
    pytest.param("Bearer " + "A" * len(TICKET_API_TOKEN), id="wrong-token"),
    pytest.param("Bearer \u00ff\u00fe", id="latin1-token"),
]


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION)
def test_link_creation_without_a_valid_bearer_token_is_401_json(app, client, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    before = row_counts(app)
    response = client.post(links_path("T-auth"), headers=headers)
    assert_json_error(response, 401, "unauthorized")
    assert row_counts(app) == before


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION)
def test_ticket_status_without_a_valid_bearer_token_is_401_json(
    client, ticket_system, authorization
):
    ticket_system.link_path("T-auth")
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_json_error(client.get("/api/v1/tickets/T-auth", headers=headers), 401, "unauthorized")


def test_bearer_scheme_is_case_insensitive(client):
    """RFC 9110: the auth scheme is case-insensitive; the token is not."""
    response = client.post(
        links_path("T-case"), headers={"Authorization": f"bearer {TICKET_API_TOKEN}"}
    )
    assert response.status_code == 201
    assert_json_error(
        client.post(
            links_path("T-case"),
            headers={"Authorization": f"Bearer {TICKET_API_TOKEN.swapcase()}"},
        ),
        401,
    )


def test_unknown_ticket_is_401_not_404_without_a_token(client):
    """An unauthenticated caller cannot probe which tickets exist."""
    assert_json_error(client.get("/api/v1/tickets/T-nope"), 401)


# -- ticket_ref ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ticket_ref",
    ["A", "9", "T-1001", "a.b_c-d", "x" * 64, "0" + "._-" * 21],
)
def test_ticket_refs_matching_the_contract_get_a_link(client, ticket_ref):
    response = client.post(links_path(ticket_ref), headers=AUTH)
    assert response.status_code == 201, response.get_json()
    assert client.get(f"/api/v1/tickets/{ticket_ref}", headers=AUTH).get_json()["ticket_ref"] == (
        ticket_ref
    )


@pytest.mark.parametrize(
    "ticket_ref",
    [
        "x" * 65,
        ".hidden",
        "-dash",
        "_under",
        "a b",
        "a%20b",
        "t%C3%AFcket",
        "a%00b",
        "a:b",
        "a;b",
        "%2e%2e",
        "..",
        "a\\b",
    ],
)
def test_ticket_refs_outside_the_contract_are_400(app, client, ticket_ref):
    before = row_counts(app)
    assert_json_error(client.post(links_path(ticket_ref), headers=AUTH), 400, "bad_request")
    assert_json_error(client.get(f"/api/v1/tickets/{ticket_ref}", headers=AUTH), 400)
    assert row_counts(app) == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/tickets/../../etc/passwd/submission-links",
        "/api/v1/tickets/a/../b/submission-links",
        "/api/v1/tickets/a/b/submission-links",
        "/api/v1/tickets//submission-links",
        "/api/v1/tickets/%2e%2e%2f%2e%2e%2fetc/submission-links",
        "/api/v1/tickets/..%2f..%2fetc/submission-links",
        "/api/v1/tickets/%252e%252e/submission-links",
        "/api/v1/tickets/a%2Fb/submission-links",
    ],
)
def test_path_traversal_in_ticket_ref_is_a_clean_4xx(app, client, path):
    before = row_counts(app)
    response = client.post(path, headers=AUTH)
    # 405 when the slashes collapse onto the GET-only status route.
    assert response.status_code in (400, 404, 405), response.status_code
    assert response.get_json()["error"]
    assert row_counts(app) == before


# -- ttl_seconds --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ttl",
    [
        pytest.param("3600", id="string"),
        pytest.param(3600.0, id="float"),
        pytest.param(3600.5, id="fraction"),
        pytest.param(True, id="bool"),
        pytest.param([3600], id="list"),
        pytest.param({"seconds": 3600}, id="object"),
        pytest.param(59, id="below-minimum"),
        pytest.param(0, id="zero"),
        pytest.param(-3600, id="negative"),
        pytest.param(30 * 24 * 3600 + 1, id="above-maximum"),
        pytest.param(10**30, id="huge"),
        pytest.param(None, id="null"),
    ],
)
def test_invalid_ttl_seconds_is_400_and_creates_nothing(app, ticket_system, ttl):
    before = row_counts(app)
    assert_json_error(ticket_system.create_link("T-ttl", ttl_seconds=ttl), 400, "bad_request")
    assert row_counts(app) == before


@pytest.mark.parametrize("ttl", [60, 3600, 30 * 24 * 3600])
def test_valid_ttl_seconds_sets_expires_at_to_now_plus_ttl(ticket_system, ttl):
    with freeze_time(NOW):
        response = ticket_system.create_link(f"T-ttl-{ttl}", ttl_seconds=ttl)
    assert response.status_code == 201, response.get_json()
    expires_at = datetime.fromisoformat(response.get_json()["expires_at"])
    assert expires_at == NOW + timedelta(seconds=ttl)


def test_default_ttl_is_the_configured_link_ttl(ticket_system, settings):
    with freeze_time(NOW):
        response = ticket_system.create_link("T-default-ttl")
    assert response.status_code == 201
    expires_at = datetime.fromisoformat(response.get_json()["expires_at"])
    assert expires_at == NOW + timedelta(seconds=settings.link_ttl_seconds)


def test_link_response_has_exactly_the_contract_fields(ticket_system):
    response = ticket_system.create_link("T-shape", ttl_seconds=600)
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"link_id", "url", "expires_at"}
    assert body["url"].startswith("http://localhost/s/")
    assert datetime.fromisoformat(body["expires_at"]).tzinfo is not None


# -- request bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"ttl_seconds": 600, "ticket_ref": "T-other"}, id="extra-field"),
        pytest.param({"ttl": 600}, id="misspelt-field"),
        pytest.param({"expires_at": "2030-01-01T00:00:00Z"}, id="unsupported-field"),
    ],
)
def test_unknown_body_field_is_400_and_creates_nothing(app, client, body):
    before = row_counts(app)
    response = client.post(links_path("T-body"), json=body, headers=AUTH)
    assert_json_error(response, 400, "bad_request")
    assert row_counts(app) == before


@pytest.mark.parametrize(
    "raw", [b"{not json", b"[]", b'"ttl"', b"null", b"60", b"\xff\xfe"], ids=repr
)
def test_malformed_json_body_is_400_and_creates_nothing(app, client, raw):
    before = row_counts(app)
    response = client.post(
        links_path("T-body"), data=raw, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert_json_error(response, 400, "bad_request")
    assert row_counts(app) == before


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("application/x-www-form-urlencoded", b"ttl_seconds=600"),
        ("text/plain", b'{"ttl_seconds": 600}'),
        ("multipart/form-data; boundary=x", b"--x--"),
        (None, b'{"ttl_seconds": 600}'),
    ],
)
def test_non_json_content_type_with_a_body_is_415_and_creates_nothing(
    app, client, content_type, raw
):
    headers = dict(AUTH)
    if content_type:
        headers["Content-Type"] = content_type
    before = row_counts(app)
    response = client.post(links_path("T-body"), data=raw, headers=headers)
    assert_json_error(response, 415, "unsupported_media_type")
    assert row_counts(app) == before


def test_empty_body_needs_no_content_type(client):
    assert client.post(links_path("T-empty-body"), headers=AUTH).status_code == 201


def test_body_over_max_request_bytes_is_413(app, client, settings):
    before = row_counts(app)
    raw = b'{"ttl_seconds": 600, "pad": "' + b"p" * settings.max_request_bytes + b'"}'
    response = client.post(
        links_path("T-big"), data=raw, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert_json_error(response, 413)
    assert row_counts(app) == before


# -- ticket state -------------------------------------------------------------------------------


def test_closed_ticket_gets_no_new_link_409(app, ticket_system):
    ticket_system.link_path("T-closed")
    assert ticket_system.close("T-closed").status_code == 202
    before = row_counts(app)
    assert_json_error(ticket_system.create_link("T-closed"), 409, "conflict")
    assert row_counts(app) == before


def test_reopened_ticket_gets_links_again(ticket_system):
    ticket_system.link_path("T-reopen")
    ticket_system.close("T-reopen")
    assert ticket_system.send_event("ticket.reopened", "T-reopen").status_code == 202
    assert ticket_system.create_link("T-reopen").status_code == 201


def test_first_links_asked_for_at_once_make_one_ticket_with_one_lease(app, ticket_system):
    """Requests racing to create a new ticket: each gets its link, all on the one lease."""
    # Another ticket first: the deployment's first link claims it in Vault, a race of its own.
    assert ticket_system.create_link("T-before").status_code == 201
    racers = 4
    barrier = threading.Barrier(racers)

    def create(_: int) -> int:
        racer = app.test_client()
        barrier.wait(timeout=30)
        return racer.post(links_path("T-first"), headers=AUTH).status_code

    with ThreadPoolExecutor(max_workers=racers) as pool:
        assert list(pool.map(create, range(racers))) == [201] * racers
    with app.app_context():
        leases = db.session.scalars(
            select(Lease.id).join(Ticket).where(Ticket.ref == "T-first")
        ).all()
        links = db.session.scalars(
            select(SubmissionLink.lease_id).join(Ticket).where(Ticket.ref == "T-first")
        ).all()
    assert len(leases) == 1
    assert links == leases * racers


def test_status_of_an_unknown_ticket_is_404_json(app, ticket_system):
    before = row_counts(app)
    assert_json_error(ticket_system.status(f"T-{uuid.uuid4().hex[:8]}"), 404, "not_found")
    assert row_counts(app) == before


def test_status_of_a_new_ticket_reports_open_with_no_credentials(ticket_system):
    ticket_system.link_path("T-new")
    assert ticket_system.status("T-new").get_json() == {
        "ticket_ref": "T-new",
        "status": "open",
        "credential_count": 0,
        "purge_receipt": None,
        "purge_receipt_jws": None,
    }


def test_second_link_for_a_ticket_reuses_its_lease(app, ticket_system):
    """Each request makes a new link, but the ticket keeps one Vault generation."""
    first = ticket_system.create_link("T-two").get_json()
    second = ticket_system.create_link("T-two").get_json()
    assert first["link_id"] != second["link_id"] and first["url"] != second["url"]
    counts = row_counts(app)
    assert (counts["tickets"], counts["leases"], counts["submission_links"]) == (1, 1, 2)


def test_wrong_method_is_405_json_with_allow(client):
    response = client.get(links_path("T-1"), headers=AUTH)
    assert_json_error(response, 405)
    assert "POST" in response.headers["Allow"]
