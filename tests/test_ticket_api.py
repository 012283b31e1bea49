"""The fuller ticket API: links listed and revoked, the access log, the served OpenAPI document;
every bad request a clean 4xx that changes nothing."""

from __future__ import annotations

import tomllib
import uuid
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import func, select, update

from vault_service.clock import utcnow
from vault_service.extensions import db
from vault_service.models import AuditEvent, SubmissionLink

from .conftest import TICKET_API_TOKEN
from .helpers import ROOT, run_worker_pass

CANARY = "canary-7d1e5b-do-not-leak"
AUTH = {"Authorization": f"Bearer {TICKET_API_TOKEN}"}
CANARY_ITEMS = [
    {"kind": "ftp", "host": f"{CANARY}.example", "port": "21", "username": CANARY,
     "password": CANARY},
    {"kind": "other", "label": f"label {CANARY}", "secret": f"secret {CANARY}"},
]  # fmt: skip


def new_ref() -> str:
    return f"T-{uuid.uuid4().hex[:8]}"


def create_link(client, ticket_ref: str) -> tuple[str, str]:
    """A new link: its id and its path (the token is in the path only)."""
    response = client.post(f"/api/v1/tickets/{ticket_ref}/submission-links", headers=AUTH)
    assert response.status_code == 201
    body = response.get_json()
    return body["link_id"], body["url"].removeprefix("http://localhost")


def list_links(client, ticket_ref: str) -> dict[str, dict]:
    response = client.get(f"/api/v1/tickets/{ticket_ref}/links", headers=AUTH)
    assert response.status_code == 200
    return {link["link_id"]: link for link in response.get_json()["links"]}


def revoke(client, ticket_ref: str, link_id: str, headers=AUTH):
    return client.delete(f"/api/v1/tickets/{ticket_ref}/links/{link_id}", headers=headers)


def state_snapshot(app) -> tuple:
    """Every row a link or log request could change."""
    with app.app_context():
        links = db.session.execute(
            select(SubmissionLink.id, SubmissionLink.consumed_at, SubmissionLink.revoked_at)
        ).all()
        audit = db.session.scalar(select(func.count(AuditEvent.id)))
    return sorted(links), audit


def test_links_show_each_state_and_never_the_token(app, client):
    ticket_ref = new_ref()
    used_id, used_path = create_link(client, ticket_ref)
    open_id, open_path = create_link(client, ticket_ref)
    expired_id, _ = create_link(client, ticket_ref)
    assert client.post(used_path, json={"items": CANARY_ITEMS}).status_code == 201
    with app.app_context():
        db.session.execute(
            update(SubmissionLink)
            .where(SubmissionLink.id == expired_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()

    response = client.get(f"/api/v1/tickets/{ticket_ref}/links", headers=AUTH)
    text = response.get_data(as_text=True)
    links = {link["link_id"]: link for link in response.get_json()["links"]}
    assert {k: v["state"] for k, v in links.items()} == {
        used_id: "used",
        open_id: "open",
        expired_id: "expired",
    }
    assert set(links[used_id]) == {
        "link_id",
        "state",
        "created_at",
        "expires_at",
        "used_at",
        "revoked_at",
    }
    assert links[used_id]["used_at"] and links[open_id]["used_at"] is None
    for path in (used_path, open_path):
        assert path.rsplit("/", 1)[1] not in text
    assert CANARY not in text


def test_a_revoked_link_answers_its_holder_exactly_as_an_unknown_one(app, client):
    ticket_ref = new_ref()
    link_id, path = create_link(client, ticket_ref)
    assert client.get(path).status_code == 200

    response = revoke(client, ticket_ref, link_id)
    assert response.status_code == 200
    assert response.get_json()["state"] == "revoked"
    assert response.get_json()["revoked_at"]
    assert list_links(client, ticket_ref)[link_id]["state"] == "revoked"

    unknown = "/s/" + "x" * 43
    for method in ("get", "post"):
        kwargs = {"json": {"items": CANARY_ITEMS}} if method == "post" else {}
        gone = getattr(client, method)(path, **kwargs)
        never = getattr(client, method)(unknown, **kwargs)
        assert gone.status_code == never.status_code == 410
        assert gone.get_data() == never.get_data()
    with app.app_context():
        revoked = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "link.revoked")
        ).all()
    assert [(e.ticket_ref, e.details["link_id"], e.actor) for e in revoked] == [
        (ticket_ref, link_id, "ticket-system")
    ]
    # Again: the same answer, nothing recorded twice.
    before = state_snapshot(app)
    again = revoke(client, ticket_ref, link_id)
    assert again.status_code == 200 and again.get_json() == response.get_json()
    assert state_snapshot(app) == before


def test_a_used_link_cannot_be_revoked(app, client):
    ticket_ref = new_ref()
    link_id, path = create_link(client, ticket_ref)
    assert client.post(path, json={"items": CANARY_ITEMS}).status_code == 201
    before = state_snapshot(app)
    response = revoke(client, ticket_ref, link_id)
    assert response.status_code == 409
    assert response.get_json()["error"] == "conflict"
    assert state_snapshot(app) == before


BAD_LINK_IDS = [
    pytest.param(lambda: str(uuid.uuid4()), id="unknown-uuid"),
    pytest.param(lambda: "not-a-uuid", id="malformed"),
    pytest.param(lambda: "x" * 200, id="oversized"),
]


@pytest.mark.parametrize("make_id", BAD_LINK_IDS)
def test_bad_link_ids_are_404_and_change_nothing(app, client, make_id):
    ticket_ref = new_ref()
    create_link(client, ticket_ref)
    before = state_snapshot(app)
    response = revoke(client, ticket_ref, make_id())
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"
    assert state_snapshot(app) == before


