"""Standard Webhooks on POST /api/v1/webhooks/ticket-events: signatures, tolerance, rotation,
idempotency, malformed input, the close committed with its durable purge job, and the endpoint
absent (404) when no secret is configured."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import create_engine, func, select, text

from vault_service import create_app
from vault_service.extensions import db
from vault_service.models import AuditEvent, Job, Lease, Ticket, WebhookDelivery
from vault_service.services import audit
from vault_service.services.providers.standard_webhooks import sign, signed_headers

from .conftest import SAMPLE_ITEMS, WEBHOOK_KEY

pytestmark = pytest.mark.usefixtures("openbao")

WEBHOOK_PATH = "/api/v1/webhooks/ticket-events"
# A fixed 'now' on a whole second, so offsets land exactly on the tolerance boundary.
NOW = datetime(2030, 1, 15, 12, 0, 0, tzinfo=UTC)
OTHER_KEY = secrets.token_bytes(32)


def event_body(event_type: str, ticket_ref: str) -> bytes:
    return json.dumps({"type": event_type, "data": {"ticket_ref": ticket_ref}}).encode()


def signed(
    body: bytes,
    *,
    key: bytes = WEBHOOK_KEY,
    webhook_id: str | None = None,
    timestamp: int | None = None,
    content_type: str = "application/json",
) -> dict:
    """Headers of a delivery signed with `key` (the configured key unless told otherwise)."""
    headers = signed_headers([key], body, webhook_id=webhook_id, timestamp=timestamp)
    return {**headers, "Content-Type": content_type}


def deliver(client, body: bytes, headers: dict):
    return client.post(WEBHOOK_PATH, data=body, headers=headers)


def ticket_state(app, ticket_ref: str) -> str:
    with app.app_context():
        return db.session.scalar(select(Ticket.status).where(Ticket.ref == ticket_ref))


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def open_ticket(ticket_system) -> str:
    """A ticket with a live lease (it got a link), still open."""
    ticket_ref = f"T-{uuid.uuid4().hex[:8]}"
    ticket_system.link_path(ticket_ref)
    return ticket_ref


def test_valid_delivery_is_accepted_and_closes_the_ticket(app, client, open_ticket):
    response = deliver(client, body := event_body("ticket.closed", open_ticket), signed(body))
    assert response.status_code == 202
    assert response.get_json() == {"status": "accepted", "outcome": "closing"}
    assert ticket_state(app, open_ticket) == "closing"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_delivery_missing_a_signature_header_is_401_and_changes_nothing(
    app, client, open_ticket, missing
):
    body = event_body("ticket.closed", open_ticket)
    headers = signed(body)
    del headers[missing]
    response = deliver(client, body, headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert ticket_state(app, open_ticket) == "open"
    assert count(app, WebhookDelivery) == 0


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h, b: {**h, "webhook-signature": "v1," + "A" * 44}, id="garbage"),
        pytest.param(
            lambda h, b: {**h, "webhook-signature": signed(b, key=OTHER_KEY)["webhook-signature"]},
            id="unknown-key",
        ),
        pytest.param(
            lambda h, b: {**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")},
            id="wrong-version",
        ),
        pytest.param(
            lambda h, b: {**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) - 1)},
            id="timestamp-not-the-signed-one",
        ),
        pytest.param(lambda h, b: {**h, "webhook-id": h["webhook-id"] + "x"}, id="id-not-signed"),
        pytest.param(lambda h, b: {**h, "webhook-signature": ""}, id="empty-signature"),
        pytest.param(lambda h, b: {**h, "webhook-timestamp": "soon"}, id="non-numeric-timestamp"),
    ],
)
def test_delivery_with_a_bad_signature_is_401_and_changes_nothing(app, client, open_ticket, tamper):
    body = event_body("ticket.closed", open_ticket)
    response = deliver(client, body, tamper(signed(body), body))
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert ticket_state(app, open_ticket) == "open"
    assert count(app, WebhookDelivery) == 0


def test_body_swapped_under_a_valid_signature_is_401(app, client, open_ticket):
    """Headers signed for a harmless event do not authorise a different body."""
    harmless = event_body("ticket.reopened", open_ticket)
    headers = signed(harmless)
    response = deliver(client, event_body("ticket.closed", open_ticket), headers)
    assert response.status_code == 401
    assert ticket_state(app, open_ticket) == "open"


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(-301, 401), (-300, 202), (-299, 202), (299, 202), (300, 202), (301, 401)],
)
def test_timestamp_tolerance_is_five_minutes_either_way(app, client, open_ticket, offset, expected):
    body = event_body("ticket.closed", open_ticket)
    headers = signed(body, timestamp=int(NOW.timestamp()) + offset)
    with freeze_time(NOW):
        response = deliver(client, body, headers)
    assert response.status_code == expected
    assert ticket_state(app, open_ticket) == ("closing" if expected == 202 else "open")


def test_only_the_second_of_several_signatures_needs_to_be_valid(app, client, open_ticket):
    """Key rotation on the sender's side: it signs with the old and the new secret."""
    body = event_body("ticket.closed", open_ticket)
    headers = signed(body)
    timestamp = int(headers["webhook-timestamp"])
    stale = sign(OTHER_KEY, headers["webhook-id"], timestamp, body)
    headers["webhook-signature"] = f"{stale} {headers['webhook-signature']}"
    assert deliver(client, body, headers).status_code == 202
    assert ticket_state(app, open_ticket) == "closing"


