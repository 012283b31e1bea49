"""Outbound events (DESIGN.md, v1.1): enqueued in the transaction of the change they report,
delivered by the worker only, signed per Standard Webhooks, at least once, in order per ticket.

The ticket system is a real HTTP server on 127.0.0.1 (tests/helpers.py EventReceiver) that
verifies every delivery with the independent `standardwebhooks` package and deduplicates on the
webhook-id, as a receiver should; Vault is the session's real OpenBao.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import signal
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from vault_service import create_app, schema
from vault_service.clock import utcnow
from vault_service.config import ConfigError, load_settings
from vault_service.extensions import current_settings, current_vault, db
from vault_service.models import Grant, Job, Receipt
from vault_service.services import deployment, events, lifecycle, sweep
from vault_service.services.doctor import run_checks
from vault_service.services.events import EVENT_DELIVERY_JOB, FIELDS, EventType
from vault_service.services.jobs import FAILING_AFTER_ATTEMPTS, registered_kinds
from vault_service.services.lifecycle import PurgeReason
from vault_service.services.submissions import find_usable_link, submit_credentials
from vault_service.transactions import read_only, transaction

from .conftest import EVENTS_KEY, SAMPLE_ITEMS
from .deployment import Stack, wait_for
from .helpers import ROOT, EventReceiver, run_worker_pass

KEY_A = EVENTS_KEY  # what the receiver fixture verifies with
KEY_B = secrets.token_bytes(32)
NOTES = "use the staging site"


def whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


@pytest.fixture
def settings(make_settings, receiver):
    """This module's app sends events to the receiver, signed with KEY_A."""
    return make_settings(events_url=receiver.url, events_secrets=(KEY_A,))


def new_ref(prefix: str = "T") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def event_jobs(app, *, unfinished: bool = False) -> list[Job]:
    query = select(Job).where(Job.kind == EVENT_DELIVERY_JOB)
    if unfinished:
        query = query.where(Job.completed_at.is_(None))
    with app.app_context(), read_only() as session:
        return list(session.scalars(query.order_by(Job.created_at)))


def make_due(app) -> None:
    """Let the backoff pass: every waiting delivery is due now."""
    with app.app_context(), transaction() as session:
        session.execute(
            update(Job)
            .where(Job.kind == EVENT_DELIVERY_JOB, Job.completed_at.is_(None))
            .values(next_attempt_at=utcnow())
        )


def deliver_all(app, passes: int = 30) -> None:
    """Worker passes, each retry made due at once, until no event waits."""
    for _ in range(passes):
        run_worker_pass(app)
        if not event_jobs(app, unfinished=True):
            return
        make_due(app)
    raise AssertionError("events still undelivered")


def submit(client, path: str):
    response = client.post(path, json={"items": SAMPLE_ITEMS, "notes": NOTES})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def types_of(receiver: EventReceiver, ref: str) -> list[str]:
    return [event["type"] for event in receiver.events_of(ref)]


def assert_in_order_per_ticket(receiver: EventReceiver) -> None:
    """No attempt of a ticket's event before every earlier event of that ticket was delivered."""
    delivered: dict[str, list[str]] = {}
    for attempt in receiver.attempts:
        assert attempt.event is not None, "a delivery failed verification"
        ref = attempt.event["data"]["ticket_ref"]
        done = delivered.setdefault(ref, [])
        if attempt.webhook_id in done:
            continue  # a redelivery (replay) of an event delivered before
        seen_times = [receiver.effects[w]["timestamp"] for w in done if w in receiver.effects]
        assert all(t <= attempt.event["timestamp"] for t in seen_times), "out of order"
        if 200 <= attempt.status < 300:
            done.append(attempt.webhook_id)


# -- the whole lifecycle ---------------------------------------------------------------------


