"""Crafted input gets a clear 4xx and changes nothing (issue 13 items 2 and 8): JSON nested 20,000
deep, lone surrogates, duplicate keys and form fields, CR/LF in `next=`, chunked bodies over the
limit. Each of these was a 500, or silently took one of two values, before request_body.py."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from vault_service.extensions import db
from vault_service.models import AuditEvent, CredentialItem, SubmissionLink, Ticket

from .conftest import SAMPLE_ITEMS

DEEP = ("[" * 20_000 + "]" * 20_000).encode()
DEEP_OBJECT = ('{"":' * 12_000 + "1" + "}" * 12_000).encode()  # under the 64 KiB limit
SURROGATE_SUBMISSION = (
    b'{"items": [{"kind": "other", "label": "x", "secret": "\\ud800"}], "notes": ""}'
)


def counts(app) -> tuple[int, ...]:
    with app.app_context():
        found = tuple(
            db.session.scalar(select(func.count()).select_from(model))
            for model in (Ticket, SubmissionLink, CredentialItem, AuditEvent)
        )
        db.session.rollback()
    return found


def post_json(client, path: str, body: bytes, **headers):
    return client.post(path, data=body, headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["arrays", "objects"])
def test_deeply_nested_json_is_refused_on_every_json_endpoint(app, client, ticket_system, body):
    path = ticket_system.link_path("T-deep")
    before = counts(app)
    for target, headers in (
        ("/s/not-a-real-token", {}),  # before any link check
        (path, {}),
        ("/api/v1/tickets/T-deep/submission-links", ticket_system.headers()),
        ("/api/v1/webhooks/ticket-events", ticket_system.signed_headers(body)),
    ):
        response = post_json(client, target, body, **headers)
        assert response.status_code == 400, (target, response.status_code)
        assert response.get_json()["error"] == "bad_request", target
        assert "nested deeper" in response.get_json()["message"]
    assert counts(app) == before
    assert client.get(path).status_code == 200  # the link is still usable


def test_a_lone_surrogate_in_a_submitted_value_is_refused(app, client, ticket_system):
    path = ticket_system.link_path("T-surrogate")
    before = counts(app)
    response = post_json(client, path, SURROGATE_SUBMISSION)
    assert response.status_code == 400
    assert response.get_json()["message"] == "The JSON document holds an invalid character."
    assert counts(app) == before
    key = b'{"\\udfff": 1}'
    for target, headers in (
        ("/api/v1/tickets/T-surrogate/submission-links", ticket_system.headers()),
        ("/api/v1/webhooks/ticket-events", ticket_system.signed_headers(key)),
    ):
        assert post_json(client, target, key, **headers).status_code == 400, target
    assert counts(app) == before
    assert client.get(path).status_code == 200


def test_duplicate_json_keys_are_refused_not_reduced_to_one(app, client, ticket_system):
    path = ticket_system.link_path("T-dupkeys")
    before = counts(app)
    body = json.dumps({"items": SAMPLE_ITEMS})[:-1] + ', "items": []}'
    response = post_json(client, path, body.encode())
    assert response.status_code == 400
    assert "repeats the key 'items'" in response.get_json()["message"]
    ttl = b'{"ttl_seconds": 3600, "ttl_seconds": 60}'
    api = post_json(
        client, "/api/v1/tickets/T-dupkeys/submission-links", ttl, **ticket_system.headers()
    )
    assert api.status_code == 400
    hook = b'{"type": "ticket.closed", "data": {"ticket_ref": "T-dupkeys", "ticket_ref": "T-x"}}'
    delivered = post_json(
        client, "/api/v1/webhooks/ticket-events", hook, **ticket_system.signed_headers(hook)
    )
    assert delivered.status_code == 400
    assert counts(app) == before


def test_duplicate_form_fields_are_refused(app, client, agent):
    before = counts(app)
    token = agent.csrf_token()
    response = client.post(
        "/login",
        data=MultiDict(
            [
                ("username", "alice"),
                ("username", "mallory"),
                ("password", "x"),
                ("csrf_token", token),
            ]
        ),
    )
    assert response.status_code == 400
    assert "repeats the field &#39;username&#39;" in response.get_data(as_text=True)
    assert counts(app) == before  # not even a failed-login record


@pytest.mark.parametrize("next_path", ["/\r\nSet-Cookie: x=1", "/tickets\n", "/a\x00b", "/ a"])
def test_control_characters_in_next_fall_back_to_the_dashboard(client, agent, next_path):
    response = client.post(
        "/login",
        data={
            "username": "alice",
            "password": "correct horse battery staple",
            "code": agent.totp_code(),
            "next": next_path,
            "csrf_token": agent.csrf_token(),
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_a_chunked_body_over_the_limit_answers_413(app, client, ticket_system):
    path = ticket_system.link_path("T-chunked")
    before = counts(app)
    limit = app.config["MAX_CONTENT_LENGTH"]
    big = json.dumps({"items": SAMPLE_ITEMS, "notes": "x" * limit}).encode()
    # A server that terminates the input itself (gunicorn, Werkzeug's) passes the chunked
    # body without a length: Werkzeug then cut it at the limit and the rest read as bad JSON.
    chunked = {"wsgi.input_terminated": True}
    response = client.post(
        path,
        input_stream=io.BytesIO(big),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides=chunked,
    )
    assert response.status_code == 413
    assert counts(app) == before
    # Under the limit, the same framing still works.
    small = json.dumps({"items": SAMPLE_ITEMS}).encode()
    response = client.post(
        path,
        input_stream=io.BytesIO(small),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides=chunked,
    )
    assert response.status_code == 201, response.get_json()
