"""The customer's status page, `/r/<token>`, end to end against the real OpenBao: what was
received, who looked and why, "delete now" (JSON, and the confirmed form with its nonce and
Origin), the purge checked through Vault's API, the receipt, and every bad request refused."""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import hvac.exceptions
import pytest
from freezegun import freeze_time
from joserfc.errors import JoseError
from sqlalchemy import func, select, text

from vault_service.clock import utcnow
from vault_service.extensions import db
from vault_service.gunicorn_logging import redact
from vault_service.models import CredentialItem, Job, Lease, StatusToken, Ticket
from vault_service.services import status_page
from vault_service.services.lifecycle import PURGE_JOB
from vault_service.vault import KV_MOUNT, TRANSIT_MOUNT

from .conftest import SAMPLE_ITEMS
from .helpers import item_path, key_of, lease_of, run_worker_pass, tamper, verify_independently

pytestmark = pytest.mark.usefixtures("openbao")

ORIGIN = "http://localhost"  # the tests' public URL
CANARY_NOTE = "canary-note-7f3a9 ✓"
OTHER = {"kind": "other", "label": "canary-label-51c2", "secret": "canary-secret-90de"}
JSON_ACCEPT = {"Accept": "application/json"}
REASON = "check the upload folder permissions"


def submitted_values() -> list[str]:
    """Every value the customer typed in `submit`, which no status answer may contain."""
    values = [v for item in [*SAMPLE_ITEMS, OTHER] for k, v in item.items() if k != "kind"]
    return [*values, CANARY_NOTE]


def submit(client, ticket_system, ticket_ref: str) -> tuple[str, str]:
    """Submit SAMPLE_ITEMS, an 'other' item and notes; returns the link path and status path."""
    link = ticket_system.link_path(ticket_ref)
    response = client.post(link, json={"items": [*SAMPLE_ITEMS, OTHER], "notes": CANARY_NOTE})
    assert response.status_code == 201, response.get_json()
    status_url = response.get_json()["status_url"]
    assert re.fullmatch(r"http://localhost/r/[A-Za-z0-9_-]{43}", status_url)  # 256 bits
    return link, status_url.removeprefix(ORIGIN)


def status_json(client, path: str) -> dict:
    response = client.get(path, headers=JSON_ACCEPT)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def purge_jobs(app) -> list[dict | None]:
    """The result (receipt) of every purge job there is; None for an unfinished one."""
    with app.app_context():
        results = list(db.session.scalars(select(Job.result).where(Job.kind == PURGE_JOB)))
        db.session.rollback()
    return results


def assert_no_value_in(text_: str) -> None:
    # A port ("22") turns up by chance in any hash; every other value is distinctive.
    for value in (v for v in submitted_values() if len(v) > 4):
        assert value not in text_, value
        assert json.dumps(value)[1:-1] not in text_, value


def nonce_of(page: str) -> str:
    match = re.search(r'name="nonce" value="([^"]+)"', page)
    assert match, "no confirmation form on the page"
    return match.group(1)


def delete_form(client, path: str, nonce: str | None, origin: str | None = ORIGIN):
    data = {"action": "delete"}
    if nonce is not None:
        data["nonce"] = nonce
    headers = {"Origin": origin} if origin is not None else {}
    return client.post(f"{path}?confirm=delete", data=data, headers=headers)