def test_every_state_change_reaches_the_receiver_signed_in_order_and_takes_effect_once(
    app, client, ticket_system, agent, receiver, caplog
):
    """Submitted, granted, revealed, closed, purged, reopened, link expired, submitted, deleted by
    the customer, purged: each once, in that order, every delivery verified by `standardwebhooks`;
    a close event whose acknowledgement is lost (processed, then 500) comes again under the same
    webhook-id and takes effect once, and holds back the ticket's purge event meanwhile."""
    caplog.set_level(logging.INFO)
    ref, other = new_ref(), new_ref("O")
    link = ticket_system.create_link(ref).get_json()
    submitted = submit(client, link["url"].removeprefix("http://localhost"))
    submit(client, ticket_system.link_path(other))
    agent.login()
    assert agent.request_access(ref).status_code in (302, 303)
    assert agent.reveal(ref).status_code == 200

    lost_acks = []

    def lose_the_first_close_ack(event: dict) -> tuple[int, bool]:
        if event["type"] == "ticket.closed" and not lost_acks:
            lost_acks.append(event)
            return 500, True
        return 204, True

    receiver.answer = lose_the_first_close_ack
    assert ticket_system.close(ref).status_code == 202
    deliver_all(app)
    with app.app_context():
        first_receipt = db.session.scalar(
            select(Job.result).where(Job.kind == "purge", Job.completed_at.is_not(None))
        )
        first_receipt_jws = db.session.scalar(select(Receipt.jws))
    assert ticket_system.send_event("ticket.reopened", ref).status_code == 202
    expiring = ticket_system.create_link(ref, ttl_seconds=60).get_json()
    with app.app_context():
        assert sweep.record_expired_links(utcnow() + timedelta(seconds=61)) == 1
    submit(client, ticket_system.link_path(ref))
    with app.app_context(), transaction():
        outcome = lifecycle.close_ticket(ref, actor="customer", reason=PurgeReason.CUSTOMER_DELETED)
        assert outcome == lifecycle.CloseOutcome.CLOSING
    deliver_all(app)

    assert types_of(receiver, ref) == [
        "credentials.submitted",
        "access.granted",
        "credentials.revealed",
        "ticket.closed",
        "ticket.purged",
        "ticket.reopened",
        "link.expired",
        "credentials.submitted",
        "credentials.deleted_by_customer",
        "ticket.purged",
    ]
    assert types_of(receiver, other) == ["credentials.submitted"]
    assert_in_order_per_ticket(receiver)

    # Every attempt verified with the package, every event one webhook-id, effects once each.
    assert all(a.event is not None and a.status != 401 for a in receiver.attempts)
    jobs_ = event_jobs(app)
    assert len({job.payload["webhook_id"] for job in jobs_}) == len(jobs_) == 11
    assert len(receiver.effects) == 11 and len(receiver.attempts) == 12
    close_attempts = [a for a in receiver.attempts if a.event["type"] == "ticket.closed"]
    assert [a.status for a in close_attempts] == [500, 204]
    assert close_attempts[0].webhook_id == close_attempts[1].webhook_id
    assert close_attempts[0].body == close_attempts[1].body
    for attempt in receiver.attempts:
        # webhook-timestamp is the attempt's own time, not the event's.
        assert abs(attempt.timestamp - attempt.received_at) < 2
        assert set(attempt.event) == {"type", "timestamp", "data"}
        assert len(attempt.signatures) == 1

    data = {e["type"]: e["data"] for e in receiver.events_of(ref)[:7]}
    assert data["credentials.submitted"] == {
        "ticket_ref": ref,
        "link_id": link["link_id"],
        "kinds": submitted["kinds"],
        "item_count": submitted["item_count"],
        "retention_until": submitted["retention_until"],
    }
    with app.app_context():
        grant_expiry = db.session.scalar(select(Grant.expires_at))
    assert data["access.granted"] == {
        "ticket_ref": ref,
        "agent": "alice",
        "reason": "debug upload",
        "expires_at": grant_expiry.isoformat(),
    }
    assert data["credentials.revealed"] == {"ticket_ref": ref, "agent": "alice"}
    assert data["ticket.closed"] == {"ticket_ref": ref, "reason": "ticket_closed"}
    # The event carries the signed receipt: the compact JWS, as the ticket API's purge_receipt_jws.
    assert data["ticket.purged"] == {"ticket_ref": ref, "receipt": first_receipt_jws}
    assert first_receipt_jws.count(".") == 2
    assert first_receipt["verified_absent_in_vault"] is True
    assert data["link.expired"] == {"ticket_ref": ref, "link_id": expiring["link_id"]}
    last_status = ticket_system.status(ref).get_json()
    last_receipt = last_status["purge_receipt_jws"]
    assert receiver.events_of(ref)[-1]["data"] == {"ticket_ref": ref, "receipt": last_receipt}
    assert last_status["purge_receipt"]["reason"] == "customer_deleted"

    # The delivery log lines carry the outcome's fields, never a body.
    lines = [r for r in caplog.records if r.name.endswith("job_kinds.event_delivery")]
    assert len(lines) == 12
    for line in lines:
        assert set(line.fields) <= {
            "event_type",
            "webhook_id",
            "ticket_ref",
            "attempt",
            "status",
            "ms",
            "error",
        }


