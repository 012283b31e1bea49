"""Every audit record and log line of a request says where it came from: the client address (as
resolved through the trusted proxies), a cleaned and truncated user agent, and the request id,
which the response returns in X-Request-ID (issue 13 item 1, issue 16's request ids)."""

from __future__ import annotations

import io
import json
import logging
import re

from sqlalchemy import select

from vault_service import create_app, schema
from vault_service.extensions import db
from vault_service.logs import JsonFormatter
from vault_service.models import AuditEvent
from vault_service.request_context import USER_AGENT_CHARS

from .conftest import SAMPLE_ITEMS, AgentBrowser, TicketSystem
from .helpers import run_worker_pass

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def proxied_app(make_settings):
    """The app behind one trusted proxy, as deploy/nginx puts it."""
    app = create_app(make_settings(trusted_proxies=1))
    with app.app_context():
        schema.upgrade(db.engine)
    return app


def records(app, action: str) -> list[dict]:
    """The records of one action: actor and details."""
    with app.app_context():
        found = [
            {"actor": event.actor, **event.details}
            for event in db.session.scalars(select(AuditEvent).where(AuditEvent.action == action))
        ]
        db.session.rollback()
    return found


def test_every_record_of_a_request_names_its_client_user_agent_and_request_id(make_settings):
    app = proxied_app(make_settings)
    client = app.test_client()
    ticket_system, agent = TicketSystem(client), AgentBrowser(client, app)
    agent.create()
    path = ticket_system.link_path("T-origin")
    user_agent = "Mozilla/5.0 \x1b[31mred\u202e" + "x" * 500
    response = client.post(
        path,
        json={"items": SAMPLE_ITEMS},
        headers={
            "X-Forwarded-For": "203.0.113.7",
            "X-Request-ID": "edge-4f2a-0001",
            "User-Agent": user_agent,
        },
    )
    assert response.status_code == 201
    assert response.headers["X-Request-ID"] == "edge-4f2a-0001"

    (submitted,) = records(app, "submission.received")
    # Still the customer, but now the record says from where.
    assert submitted["actor"] == "customer"
    assert submitted["client_address"] == "203.0.113.7"
    assert submitted["request_id"] == "edge-4f2a-0001"
    stored_agent = submitted["user_agent"]
    assert stored_agent.startswith("Mozilla/5.0 [31mred")
    assert len(stored_agent) == USER_AGENT_CHARS
    assert not re.search(r"[\x00-\x1f\u202e]", stored_agent)

    client.environ_base.update(HTTP_X_FORWARDED_FOR="198.51.100.9", HTTP_USER_AGENT="agent-ua")
    agent.login()
    agent.request_access("T-origin")
    agent.reveal("T-origin")
    for action in ("agent.login", "access.granted", "credentials.revealed"):
        (event,) = records(app, action)
        assert event["client_address"] == "198.51.100.9", action
        assert event["user_agent"] == "agent-ua", action
        assert GENERATED_ID.fullmatch(event["request_id"]), action

    # The worker has no request: its records carry no origin (and nothing made up).
    ticket_system.close("T-origin")
    run_worker_pass(app)
    (purged,) = records(app, "purge.completed")
    assert not {"client_address", "user_agent", "request_id"} & set(purged)


def test_without_a_trusted_proxy_the_callers_request_id_and_forwarded_address_are_ignored(
    client, ticket_system
):
    path = ticket_system.link_path("T-direct")
    response = client.post(
        path,
        json={"items": SAMPLE_ITEMS},
        headers={"X-Request-ID": "forged-id", "X-Forwarded-For": "203.0.113.66"},
    )
    assert response.status_code == 201
    assert GENERATED_ID.fullmatch(response.headers["X-Request-ID"])
    (submitted,) = records(client.application, "submission.received")
    assert submitted["request_id"] == response.headers["X-Request-ID"]
    assert submitted["client_address"] == "127.0.0.1"


def test_a_malformed_request_id_from_the_proxy_is_replaced(make_settings):
    client = proxied_app(make_settings).test_client()
    for offered in ("a" * 129, "has space", "tab\there", "caf\u00e9", ""):
        answer = client.get("/healthz", headers={"X-Request-ID": offered})
        assert GENERATED_ID.fullmatch(answer.headers["X-Request-ID"]), offered
    exact = "r" * 128
    assert client.get("/healthz", headers={"X-Request-ID": exact}).headers["X-Request-ID"] == exact


def test_every_log_line_of_a_request_carries_its_request_id(app, client, ticket_system):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("vault_service")
    logger.addHandler(handler)
    try:
        response = ticket_system.create_link("T-logged")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    events = {line["event"] for line in lines}
    assert {"audit", "request"} <= events, events
    assert {line.get("request_id") for line in lines} == {response.headers["X-Request-ID"]}