def test_the_customer_sees_the_access_deletes_and_gets_the_receipt(
    app, client, ticket_system, agent, openbao
):
    link, path = submit(client, ticket_system, "T-status")

    # What was received: kinds and the registry's labels, never a value.
    report = status_json(client, path)
    assert report["state"] == "open"
    assert [item["kind"] for item in report["items"]] == ["sftp", "admin_panel", "other", "notes"]
    assert report["items"][0]["label"] == "SFTP"
    assert report["accesses"] == [] and report["receipt"] is None
    lease = lease_of(app, "T-status")
    assert report["retention_until"] == lease.expires_at.isoformat()
    html = client.get(path).get_data(as_text=True)
    assert "SFTP" in html and "Nobody has accessed them." in html

    # An agent asks for access with a reason and reveals: the page shows who, when and why.
    assert agent.login().status_code == 302
    assert agent.request_access("T-status", reason=REASON).status_code == 302
    grant_id = agent.current_grant_id("T-status")
    assert agent.reveal("T-status", grant_id).status_code == 200
    (access,) = status_json(client, path)["accesses"]
    assert access["agent"] == "alice" and access["reason"] == REASON
    assert len(access["revealed_at"]) == 1
    html = client.get(path).get_data(as_text=True)
    assert "alice" in html and REASON in html

    # The customer deletes: 202, and at once no reveal succeeds, before any purge ran.
    response = client.post(path, json={"action": "delete"})
    assert response.status_code == 202
    assert response.get_json() == {"status": "deleting", "reason": "customer_deleted"}
    assert agent.reveal("T-status", grant_id).status_code == 403
    assert status_json(client, path)["state"] == "closing"
    assert ticket_system.status("T-status").get_json()["status"] == "closing"
    # Asked again: the same answer, and still one purge job.
    again = client.post(path, json={"action": "delete"})
    assert (again.status_code, again.get_json()) == (202, response.get_json())
    assert len(purge_jobs(app)) == 1
    # The link was consumed by the submission: it cannot take a second one.
    assert client.get(link).status_code == 410
    assert client.post(link, json={"items": SAMPLE_ITEMS}).status_code == 410

    with app.app_context():
        item_ids = list(db.session.scalars(select(CredentialItem.id)))
        db.session.rollback()
    assert len(item_ids) == 4
    report = run_worker_pass(app)
    assert report.jobs_completed["purge"] == 1

    # Vault's own API: the KV metadata and the transit key are gone.
    admin = openbao.admin()
    for item_id in item_ids:
        with pytest.raises(hvac.exceptions.InvalidPath):
            admin.secrets.kv.v2.read_secret_metadata(
                path=item_path(lease.id, item_id), mount_point=KV_MOUNT
            )
    with pytest.raises(hvac.exceptions.InvalidPath):
        admin.secrets.transit.read_key(name=key_of(lease.id), mount_point=TRANSIT_MOUNT)

    # The page now shows the receipt, with the customer's reason.
    report = status_json(client, path)
    assert report["state"] == "purged"
    assert report["purge_reason"] == "customer_deleted"
    receipt = report["receipt"]
    assert receipt["reason"] == "customer_deleted"
    assert receipt["verified_absent_in_vault"] is True
    assert receipt["destroyed"]["kv_entries"] == 4
    assert report["accesses"][0]["reason"] == REASON  # the history outlives the purge
    assert [item["kind"] for item in report["items"]] == ["sftp", "admin_panel", "other", "notes"]
    html = client.get(path).get_data(as_text=True)
    assert "Deletion receipt" in html and "customer_deleted" in html
    assert ticket_system.status("T-status").get_json()["purge_receipt"] == receipt

    # The customer downloads the signed receipt and anyone verifies it with an independent JOSE
    # implementation against the published keys; one changed byte and it no longer verifies.
    assert 'href="?download=receipt"' in html
    download = client.get(f"{path}?download=receipt")
    assert download.status_code == 200 and download.mimetype == "application/jose"
    assert "attachment" in download.headers["Content-Disposition"]
    signed = download.get_data(as_text=True).strip()
    assert signed == report["receipt_jws"]
    claims = verify_independently(client, signed)
    assert claims["reason"] == "customer_deleted" and claims["ticket_ref"] == "T-status"
    assert claims["accesses"][0]["reason"] == REASON
    with pytest.raises(JoseError):
        verify_independently(client, tamper(signed, 1))

    # Once purged, deleting again answers "deleted"; nothing else happens.
    done = client.post(path, json={"action": "delete"})
    assert (done.status_code, done.get_json()) == (
        200,
        {"status": "deleted", "reason": "customer_deleted"},
    )
    assert len(purge_jobs(app)) == 1
    assert sum(result is not None for result in purge_jobs(app)) == 1