# -- failures ---------------------------------------------------------------------------------


def test_a_receiver_down_then_up_gets_every_event_in_order_and_holds_back_only_its_ticket(
    app, client, ticket_system, agent, receiver
):
    """Ticket A's receiver answers 500 five times (capped exponential backoff between attempts;
    failing in /readyz, doctor and the sweep), then refuses connections, then is back: every
    event of A arrives in order; ticket B's events were delivered meanwhile."""
    a, b = new_ref("A"), new_ref("B")
    receiver.answer = lambda e: (500, False) if e["data"]["ticket_ref"] == a else (204, True)
    submit(client, ticket_system.link_path(a))
    submit(client, ticket_system.link_path(b))
    agent.login()
    agent.request_access(a)
    agent.request_access(b)

    brackets = []
    for _ in range(FAILING_AFTER_ATTEMPTS):
        before = utcnow()
        run_worker_pass(app)
        after = utcnow()
        due = event_jobs(app, unfinished=True)[0].next_attempt_at
        # The attempt ran somewhere inside the pass: bracket its backoff rather than round
        # "due - now" (which read 3 for 4 when a pass took over half a second).
        brackets.append(((due - after).total_seconds(), (due - before).total_seconds()))
        make_due(app)
    backoff = [2, 4, 8, 16, 32]  # the queue's backoff, below this kind's cap (600 s)
    assert all(
        low - 0.01 <= delay <= high + 0.01
        for delay, (low, high) in zip(backoff, brackets, strict=True)
    ), brackets
    assert types_of(receiver, b) == ["credentials.submitted", "access.granted"]
    attempts_a = [x for x in receiver.attempts if x.event["data"]["ticket_ref"] == a]
    assert len(attempts_a) == FAILING_AFTER_ATTEMPTS
    assert {x.event["type"] for x in attempts_a} == {"credentials.submitted"}  # later ones wait
    assert len({x.webhook_id for x in attempts_a}) == 1

    stuck = event_jobs(app, unfinished=True)
    assert [j.attempts for j in stuck] == [FAILING_AFTER_ATTEMPTS, 0]
    assert stuck[0].last_error == "receiver answered HTTP 500"
    assert client.get("/readyz").get_json()["event_delivery_jobs"] == "failing: 1"
    with app.app_context():
        report = sweep.sweep(current_settings(), current_vault(), orphans=False).as_json()
        findings = {f.name: f for f in run_checks(current_settings(), current_vault())}
    assert report["event_deliveries_failing"] == 1
    assert not findings["event_delivery jobs"].ok
    assert "receiver answered HTTP 500" in findings["event_delivery jobs"].detail

    receiver.stop()  # now the connection is refused
    receiver.answer = lambda e: (204, True)
    make_due(app)
    run_worker_pass(app)
    refused = event_jobs(app, unfinished=True)[0]
    assert refused.last_error == "receiver unreachable (ConnectionError)"
    receiver.start()
    make_due(app)
    deliver_all(app)

    assert types_of(receiver, a) == ["credentials.submitted", "access.granted"]
    assert_in_order_per_ticket(receiver)
    assert client.get("/readyz").get_json()["event_delivery_jobs"] == "ok"


