"""The smaller findings of the assessment (issue 13 item 8): logout clears the browser's copy of
the site, the webhook timestamp is digits only, and an expired grant is audited as expired."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from vault_service.clock import utcnow
from vault_service.extensions import db
from vault_service.models import AuditEvent, Ticket
from vault_service.services.providers.standard_webhooks import sign

from .conftest import WEBHOOK_KEY
from .helpers import run_worker_pass


def test_logout_asks_the_browser_to_clear_cache_cookies_and_storage(client, agent):
    agent.login()
    response = agent.post("/logout", {})
    assert response.status_code == 302
    assert response.headers["Clear-Site-Data"] == '"cache", "cookies", "storage"'


@pytest.mark.parametrize("spelling", ["+{ts}", " {ts}", "{ts} ", "{ts}.0", "{uni}"])
def test_a_webhook_timestamp_that_is_not_plain_digits_is_refused(
    app, client, ticket_system, spelling
):
    ticket_system.link_path("T-stamp")
    body = json.dumps({"type": "ticket.closed", "data": {"ticket_ref": "T-stamp"}}).encode()
    now = int(time.time())
    # Unicode digits: int() reads "١٧..." (Arabic-Indic) as the same number.
    arabic = str(now).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    header = spelling.format(ts=now, uni=arabic)
    # Signed over the number int() would read: only the spelling of the header is wrong.
    headers = {
        "Content-Type": "application/json",
        "webhook-id": "msg_stamp",
        "webhook-timestamp": header,
        "webhook-signature": sign(WEBHOOK_KEY, "msg_stamp", now, body),
    }
    response = client.post("/api/v1/webhooks/ticket-events", data=body.decode(), headers=headers)
    assert response.status_code == 401, header
    assert response.get_json()["message"] == "Invalid webhook-timestamp."
    with app.app_context():
        assert db.session.scalar(select(Ticket.status).where(Ticket.ref == "T-stamp")) == "open"


def test_a_reveal_with_an_expired_grant_is_audited_as_expired_even_after_the_sweep(
    app, agent, submitted_ticket
):
    agent.login()
    agent.request_access(submitted_ticket, minutes=30)
    grant_id = agent.current_grant_id(submitted_ticket)
    with freeze_time(utcnow() + timedelta(minutes=31)) as frozen:
        # The sweep erases the expired grant's token: it must still read as expired.
        assert run_worker_pass(app).grant_tokens_erased == 1
        frozen.tick(1)
        agent.login()  # the session ended while idle
        response = agent.reveal(submitted_ticket, grant_id)
    assert response.status_code == 403
    with app.app_context():
        denied = db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "credentials.revealed", AuditEvent.outcome == "denied"
            )
        ).all()
        reasons = [event.details["reason"] for event in denied]
        db.session.rollback()
    assert reasons == ["grant expired"]