def test_status_page_never_shows_a_submitted_value(app, client, ticket_system, agent):
    _, path = submit(client, ticket_system, "T-canary")
    agent.login()
    agent.request_access("T-canary", reason=REASON)
    assert agent.reveal("T-canary").status_code == 200
    pages = [
        client.get(path),
        client.get(path, headers=JSON_ACCEPT),
        client.get(f"{path}?confirm=delete"),
    ]
    pages.append(client.post(path, json={"action": "delete"}))
    run_worker_pass(app)
    pages += [client.get(path), client.get(path, headers=JSON_ACCEPT)]
    for page in pages:
        assert page.status_code in (200, 202)
        assert_no_value_in(page.get_data(as_text=True))
    # The 'other' item shows as its kind's label, not the label the customer typed.
    assert "canary-label" not in client.get(path).get_data(as_text=True)


def test_the_form_deletes_only_with_a_fresh_nonce_of_this_page_and_our_origin(
    app, client, ticket_system
):
    _, path = submit(client, ticket_system, "T-form-delete")
    _, other_path = submit(client, ticket_system, "T-form-other")

    # Step one: the button leads to a confirmation, which carries the nonce; the page does not.
    page = client.get(path).get_data(as_text=True)
    assert 'name="nonce"' not in page and "Delete my credentials now" in page
    confirming = client.get(f"{path}?confirm=delete")
    confirm = confirming.get_data(as_text=True)
    # The confirmation alone lets the browser send our Origin with its post (under no-referrer
    # it sends "Origin: null"); every other page keeps the app's policy.
    assert confirming.headers["Referrer-Policy"] == "same-origin"
    assert client.get(path).headers["Referrer-Policy"] == "no-referrer"
    nonce = nonce_of(confirm)
    # Neither page carries the token itself: the forms post to the page's own address.
    token = path.removeprefix("/r/")
    assert token not in page and token not in confirm

    refusals = {
        "no origin": delete_form(client, path, nonce, origin=None),
        "other origin": delete_form(client, path, nonce, origin="https://evil.example"),
        "null origin": delete_form(client, path, nonce, origin="null"),
        "no nonce": delete_form(client, path, None),
        "forged nonce": delete_form(client, path, nonce[:-1] + ("0" if nonce[-1] != "0" else "1")),
        "another page's nonce": delete_form(
            client,
            path,
            nonce_of(client.get(f"{other_path}?confirm=delete").get_data(as_text=True)),
        ),
        "not a nonce": delete_form(client, path, "garbage"),
        "text/plain": client.post(
            path, data="action=delete", content_type="text/plain", headers={"Origin": ORIGIN}
        ),
    }
    expected = {"no origin": 403, "other origin": 403, "null origin": 403, "text/plain": 415}
    for case, response in refusals.items():
        assert response.status_code == expected.get(case, 400), case
        assert "text/html" in response.content_type, case
    # Nothing changed.
    assert status_json(client, path)["state"] == "open"
    assert purge_jobs(app) == []

    # An expired confirmation is refused: one second before the limit it would still work.
    # (Started in the past, so the purge job it makes is due when the worker runs below.)
    start = utcnow() - timedelta(seconds=2 * status_page.DELETE_CONFIRM_SECONDS + 60)
    with freeze_time(start) as frozen:
        stale = status_page.delete_nonce(app.extensions["vault_service.settings"], token, utcnow())
        frozen.tick(timedelta(seconds=status_page.DELETE_CONFIRM_SECONDS))
        assert delete_form(client, path, stale).status_code == 400
        assert purge_jobs(app) == []
        fresh = status_page.delete_nonce(app.extensions["vault_service.settings"], token, utcnow())
        frozen.tick(timedelta(seconds=status_page.DELETE_CONFIRM_SECONDS - 1))
        deleted = delete_form(client, path, fresh)
    assert deleted.status_code == 202
    html = deleted.get_data(as_text=True)
    assert "being deleted" in html and token not in html
    # The same nonce again (a double click, a reload): the same answer, still one job.
    replay = delete_form(client, path, nonce)
    assert (replay.status_code, replay.get_data(as_text=True)) == (202, html)
    assert client.post(path, json={"action": "delete"}).status_code == 202
    assert len(purge_jobs(app)) == 1
    assert status_json(client, other_path)["state"] == "open"  # the other ticket is untouched

    run_worker_pass(app)
    assert status_json(client, path)["receipt"]["reason"] == "customer_deleted"
    assert delete_form(client, path, nonce).status_code == 200