def test_another_tickets_link_is_unknown_here(app, client):
    mine, theirs = new_ref(), new_ref()
    create_link(client, mine)
    their_link, their_path = create_link(client, theirs)
    before = state_snapshot(app)
    assert revoke(client, mine, their_link).status_code == 404
    assert state_snapshot(app) == before
    assert client.get(their_path).status_code == 200


ENDPOINTS = [
    ("get", "/api/v1/tickets/{ref}/links"),
    ("delete", "/api/v1/tickets/{ref}/links/{link}"),
    ("get", "/api/v1/tickets/{ref}/access-log"),
    ("get", "/api/v1/tickets/{ref}/receipts"),
]


@pytest.mark.parametrize(("method", "template"), ENDPOINTS)
def test_bad_requests_are_refused_and_change_nothing(app, client, method, template):
    ticket_ref = new_ref()
    link_id, path = create_link(client, ticket_ref)
    before = state_snapshot(app)
    cases = [
        (template.format(ref=ticket_ref, link=link_id), {"Authorization": "Bearer wrong"}, 401),
        (template.format(ref=ticket_ref, link=link_id), {}, 401),
        (template.format(ref="T-unknown-1", link=link_id), AUTH, 404),
        (template.format(ref="-bad-ref", link=link_id), AUTH, 400),
    ]
    for url, headers, status in cases:
        response = client.open(url, method=method.upper(), headers=headers)
        assert response.status_code == status, (url, response.get_data(as_text=True))
        assert response.mimetype == "application/json"
    assert state_snapshot(app) == before
    assert client.get(path).status_code == 200  # the link still works


def test_the_access_log_tells_the_story_and_never_a_value(app, client, ticket_system, agent):
    ticket_ref = new_ref()
    _, path = create_link(client, ticket_ref)
    assert client.post(path, json={"items": CANARY_ITEMS, "notes": CANARY}).status_code == 201
    agent.login()
    assert agent.request_access(ticket_ref, reason="upload check").status_code == 302
    grant_id = agent.current_grant_id(ticket_ref)
    assert agent.reveal(ticket_ref, grant_id).status_code == 200
    assert ticket_system.close(ticket_ref).status_code == 202
    assert agent.reveal(ticket_ref, grant_id).status_code == 403  # a denial, recorded
    run_worker_pass(app)

    response = client.get(f"/api/v1/tickets/{ticket_ref}/access-log", headers=AUTH)
    assert response.status_code == 200
    assert CANARY not in response.get_data(as_text=True)
    records = response.get_json()["records"]
    assert [r["action"] for r in records] == [
        "lease.reserved",
        "link.created",
        "submission.received",
        "access.granted",
        "credentials.revealed",
        "ticket.closed",
        "credentials.revealed",
        "purge.completed",
    ]
    by_action = {(r["action"], r["outcome"]): r for r in records}
    granted = by_action[("access.granted", "success")]
    assert granted["actor"] == "agent:alice"
    assert granted["details"]["reason"] == "upload check"
    assert "token_accessor" not in granted["details"]
    assert (
        by_action[("credentials.revealed", "success")]["details"]["grant_id"]
        == (granted["details"]["grant_id"])
    )
    assert by_action[("credentials.revealed", "denied")]["details"]["reason"] == "grant revoked"
    assert by_action[("submission.received", "success")]["details"]["kinds"] == [
        "ftp",
        "other",
        "notes",
    ]
    assert set(records[0]) == {"id", "occurred_at", "action", "actor", "outcome", "details"}


def test_the_openapi_document_is_served_publicly_and_ships_in_the_wheel(client):
    response = client.get("/api/v1/openapi.yaml")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    document = yaml.safe_load(response.get_data())
    assert response.get_data() == (ROOT / "openapi.yaml").read_bytes()
    for path in (
        "/api/v1/tickets/{ticket_ref}/links",
        "/api/v1/tickets/{ticket_ref}/links/{link_id}",
        "/api/v1/tickets/{ticket_ref}/access-log",
        "/api/v1/tickets/{ticket_ref}/receipts",
        "/.well-known/jwks.json",
    ):
        assert path in document["paths"], path
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    included = build["targets"]["wheel"]["force-include"]
    assert included["openapi.yaml"] == "vault_service/_openapi/openapi.yaml"


def test_links_of_a_closed_ticket_are_revoked(app, client, ticket_system):
    ticket_ref = new_ref()
    link_id, path = create_link(client, ticket_ref)
    assert ticket_system.close(ticket_ref).status_code == 202
    assert list_links(client, ticket_ref)[link_id]["state"] == "revoked"
    assert client.get(path).status_code == 410


def test_a_submission_racing_the_revocation_loses(app, client, settings, vault):
    """Found usable, then revoked while it writes to Vault: refused, and it keeps nothing."""
    from vault_service.errors import LinkGone
    from vault_service.services import submissions

    ticket_ref = new_ref()
    link_id, path = create_link(client, ticket_ref)
    token = path.rsplit("/", 1)[1]
    real_find = submissions.find_usable_link

    def find_then_revoke(settings_, token_):
        found = real_find(settings_, token_)
        assert revoke(client, ticket_ref, link_id).status_code == 200
        return found

    with app.app_context():
        submissions.find_usable_link = find_then_revoke
        try:
            with pytest.raises(LinkGone):
                submissions.submit_credentials(settings, vault, token, {"items": CANARY_ITEMS})
        finally:
            submissions.find_usable_link = real_find
    assert list_links(client, ticket_ref)[link_id]["state"] == "revoked"
    assert (
        client.get(f"/api/v1/tickets/{ticket_ref}", headers=AUTH).get_json()["credential_count"]
        == 0
    )