def test_several_signatures_none_valid_is_401(app, client, open_ticket):
    body = event_body("ticket.closed", open_ticket)
    headers = signed(body)
    timestamp = int(headers["webhook-timestamp"])
    wrong = [sign(k, headers["webhook-id"], timestamp, body) for k in (OTHER_KEY, b"x" * 32)]
    headers["webhook-signature"] = " ".join(wrong)
    assert deliver(client, body, headers).status_code == 401
    assert ticket_state(app, open_ticket) == "open"


@pytest.fixture
def rotating_app(make_settings, settings):
    """The app configured with two webhook secrets (our side of a rotation), same database."""
    rotating = create_app(
        make_settings(secret_key=settings.secret_key, webhook_secrets=(OTHER_KEY, WEBHOOK_KEY))
    )
    yield rotating
    with rotating.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("key", [OTHER_KEY, WEBHOOK_KEY], ids=["new-secret", "old-secret"])
def test_either_configured_secret_is_accepted(app, rotating_app, ticket_system, key):
    ticket_ref = f"T-{uuid.uuid4().hex[:8]}"
    ticket_system.link_path(ticket_ref)
    body = event_body("ticket.closed", ticket_ref)
    response = deliver(rotating_app.test_client(), body, signed(body, key=key))
    assert response.status_code == 202
    assert ticket_state(app, ticket_ref) == "closing"


def test_a_secret_that_is_not_configured_is_refused_by_the_rotating_app(
    app, rotating_app, ticket_system
):
    ticket_ref = f"T-{uuid.uuid4().hex[:8]}"
    ticket_system.link_path(ticket_ref)
    body = event_body("ticket.closed", ticket_ref)
    response = deliver(rotating_app.test_client(), body, signed(body, key=b"k" * 32))
    assert response.status_code == 401
    assert ticket_state(app, ticket_ref) == "open"


def test_redelivered_webhook_id_is_200_already_processed_and_acts_once(app, client, open_ticket):
    body = event_body("ticket.closed", open_ticket)
    headers = signed(body)
    assert deliver(client, body, headers).status_code == 202

    again = deliver(client, body, headers)
    assert again.status_code == 200
    assert again.get_json() == {"status": "already_processed"}
    assert count(app, AuditEvent, AuditEvent.action == "ticket.closed") == 1
    assert count(app, Job) == 1
    assert count(app, WebhookDelivery) == 1


def test_a_different_event_under_a_processed_webhook_id_is_not_applied(app, client, open_ticket):
    """The id names the message: a reopen reusing the close's id is a duplicate, not an event."""
    close = event_body("ticket.closed", open_ticket)
    headers = signed(close)
    assert deliver(client, close, headers).status_code == 202

    reopen = event_body("ticket.reopened", open_ticket)
    response = deliver(client, reopen, signed(reopen, webhook_id=headers["webhook-id"]))
    assert response.status_code == 200
    assert response.get_json() == {"status": "already_processed"}
    assert ticket_state(app, open_ticket) == "closing"
    assert count(app, AuditEvent, AuditEvent.action == "ticket.reopened") == 0


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b'"ticket.closed"', id="a-string"),
        pytest.param(b"[]", id="an-array"),
        pytest.param(b'{"type": "ticket.closed"}', id="no-data"),
        pytest.param(b'{"type": "ticket.closed", "data": "T-1"}', id="data-not-an-object"),
        pytest.param(b'{"type": "ticket.closed", "data": {}}', id="no-ticket-ref"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
    ],
)
def test_malformed_body_with_a_valid_signature_is_400_and_not_recorded(app, client, body):
    response = deliver(client, body, signed(body))
    assert response.status_code == 400
    assert response.get_json()["error"] == "bad_request"
    assert count(app, WebhookDelivery) == 0


