"""Write-back into Zendesk and Zammad: the link as a public reply when the ticket system asks
for one, internal notes when credentials arrive and when the purge is done (with its receipt),
posted by jobs on the durable queue to a local fake of the vendors' documented endpoints."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from vault_service import create_app
from vault_service.extensions import db
from vault_service.models import Job

from .conftest import SAMPLE_ITEMS
from .helpdesk_fakes import HelpdeskFake
from .helpers import run_worker_pass

pytestmark = pytest.mark.usefixtures("openbao")


@pytest.fixture
def fake():
    fake = HelpdeskFake().start()
    yield fake
    fake.stop()


def zendesk_app(make_settings, fake, **overrides):
    return create_app(
        make_settings(
            zendesk_subdomain="acme",
            zendesk_email=fake.zendesk_email,
            zendesk_api_token=overrides.pop("token", fake.zendesk_token),
            zendesk_api_url=fake.url,
            **overrides,
        )
    )


def zammad_app(make_settings, fake):
    return create_app(make_settings(zammad_url=fake.url, zammad_token=fake.zammad_token))


def note_jobs(app, kind: str) -> list[SimpleNamespace]:
    """The jobs of a kind, read from the database as plain values."""
    columns = ("payload", "result", "completed_at", "attempts", "last_error")
    with app.app_context():
        query = select(Job).where(Job.kind == kind).order_by(Job.created_at)
        found = [
            SimpleNamespace(**{c: getattr(job, c) for c in columns})
            for job in db.session.scalars(query)
        ]
        db.session.rollback()
    return found


def test_zendesk_hears_the_link_the_submission_and_the_purge(
    make_settings, ticket_system_factory, fake
):
    app = zendesk_app(make_settings, fake)
    ticket_system, _, client = ticket_system_factory(app)
    link = ticket_system.create_link("5158").get_json()

    # The job row holds the link only as Vault-transit ciphertext, never the token.
    [job] = note_jobs(app, "zendesk_note")
    token = link["url"].rsplit("/", 1)[1]
    assert job.payload["url_ciphertext"].startswith("vault:v1:")
    assert token not in json.dumps(job.payload)

    run_worker_pass(app)
    [reply] = fake.delivered()
    assert (reply.method, reply.path) == ("PUT", "/api/v2/tickets/5158.json")
    comment = reply.json["ticket"]["comment"]
    assert comment["public"] is True
    assert link["url"] in comment["body"]
    # Delivered: the ciphertext is gone from the row as well.
    [job] = note_jobs(app, "zendesk_note")
    assert "url_ciphertext" not in job.payload
    assert job.result == {"delivered": True, "public": True}

    path = link["url"].removeprefix("http://localhost")
    assert client.post(path, json={"items": SAMPLE_ITEMS}).status_code == 201
    run_worker_pass(app)
    note = fake.delivered()[1].json["ticket"]["comment"]
    assert note["public"] is False
    assert "2 credential item(s) (sftp, admin_panel)" in note["body"]
    for item in SAMPLE_ITEMS:
        assert item["password"] not in note["body"]

    assert ticket_system.close("5158").status_code == 202
    run_worker_pass(app)
    purged = fake.delivered()[2]
    assert purged.path == "/api/v2/tickets/5158.json"
    note = purged.json["ticket"]["comment"]
    assert note["public"] is False
    receipt = json.loads(note["body"].split("Receipt:\n", 1)[1])
    assert receipt["ticket_ref"] == "5158"
    assert receipt["verified_absent_in_vault"] is True
    assert receipt["reason"] == "ticket_closed"


def test_zammad_gets_a_customer_visible_link_and_an_internal_note(
    make_settings, ticket_system_factory, fake
):
    app = zammad_app(make_settings, fake)
    ticket_system, _, client = ticket_system_factory(app)
    link = ticket_system.create_link("4711").get_json()
    run_worker_pass(app)
    path = link["url"].removeprefix("http://localhost")
    assert client.post(path, json={"items": SAMPLE_ITEMS}).status_code == 201
    run_worker_pass(app)

    reply, note = fake.delivered()
    assert (reply.method, reply.path) == ("POST", "/api/v1/ticket_articles")
    assert reply.headers["Authorization"] == f"Token token={fake.zammad_token}"
    assert reply.json["ticket_id"] == 4711
    assert reply.json["internal"] is False
    assert link["url"] in reply.json["body"]
    assert note.json["internal"] is True
    assert "sftp, admin_panel" in note.json["body"]


def test_a_help_desk_that_fails_first_gets_the_note_on_the_retry(
    make_settings, ticket_system_factory, fake
):
    fake.fail_first = 1
    app = zendesk_app(make_settings, fake)
    ticket_system, _, _ = ticket_system_factory(app)
    ticket_system.create_link("6001")

    run_worker_pass(app)
    [job] = note_jobs(app, "zendesk_note")
    assert job.completed_at is None
    assert (job.attempts, job.last_error) == (1, "HelpdeskError")
    assert fake.delivered() == []

    # Past its backoff, the next pass delivers it.
    with freeze_time(datetime.now(UTC) + timedelta(seconds=5)):
        run_worker_pass(app)
    [job] = note_jobs(app, "zendesk_note")
    assert job.completed_at is not None
    assert [r.path for r in fake.delivered()] == ["/api/v2/tickets/6001.json"]
    assert "url_ciphertext" not in job.payload


def test_a_wrong_api_token_is_refused_by_the_help_desk_and_retried(
    make_settings, ticket_system_factory, fake
):
    app = zendesk_app(make_settings, fake, token="not-the-token")
    ticket_system, _, _ = ticket_system_factory(app)
    ticket_system.create_link("6002")
    run_worker_pass(app)
    assert [r.status for r in fake.requests] == [401]
    [job] = note_jobs(app, "zendesk_note")
    assert job.completed_at is None  # retried once the operator fixes the token
    assert "url_ciphertext" in job.payload


def test_a_ticket_the_help_desk_does_not_have_completes_without_retrying_for_ever(
    make_settings, ticket_system_factory, fake
):
    """Zendesk answers 404 for a ticket it does not have: recorded, not retried for ever."""
    fake.missing_tickets = {"6404"}
    app = zendesk_app(make_settings, fake)
    ticket_system, _, _ = ticket_system_factory(app)
    ticket_system.create_link("6404")
    run_worker_pass(app)
    assert [r.status for r in fake.requests] == [404]
    [job] = note_jobs(app, "zendesk_note")
    assert job.completed_at is not None
    assert job.result == {"delivered": False, "error": "Zendesk answered HTTP 404"}
    assert "url_ciphertext" not in job.payload


def test_no_connector_job_without_configuration_or_for_a_non_numeric_ticket(
    app, ticket_system, make_settings, ticket_system_factory, fake
):
    ticket_system.create_link("5159")
    assert note_jobs(app, "zendesk_note") == []
    configured = zendesk_app(make_settings, fake)
    other_system, _, _ = ticket_system_factory(configured)
    assert other_system.create_link("T-not-a-zendesk-id").status_code == 201
    assert note_jobs(configured, "zendesk_note") == []