def test_a_receiver_that_hangs_is_cut_off_by_the_timeout_and_its_late_effect_counts_once(
    make_settings, receiver, ticket_system_factory
):
    """The worker gives up on an attempt after VAULT_SERVICE_EVENTS_TIMEOUT_SECONDS; the retry
    carries the same webhook-id, so the receiver that did process the first one ignores it."""
    app = create_app(
        make_settings(events_url=receiver.url, events_secrets=(KEY_A,), events_timeout_seconds=1)
    )
    ticket_system, _, client = ticket_system_factory(app)
    slow = []

    def hang_once(event: dict) -> tuple[int, bool]:
        if not slow:
            slow.append(event)
            time.sleep(2.5)
        return 204, True

    receiver.answer = hang_once
    ref = new_ref()
    submit(client, ticket_system.link_path(ref))
    started = time.monotonic()
    run_worker_pass(app)
    assert time.monotonic() - started < 2.2
    assert event_jobs(app)[0].last_error == "receiver unreachable (ReadTimeout)"
    time.sleep(2.0)  # the receiver finishes the first one (2.5 s after it began)
    make_due(app)
    deliver_all(app)
    assert len(receiver.attempts) == 2
    assert receiver.attempts[0].webhook_id == receiver.attempts[1].webhook_id
    assert types_of(receiver, ref) == ["credentials.submitted"]


def test_two_secrets_give_two_signatures_each_verifying_on_its_own(
    make_settings, ticket_system_factory
):
    """A receiver rotating its secret accepts either: one `v1,` signature per configured secret."""
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    receiver = EventReceiver([whsec(KEY_A), whsec(KEY_B)])
    try:
        app = create_app(make_settings(events_url=receiver.url, events_secrets=(KEY_A, KEY_B)))
        ticket_system, _, client = ticket_system_factory(app)
        ref = new_ref()
        submit(client, ticket_system.link_path(ref))
        deliver_all(app)
    finally:
        receiver.stop()
    (attempt,) = receiver.attempts
    assert attempt.status == 204 and len(attempt.signatures) == 2
    headers = {"webhook-id": attempt.webhook_id, "webhook-timestamp": str(attempt.timestamp)}
    for signature, key, other in zip(
        attempt.signatures, (KEY_A, KEY_B), (KEY_B, KEY_A), strict=True
    ):
        alone = {**headers, "webhook-signature": signature}
        assert Webhook(whsec(key)).verify(attempt.body, alone)["type"] == "credentials.submitted"
        with pytest.raises(WebhookVerificationError):
            Webhook(whsec(other)).verify(attempt.body, alone)


def test_without_an_events_url_no_event_is_enqueued(make_settings, ticket_system_factory):
    """Events off (the default): the whole lifecycle runs and the queue holds purges only."""
    app = create_app(make_settings())
    ticket_system, agent, client = ticket_system_factory(app)
    ref = new_ref()
    submit(client, ticket_system.link_path(ref))
    agent.login()
    agent.request_access(ref)
    assert agent.reveal(ref).status_code == 200
    assert ticket_system.close(ref).status_code == 202
    run_worker_pass(app)
    assert ticket_system.send_event("ticket.reopened", ref).status_code == 202
    with app.app_context():
        kinds = db.session.execute(select(Job.kind, func.count()).group_by(Job.kind)).all()
    assert kinds == [("purge", 1)]