def test_malformed_body_with_a_bad_signature_is_401_not_400(client):
    """The signature is checked first: an unauthenticated caller learns nothing about parsing."""
    body = b"{not json"
    headers = signed(body, key=OTHER_KEY)
    assert deliver(client, body, headers).status_code == 401


@pytest.mark.parametrize("event_type", ["ticket.deleted", "TICKET.CLOSED", "", None, 7])
def test_unknown_event_type_is_400_and_changes_nothing(app, client, open_ticket, event_type):
    body = json.dumps({"type": event_type, "data": {"ticket_ref": open_ticket}}).encode()
    assert deliver(client, body, signed(body)).status_code == 400
    assert ticket_state(app, open_ticket) == "open"
    assert count(app, WebhookDelivery) == 0


@pytest.mark.parametrize(
    "ticket_ref",
    ["", ".hidden", "-dash", "../etc/passwd", "a/b", "a b", "x" * 65, "tïcket", 42, None, ["T-1"]],
)
def test_bad_ticket_ref_is_400(app, client, ticket_ref):
    body = json.dumps({"type": "ticket.closed", "data": {"ticket_ref": ticket_ref}}).encode()
    response = deliver(client, body, signed(body))
    assert response.status_code == 400
    assert count(app, WebhookDelivery) == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_415_and_changes_nothing(app, client, open_ticket, content_type):
    body = event_body("ticket.closed", open_ticket)
    response = deliver(client, body, signed(body, content_type=content_type))
    assert response.status_code == 415
    assert response.get_json()["error"] == "unsupported_media_type"
    assert ticket_state(app, open_ticket) == "open"


def padded_event(ticket_ref: str, size: int) -> bytes:
    """A close event padded with an ignored field to exactly `size` bytes."""
    head = {"type": "ticket.closed", "data": {"ticket_ref": ticket_ref}, "padding": ""}
    base = len(json.dumps(head).encode())
    head["padding"] = "p" * (size - base)
    body = json.dumps(head).encode()
    assert len(body) == size
    return body


def test_body_over_max_request_bytes_is_413_and_changes_nothing(app, client, settings, open_ticket):
    body = padded_event(open_ticket, settings.max_request_bytes + 1)
    response = deliver(client, body, signed(body))
    assert response.status_code == 413
    assert response.get_json()["error"] == "request_entity_too_large"
    assert ticket_state(app, open_ticket) == "open"


def test_body_of_exactly_max_request_bytes_is_accepted(app, client, settings, open_ticket):
    body = padded_event(open_ticket, settings.max_request_bytes)
    assert deliver(client, body, signed(body)).status_code == 202
    assert ticket_state(app, open_ticket) == "closing"


def test_forged_or_replayed_close_leaves_the_ticket_open_and_revealable(
    app, client, ticket_system, agent, submitted_ticket
):
    agent.login()
    assert agent.request_access(submitted_ticket).status_code == 302
    body = event_body("ticket.closed", submitted_ticket)
    captured_long_ago = int(datetime.now(UTC).timestamp()) - 600
    attempts = [
        signed(body, key=OTHER_KEY),  # forged: the attacker does not hold the secret
        signed(body, timestamp=captured_long_ago),  # replayed: a genuine but stale delivery
        {**signed(body), "webhook-signature": ""},
    ]
    for headers in attempts:
        assert deliver(client, body, headers).status_code == 401

    assert ticket_system.status(submitted_ticket).get_json()["status"] == "open"
    assert count(app, Job) == 0
    assert count(app, AuditEvent, AuditEvent.action == "ticket.closed") == 0
    revealed = agent.reveal(submitted_ticket)
    assert revealed.status_code == 200
    assert SAMPLE_ITEMS[0]["password"] in revealed.get_data(as_text=True)