def test_bad_delete_requests_are_refused_and_change_nothing(app, client, ticket_system):
    _, path = submit(client, ticket_system, "T-bad-json")
    for body in ({"action": "destroy"}, {}, ["delete"], "delete", None):
        response = client.post(path, data=json.dumps(body), content_type="application/json")
        assert response.status_code == 400, body
        assert response.get_json()["error"] == "bad_request"
    broken = client.post(path, data="{not json", content_type="application/json")
    assert broken.status_code == 400
    foreign = client.post(
        path, json={"action": "delete"}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    assert status_json(client, path)["state"] == "open"
    assert purge_jobs(app) == []


def test_a_delete_after_the_close_webhook_answers_the_same_without_a_second_purge(
    app, client, ticket_system
):
    _, path = submit(client, ticket_system, "T-closed-first")
    assert ticket_system.close("T-closed-first").status_code == 202
    first = client.post(path, json={"action": "delete"})
    assert first.status_code == 202
    assert first.get_json() == {"status": "deleting", "reason": "ticket_closed"}
    assert client.post(path, json={"action": "delete"}).get_json() == first.get_json()
    assert len(purge_jobs(app)) == 1
    run_worker_pass(app)
    assert client.post(path, json={"action": "delete"}).get_json() == {
        "status": "deleted",
        "reason": "ticket_closed",
    }
    assert status_json(client, path)["receipt"]["reason"] == "ticket_closed"


def test_a_close_webhook_after_the_delete_is_a_no_op(app, client, ticket_system):
    _, path = submit(client, ticket_system, "T-deleted-first")
    assert client.post(path, json={"action": "delete"}).status_code == 202
    response = ticket_system.close("T-deleted-first")
    assert response.status_code == 202
    assert response.get_json()["outcome"] == "already_closed"
    assert len(purge_jobs(app)) == 1


def test_deletes_racing_the_close_webhook_make_one_purge_and_one_receipt(
    app, ticket_system, client
):
    _, path = submit(client, ticket_system, "T-race")
    racers = 6
    barrier = threading.Barrier(racers + 1)

    def delete() -> tuple[int, dict]:
        racer = app.test_client()
        barrier.wait(timeout=30)
        response = racer.post(path, json={"action": "delete"})
        return response.status_code, response.get_json()

    def close() -> int:
        from .conftest import TicketSystem

        webhook = TicketSystem(app.test_client())
        barrier.wait(timeout=30)
        return webhook.close("T-race").status_code

    with ThreadPoolExecutor(max_workers=racers + 1) as pool:
        deletes = [pool.submit(delete) for _ in range(racers)]
        closing = pool.submit(close)
        answers = [future.result() for future in deletes]
        assert closing.result() == 202
    assert {status for status, _ in answers} == {202}
    assert {body["status"] for _, body in answers} == {"deleting"}
    assert len(purge_jobs(app)) == 1
    run_worker_pass(app)
    jobs = purge_jobs(app)
    assert len(jobs) == 1 and jobs[0] is not None
    assert status_json(client, path)["state"] == "purged"


def test_unknown_wrong_and_expired_tokens_get_one_identical_404(
    app, client, ticket_system, make_settings
):
    _, path = submit(client, ticket_system, "T-404")
    token = path.removeprefix("/r/")
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert client.post(path, json={"action": "delete"}).status_code == 202
    run_worker_pass(app)
    with app.app_context():
        purged_at = db.session.scalar(select(Lease.purged_at))
        db.session.rollback()
    retention = app.extensions["vault_service.settings"].status_page_retention_seconds

    def answers(target: str) -> list[tuple]:
        """The GET (HTML and JSON) and POST answers of a path, as (status, headers, body)."""
        responses = [
            client.get(target),
            client.get(target, headers=JSON_ACCEPT),
            client.post(target, json={"action": "delete"}),
            client.post(target, data={"action": "delete"}, headers={"Origin": ORIGIN}),
        ]
        # X-Request-ID is new on every response whatever the token: it tells nothing apart.
        return [
            (
                r.status_code,
                sorted(h for h in r.headers.items() if h[0] != "X-Request-ID"),
                r.get_data(),
            )
            for r in responses
        ]

    unknown = answers("/r/" + "x" * 43)
    assert [status for status, _, _ in unknown] == [404] * 4
    assert b"no longer available" in unknown[0][2]
    for target in ("/r/" + wrong, "/r/" + "y" * 129, "/r/a"):
        assert answers(target) == unknown, target

    # The page answers until the documented time after the purge, then exactly as unknown.
    with freeze_time(purged_at + timedelta(seconds=retention - 1)):
        assert client.get(path, headers=JSON_ACCEPT).status_code == 200
        assert client.get(path).status_code == 200
    with freeze_time(purged_at + timedelta(seconds=retention)):
        assert answers(path) == unknown


def test_the_status_token_is_stored_only_as_a_keyed_hash_and_never_logged(
    app, client, ticket_system, caplog, database_url
):
    caplog.set_level("DEBUG", logger="vault_service")
    _, path = submit(client, ticket_system, "T-hash")
    token = path.removeprefix("/r/")
    client.get(path)
    client.post(path, json={"action": "delete"})
    with app.app_context():
        stored = db.session.scalar(select(StatusToken.token_hash))
        assert stored == status_page.hash_status_token(
            app.extensions["vault_service.settings"], token
        )
        # No column of any table holds the token.
        tables = [
            t[0]
            for t in db.session.execute(
                text(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                    if database_url.startswith("sqlite")
                    else "SELECT tablename FROM pg_tables WHERE schemaname='public'"
                )
            )
        ]
        for table in tables:
            for row in db.session.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608
                assert token not in repr(tuple(row)), table
        db.session.rollback()
    lines = [record.getMessage() + repr(getattr(record, "fields", {})) for record in caplog.records]
    assert any("/r/<token>" in line for line in lines)
    assert not any(token in line for line in lines)
    # gunicorn's own lines (a malformed request line, a worker error) are redacted too.
    assert token not in redact(f"Invalid request from ip=1.2.3.4: 'GET {path}\xff HTTP/1.1'")
    assert token not in redact(f"Error handling request {path}?confirm=delete")


def test_the_status_page_is_rate_limited_on_its_own_budget(make_settings, ticket_system_factory):
    from vault_service import create_app

    app = create_app(make_settings(ratelimit_link="4/minute"))
    ticket_system, _, client = ticket_system_factory(app)
    link = ticket_system.link_path("T-limit")
    response = client.post(link, json={"items": SAMPLE_ITEMS})
    path = response.get_json()["status_url"].removeprefix(ORIGIN)
    statuses = [client.get(path).status_code for _ in range(4)]
    assert statuses == [200] * 4
    limited = client.get("/r/" + "z" * 43)
    assert limited.status_code == 429 and limited.headers["Retry-After"]
    assert client.post(path, json={"action": "delete"}).status_code == 429
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_the_success_page_shows_the_status_link_once(app, client, ticket_system):
    link = ticket_system.link_path("T-success")
    page = client.get(link).get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(
        link,
        data={
            "csrf_token": csrf,
            "ft_kind": "ftp",
            "ft_host": "files.example.test",
            "ft_port": "21",
            "ft_username": "deploy",
            "ft_password": "success-page-secret",
        },
    )
    assert response.status_code == 201
    html = response.get_data(as_text=True)
    match = re.search(r'<a href="(http://localhost/r/[A-Za-z0-9_-]{43})">', html)
    assert match and "shown only once" in html
    status = client.get(match.group(1).removeprefix(ORIGIN), headers=JSON_ACCEPT)
    assert status.status_code == 200
    assert [item["kind"] for item in status.get_json()["items"]] == ["ftp"]
    with app.app_context():
        assert db.session.scalar(select(func.count(StatusToken.id))) == 1
        assert db.session.scalar(select(Ticket.status)) == "open"
        db.session.rollback()