def test_an_event_is_rolled_back_with_the_change_it_reports(
    app, client, ticket_system, settings, vault, monkeypatch
):
    """A submission or a close that fails after its event was enqueued leaves neither the change
    nor the event: the link is still usable, the ticket still open, no event job exists."""
    ref = new_ref()
    submit(client, ticket_system.link_path(ref))
    token = ticket_system.link_path(ref).removeprefix("/s/")
    real_emit = events.emit
    emitted = []

    def emit_then_fail(*args, **kwargs):
        emitted.append(real_emit(*args, **kwargs).id)
        raise RuntimeError("the transaction fails after the event")

    monkeypatch.setattr(events, "emit", emit_then_fail)
    with app.app_context():
        with pytest.raises(RuntimeError):
            submit_credentials(settings, vault, token, {"items": SAMPLE_ITEMS})
        assert find_usable_link(settings, token).ticket_ref == ref  # not consumed
        with pytest.raises(RuntimeError), transaction():
            lifecycle.close_ticket(ref, actor="test")
        assert lifecycle.get_ticket(ref).status == "open"
        db.session.rollback()
    assert len(emitted) == 2
    remaining = event_jobs(app)
    assert [j.payload["body"]["type"] for j in remaining] == ["credentials.submitted"]
    assert not {j.id for j in remaining} & set(emitted)


def test_the_app_killed_right_after_a_submissions_201_still_has_its_event_delivered(
    tmp_path, openbao, app_token, receiver
):
    """gunicorn SIGKILLed the moment the submission's 201 arrives: the event is in the database,
    never attempted, and a worker started afterwards delivers it, signed."""
    stack = Stack(tmp_path, SimpleNamespace(addr=openbao.addr, app_token=app_token))
    events_env = {
        "VAULT_SERVICE_EVENTS_URL": receiver.url,
        "VAULT_SERVICE_EVENTS_SECRET": whsec(KEY_A),
    }
    try:
        app = stack.start_app(**events_env)
        ref = new_ref("KILL")
        link = stack.create_link(ref)
        response = stack.submit(link)
        assert app.kill() == -signal.SIGKILL
        assert response.status_code == 201, response.text
        with Session(stack.engine) as session:
            (job,) = session.scalars(select(Job).where(Job.kind == EVENT_DELIVERY_JOB)).all()
        assert (job.attempts, job.completed_at) == (0, None)
        assert receiver.attempts == []

        worker = stack.start_worker(**events_env)
        wait_for(lambda: receiver.delivered(), 30, "event delivery", worker)
    finally:
        stack.close()
    (attempt,) = receiver.attempts
    assert attempt.webhook_id == job.payload["webhook_id"]
    assert attempt.event["type"] == "credentials.submitted"
    assert attempt.event["data"]["ticket_ref"] == ref


# -- replay -----------------------------------------------------------------------------------


def test_events_replay_resends_delivered_events_under_their_own_webhook_ids(
    app, client, ticket_system, agent, receiver, runner
):
    """`events-replay --ticket` resends that ticket's delivered events, same ids and bytes, in
    order; `--since` narrows to the events from then on; the receiver's effects do not change."""
    ref, other = new_ref(), new_ref("O")
    submit(client, ticket_system.link_path(ref))
    submit(client, ticket_system.link_path(other))
    agent.login()
    agent.request_access(ref)
    deliver_all(app)
    first = {a.webhook_id: a.body for a in receiver.attempts}
    effects = dict(receiver.effects)
    assert len(first) == 3

    result = runner.invoke(args=["events-replay", "--ticket", ref])
    assert result.exit_code == 0, result.output
    assert "2 event(s)" in result.output
    deliver_all(app)
    replayed = receiver.attempts[3:]
    assert [a.event["type"] for a in replayed] == ["credentials.submitted", "access.granted"]
    assert all(first[a.webhook_id] == a.body for a in replayed)
    assert receiver.effects == effects

    granted_at = receiver.events_of(ref)[1]["timestamp"]
    result = runner.invoke(args=["events-replay", "--since", granted_at])
    assert "1 event(s)" in result.output, result.output
    deliver_all(app)
    assert receiver.attempts[-1].event["type"] == "access.granted"
    assert len(receiver.attempts) == 6

    assert runner.invoke(args=["events-replay", "--ticket", "NOPE-1"]).exit_code == 1
    assert runner.invoke(args=["events-replay", "--ticket", "../x"]).exit_code == 1
    assert runner.invoke(args=["events-replay", "--since", "yesterday"]).exit_code == 2