def committed(settings, sql: str, **params) -> list[tuple]:
    """Rows as any other connection sees them: only what was committed."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]
    finally:
        engine.dispose()


def test_acknowledged_close_has_committed_the_closing_state_and_a_purge_job(
    app, client, settings, open_ticket
):
    body = event_body("ticket.closed", open_ticket)
    headers = signed(body)
    assert deliver(client, body, headers).status_code == 202

    # No worker has run: what the 202 promises must already be durable.
    (ticket_id, status, closed_at) = committed(
        settings, "SELECT id, status, closed_at FROM tickets WHERE ref = :ref", ref=open_ticket
    )[0]
    assert status == "closing" and closed_at is not None
    jobs = committed(
        settings,
        "SELECT j.dedupe_key, j.completed_at, l.status FROM jobs j "
        "JOIN leases l ON l.id = j.dedupe_key WHERE j.ticket_id = :id AND j.kind = 'purge'",
        id=ticket_id,
    )
    assert len(jobs) == 1
    (lease_id, completed_at, lease_status) = jobs[0]
    assert completed_at is None and lease_status == "purging"
    assert committed(
        settings,
        "SELECT event_type FROM webhook_deliveries WHERE webhook_id = :id",
        id=headers["webhook-id"],
    ) == [("ticket.closed",)]
    with app.app_context():
        assert db.session.get(Lease, lease_id).token_accessor  # the job targets the real lease


def test_close_that_fails_midway_commits_nothing_and_can_be_redelivered(
    app, client, open_ticket, monkeypatch
):
    """State change, purge job and delivery record are one transaction: all or nothing."""
    real_record = audit.record

    def failing_record(action, **kwargs):
        if action == "ticket.closed":
            raise RuntimeError("simulated crash after the purge job was added")
        return real_record(action, **kwargs)

    monkeypatch.setattr(audit, "record", failing_record)
    body = event_body("ticket.closed", open_ticket)
    headers = signed(body)
    response = deliver(client, body, headers)
    assert response.status_code == 500
    assert ticket_state(app, open_ticket) == "open"
    assert count(app, Job) == 0
    assert count(app, WebhookDelivery) == 0

    # The sender retries the same message; this time it goes through, exactly once.
    monkeypatch.setattr(audit, "record", real_record)
    assert deliver(client, body, headers).status_code == 202
    assert ticket_state(app, open_ticket) == "closing"
    assert count(app, Job) == 1


def test_close_of_an_unknown_ticket_is_an_accepted_noop(app, client):
    body = event_body("ticket.closed", "T-never-seen")
    response = deliver(client, body, signed(body))
    assert response.status_code == 202
    assert response.get_json()["outcome"] == "unknown_ticket"
    assert count(app, Ticket) == 0
    assert count(app, Job) == 0


def test_delivery_time_is_taken_from_the_service_clock(app, client, open_ticket):
    """A delivery signed 'now' for a frozen clock far in the future is stale for the real one."""
    future = NOW + timedelta(days=3650)
    body = event_body("ticket.closed", open_ticket)
    headers = signed(body, timestamp=int(future.timestamp()))
    assert deliver(client, body, headers).status_code == 401
    with freeze_time(future):
        assert deliver(client, body, headers).status_code == 202


def test_signed_headers_carry_one_signature_per_secret_and_each_verifies(app, client, open_ticket):
    """The one builder the tests, the bench and outbound events share: a sender rotating its
    secret signs with both, and a receiver holding either accepts the delivery."""
    body = event_body("ticket.closed", open_ticket)
    headers = signed_headers([OTHER_KEY, WEBHOOK_KEY], body, webhook_id="msg_1", timestamp=1)
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == "1"
    assert headers["webhook-signature"].split() == [
        sign(OTHER_KEY, "msg_1", 1, body),
        sign(WEBHOOK_KEY, "msg_1", 1, body),
    ]
    fresh = signed_headers([OTHER_KEY, WEBHOOK_KEY], body)
    assert deliver(client, body, fresh).status_code == 202
    assert ticket_state(app, open_ticket) == "closing"


@pytest.fixture
def app_without_webhook_secret(make_settings, settings):
    """The app with no Standard Webhooks secret (a ticket system sending another vendor's)."""
    unsigned = create_app(make_settings(secret_key=settings.secret_key, webhook_secrets=()))
    yield unsigned
    with unsigned.app_context():
        db.session.remove()
        db.engine.dispose()


def test_without_a_secret_the_endpoint_is_404_and_changes_nothing(
    app, app_without_webhook_secret, open_ticket
):
    body = event_body("ticket.closed", open_ticket)
    response = deliver(app_without_webhook_secret.test_client(), body, signed(body))
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"
    assert ticket_state(app, open_ticket) == "open"
    assert count(app, WebhookDelivery) == 0