# -- Vault calls ------------------------------------------------------------------------------


def _count_vault_calls(app) -> list[str]:
    """Every Vault operation the app's gateway starts, through its before_call hook."""
    vault = app.extensions["vault_service.vault"]
    calls: list[str] = []
    guard = vault._before_call

    def counting(operation: str) -> None:
        calls.append(operation)
        guard(operation)

    vault._before_call = counting
    return calls


def _audit_requests(openbao) -> int:
    return sum(
        b'"type":"request"' in line for line in Path(openbao.audit_log).read_bytes().split(b"\n")
    )


def test_events_add_no_vault_call_to_a_request_or_a_delivery(
    make_settings, receiver, openbao, ticket_system_factory
):
    """The same story (link, submission, grant, reveal, close, purge) with events off and on:
    the gateway starts the same Vault operations and OpenBao's audit log records as many requests;
    delivering events alone makes no Vault request at all."""
    measured = {}
    # The deployment id is claimed in Vault once per database (by whichever app comes first):
    # claimed here, so both stories below pay the same (one marker read each).
    first = create_app(make_settings())
    with first.app_context():
        schema.upgrade(db.engine)  # PostgreSQL starts empty; the SQLite copy is migrated already
        deployment.require_own_deployment(first.extensions["vault_service.vault"])
    for mode, overrides in (
        ("off", {}),
        ("on", {"events_url": receiver.url, "events_secrets": (KEY_A,)}),
    ):
        app = create_app(make_settings(**overrides))
        ticket_system, agent, client = ticket_system_factory(app)
        calls = _count_vault_calls(app)
        before = _audit_requests(openbao)
        ref = new_ref(mode)
        submit(client, ticket_system.link_path(ref))
        agent.login()
        agent.request_access(ref)
        assert agent.reveal(ref).status_code == 200
        assert ticket_system.close(ref).status_code == 202
        deliver_all(app) if mode == "on" else run_worker_pass(app)
        measured[mode] = (sorted(calls), _audit_requests(openbao) - before)
        if mode == "on":
            assert ticket_system.send_event("ticket.reopened", ref).status_code == 202
            calls.clear()
            before = _audit_requests(openbao)
            deliver_all(app)
            assert types_of(receiver, ref)[-1] == "ticket.reopened"
            assert (calls, _audit_requests(openbao) - before) == ([], 0)
    assert measured["on"] == measured["off"]
    assert len(receiver.effects) == 6
    print(
        f"\nVault operations per story, events off/on: {len(measured['off'][0])} / "
        f"{len(measured['on'][0])}; OpenBao audit requests {measured['off'][1]} / "
        f"{measured['on'][1]}"
    )


# -- configuration and the contract ----------------------------------------------------------

PRODUCTION = {
    "VAULT_SERVICE_ENV": "production",
    "VAULT_SERVICE_DEPLOYMENT_ID": "prod",
    "VAULT_SERVICE_SECRET_KEY": "k" * 48,
    "VAULT_SERVICE_TICKET_API_TOKEN": "t" * 40,
    "VAULT_SERVICE_VAULT_ROLE_ID": "role",
    "VAULT_SERVICE_VAULT_SECRET_ID": "secret",
    "VAULT_SERVICE_PUBLIC_URL": "https://vault.example.test",
}


def test_events_configuration_is_checked_at_startup():
    secret = whsec(KEY_A)
    ok = load_settings(
        {
            **PRODUCTION,
            "VAULT_SERVICE_EVENTS_URL": "https://desk.example.test/hooks",
            "VAULT_SERVICE_EVENTS_SECRET": f"{secret} {whsec(KEY_B)}",
        }
    )
    assert ok.events_secrets == (KEY_A, KEY_B)
    assert load_settings(PRODUCTION).events_url == ""
    testing = {**PRODUCTION, "VAULT_SERVICE_ENV": "testing"}
    assert load_settings(
        {
            **testing,
            "VAULT_SERVICE_EVENTS_URL": "http://127.0.0.1:9/x",
            "VAULT_SERVICE_EVENTS_SECRET": secret,
        }
    ).events_url.startswith("http://")
    refused = [
        ({"VAULT_SERVICE_EVENTS_URL": "http://desk.example.test/hooks"}, "https://"),
        ({"VAULT_SERVICE_EVENTS_URL": "desk.example.test/hooks"}, "https://"),
        ({"VAULT_SERVICE_EVENTS_URL": "https://u:p@desk.example.test/"}, "user or password"),
        ({"VAULT_SERVICE_EVENTS_SECRET": "whsec_not base64!"}, "VAULT_SERVICE_EVENTS_SECRET"),
    ]
    for change, message in refused:
        environ = {
            **PRODUCTION,
            "VAULT_SERVICE_EVENTS_URL": "https://desk.example.test/hooks",
            "VAULT_SERVICE_EVENTS_SECRET": secret,
            **change,
        }
        with pytest.raises(ConfigError, match=message) as error:
            load_settings(environ)
        assert secret not in str(error.value)
    with pytest.raises(ConfigError, match="EVENTS_SECRET is required"):
        load_settings({**PRODUCTION, "VAULT_SERVICE_EVENTS_URL": "https://desk.example.test/"})


def test_an_event_carries_exactly_its_types_fields(app, client, ticket_system):
    ref = new_ref()
    ticket_system.link_path(ref)
    with app.app_context(), transaction():
        with pytest.raises(TypeError):
            events.emit(EventType.CREDENTIALS_REVEALED, ref, agent="alice", token="x")
        with pytest.raises(TypeError):
            events.emit(EventType.ACCESS_GRANTED, ref, agent="alice")
        with pytest.raises(ValueError):
            events.emit("ticket.exploded", ref)
        with pytest.raises(TypeError):
            events.emit(EventType.LINK_EXPIRED, ref, link_id=object())


def test_openapi_describes_every_event_and_its_fields():
    """openapi.yaml's webhooks section names every event type with exactly its data fields."""
    document = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    schemas = document["components"]["schemas"]
    described = {}
    for name, hook in document["webhooks"].items():
        ref = hook["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = schemas[ref.rsplit("/", 1)[1]]
        event_type = schema["properties"]["type"]["const"]
        assert name == event_type
        data = schema["properties"]["data"]
        described[event_type] = set(data["properties"]) - {"ticket_ref"}
        assert set(data["required"]) == set(data["properties"])
    assert described == {t.value: set(fields) for t, fields in FIELDS.items()}
    assert EVENT_DELIVERY_JOB in registered_kinds()


def test_event_timestamps_are_iso_8601_utc(app, client, ticket_system, receiver):
    ref = new_ref()
    submit(client, ticket_system.link_path(ref))
    deliver_all(app)
    (event,) = receiver.events_of(ref)
    stamp = datetime.fromisoformat(event["timestamp"])
    assert stamp.utcoffset() == timedelta(0)
    assert json.loads(receiver.attempts[0].body) == event
