"""Rate limits: login and link-token brute force end in 429 before they get anywhere, a forged
X-Forwarded-For resets nothing, and the limits hold across processes with a shared Redis."""

from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
import time
import uuid

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from vault_service import create_app, ratelimits, schema
from vault_service.config import ConfigError, Settings, load_settings
from vault_service.devtools.processes import free_port
from vault_service.extensions import db
from vault_service.models import AuditEvent

from .conftest import AGENT_PASSWORD, TICKET_API_TOKEN

pytestmark = pytest.mark.usefixtures("openbao")

AUTH = {"Authorization": f"Bearer {TICKET_API_TOKEN}"}
JSON = {"Accept": "application/json"}


def migrated(app):
    """The app with its schema in place (the per-test PostgreSQL database starts empty)."""
    with app.app_context():
        schema.upgrade(db.engine)
        db.session.remove()
    return app


def random_token() -> str:
    return secrets.token_urlsafe(32)


def login_audit_count(app) -> int:
    with app.app_context():
        count = db.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "agent.login")
        )
        db.session.rollback()
        return count


def assert_too_many_requests(response, *, as_json: bool) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)[:300]
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    if as_json:
        assert response.mimetype == "application/json"
        assert response.get_json()["error"] == "too_many_requests"
    else:
        assert response.mimetype == "text/html"
        assert "Error 429" in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


# -- login --------------------------------------------------------------------------------------


def test_login_brute_force_gets_429_after_the_limit_and_no_password_is_checked_then(app, agent):
    limit = Settings().ratelimit_login  # the shipped default: 10/minute
    attempts = int(limit.split("/")[0])
    for attempt in range(attempts):
        response = agent.login(password=f"guess number {attempt}")
        assert response.status_code not in (200, 302, 429), attempt
    audited = login_audit_count(app)
    assert audited == attempts

    # Attempt N+1 is refused before any password check: even the right password gets 429, and
    # no login attempt reaches the audit trail (the view never ran).
    response = agent.login(password=AGENT_PASSWORD)
    assert_too_many_requests(response, as_json=False)
    assert login_audit_count(app) == audited


def test_login_limit_answers_json_callers_in_json(make_settings, ticket_system_factory):
    app = create_app(make_settings(ratelimit_login="2/minute"))
    _, browser, client = ticket_system_factory(app)
    for _ in range(2):
        browser.login(password="not the password")
    token = browser.csrf_token()
    response = client.post(
        "/login",
        data={"username": "alice", "password": "x", "csrf_token": token},
        headers=JSON,
    )
    assert_too_many_requests(response, as_json=True)


def test_the_login_page_itself_is_not_limited(make_settings, ticket_system_factory):
    app = create_app(make_settings(ratelimit_login="2/minute"))
    _, _, client = ticket_system_factory(app)
    assert all(client.get("/login").status_code == 200 for _ in range(10))


# -- link tokens --------------------------------------------------------------------------------


class Records(logging.Handler):
    """Keeps the records of one logger (ours do not propagate to pytest's caplog)."""

    def __init__(self, name: str):
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Records:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *_) -> None:
        self.logger.removeHandler(self)


def test_guessing_link_tokens_is_stopped_long_before_the_token_space_matters(client, ticket_system):
    limit = int(Settings().ratelimit_link.split("/")[0])  # the shipped default: 30/minute
    real_link = ticket_system.link_path("T-guess")
    statuses, guesses = [], []
    with Records("vault_service.ratelimits") as logged:
        for attempt in range(limit + 5):
            guesses.append(random_token())
            path = f"/s/{guesses[-1]}"
            if attempt % 2:
                response = client.post(path, json={"items": []})
            else:
                response = client.get(path)
            statuses.append(response.status_code)
    # GET and POST draw on one budget: exactly `limit` guesses got an answer (410), then 429.
    assert statuses[:limit] == [410] * limit
    assert set(statuses[limit:]) == {429}
    # Each refusal is a log event naming the route pattern and the client, never the token.
    assert [record.getMessage() for record in logged.records] == ["rate limited"] * 5
    for record in logged.records:
        assert record.fields["route"] == "/s/<token>"
        assert record.fields["client"] == "127.0.0.1"
        assert not any(guess in json.dumps(record.fields) for guess in guesses)
    assert_too_many_requests(client.get(f"/s/{random_token()}"), as_json=False)
    assert_too_many_requests(client.post(f"/s/{random_token()}", json={}), as_json=True)
    # The limit is per client: the same address is refused even with the real link ...
    assert client.get(real_link).status_code == 429
    # ... while another client (another address) is served.
    other = client.application.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.44"
    assert other.get(real_link).status_code == 200


def test_ticket_api_and_webhook_are_limited_and_answer_json(make_settings, ticket_system_factory):
    app = create_app(make_settings(ratelimit_api="3/minute", ratelimit_webhook="2/minute"))
    ticket_system, _, client = ticket_system_factory(app)
    assert ticket_system.create_link("T-api-limit").status_code == 201
    assert ticket_system.status("T-api-limit").status_code == 200
    # Unauthenticated calls count too: guessing the bearer token is what the limit is for.
    assert client.get("/api/v1/tickets/T-api-limit").status_code == 401
    assert_too_many_requests(ticket_system.status("T-api-limit"), as_json=True)
    assert_too_many_requests(ticket_system.create_link("T-api-limit"), as_json=True)

    # The webhook has its own (generous by default) budget.
    assert ticket_system.send_event("ticket.reopened", "T-unknown").status_code == 202
    assert ticket_system.send_event("ticket.reopened", "T-unknown").status_code == 202
    assert_too_many_requests(ticket_system.send_event("ticket.closed", "T-api-limit"), as_json=True)
    # The close was refused before it was processed: the ticket is still open.
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.45"
    status = other.get("/api/v1/tickets/T-api-limit", headers=AUTH).get_json()["status"]
    assert status == "open"


# -- X-Forwarded-For ----------------------------------------------------------------------------


def hammer_link(client, count: int, **headers) -> list[int]:
    return [client.get(f"/s/{random_token()}", headers=headers).status_code for _ in range(count)]


def test_a_forged_x_forwarded_for_does_not_reset_the_limit_without_trusted_proxies(
    make_settings, ticket_system_factory
):
    app = create_app(make_settings(ratelimit_link="5/minute"))  # trusted_proxies=0, the default
    _, _, client = ticket_system_factory(app)
    statuses = [
        client.get(
            f"/s/{random_token()}", headers={"X-Forwarded-For": f"203.0.113.{attempt}"}
        ).status_code
        for attempt in range(8)
    ]
    assert statuses == [410] * 5 + [429] * 3


def test_with_one_trusted_proxy_the_client_it_names_is_limited_not_the_proxy(
    make_settings, ticket_system_factory
):
    app = create_app(make_settings(ratelimit_link="5/minute", trusted_proxies=1))
    _, _, client = ticket_system_factory(app)
    client.environ_base["REMOTE_ADDR"] = "10.0.0.1"  # the reverse proxy
    attacker = {"X-Forwarded-For": "203.0.113.7"}
    assert hammer_link(client, 6, **attacker) == [410] * 5 + [429]
    # The attacker prepends made-up hops; the proxy appends the address it saw, and only that
    # last hop is believed: still limited.
    spoofed = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
    assert hammer_link(client, 2, **spoofed) == [429, 429]
    # Another client behind the same proxy has its own budget.
    assert hammer_link(client, 5, **{"X-Forwarded-For": "203.0.113.8"}) == [410] * 5


# -- configuration ------------------------------------------------------------------------------


def test_rate_limit_settings_come_from_the_environment(make_settings):
    base = make_settings()
    environ = {
        "VAULT_SERVICE_ENV": "testing",
        "VAULT_SERVICE_SECRET_KEY": base.secret_key,
        "VAULT_SERVICE_TICKET_API_TOKEN": TICKET_API_TOKEN,
        "VAULT_SERVICE_WEBHOOK_SECRET": "whsec_" + "A" * 44,
        "VAULT_SERVICE_VAULT_TOKEN": "s.not-a-real-token",
    }
    defaults = load_settings(environ)
    assert defaults.ratelimit_storage_url == "memory://"
    assert defaults.trusted_proxies == 0
    assert (defaults.ratelimit_login, defaults.ratelimit_link) == ("10/minute", "30/minute")
    assert (defaults.ratelimit_api, defaults.ratelimit_webhook) == ("300/minute", "600/minute")
    custom = load_settings(
        {
            **environ,
            "VAULT_SERVICE_RATELIMIT_STORAGE_URL": "redis://redis:6379/0",
            "VAULT_SERVICE_TRUSTED_PROXIES": "2",
            "VAULT_SERVICE_RATELIMIT_LOGIN": "5/minute;20/hour",
        }
    )
    assert custom.ratelimit_storage_url == "redis://redis:6379/0"
    assert custom.trusted_proxies == 2
    assert custom.ratelimit_login == "5/minute;20/hour"
    for name, value in (
        ("VAULT_SERVICE_RATELIMIT_LOGIN", "lots"),
        ("VAULT_SERVICE_RATELIMIT_LINK", "10 per fortnight"),
        ("VAULT_SERVICE_RATELIMIT_STORAGE_URL", "ftp://:secret@host/"),
        ("VAULT_SERVICE_TRUSTED_PROXIES", "-1"),
    ):
        with pytest.raises(ConfigError) as refused:
            load_settings({**environ, name: value})
        assert name in str(refused.value)
        assert "secret" not in str(refused.value)


# -- storage ------------------------------------------------------------------------------------


def redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.mark.skipif(
    not redis_answers(), reason="no Redis answers on 127.0.0.1:6379 (start one to run this test)"
)
def test_with_redis_storage_two_app_processes_share_one_budget(make_settings):
    redis = pytest.importorskip("redis", reason="the redis client is in the dev extra")
    settings = make_settings(
        ratelimit_link="4/minute", ratelimit_storage_url="redis://127.0.0.1:6379/0"
    )
    # Two apps stand for two gunicorn workers (or two replicas) sharing one Redis.
    first, second = migrated(create_app(settings)).test_client(), create_app(settings).test_client()
    # A fresh address per run: counters in Redis outlive the test by the window.
    address = f"2001:db8::{uuid.uuid4().hex[:4]}"
    for client in (first, second):
        client.environ_base["REMOTE_ADDR"] = address
    assert hammer_link(first, 2) == [410, 410]
    assert hammer_link(second, 2) == [410, 410]
    assert hammer_link(first, 1) == [429]
    assert hammer_link(second, 1) == [429]
    connection = redis.Redis(host="127.0.0.1", port=6379, db=0)
    keys = [key for key in connection.scan_iter("*") if address.encode() in key]
    assert keys, "the limiter kept no counter in Redis"
    assert all(b"/vault-service/" in key for key in keys), keys  # our prefix
    connection.delete(*keys)


def test_an_unreachable_limit_storage_falls_back_to_limiting_in_memory(make_settings):
    pytest.importorskip("redis", reason="the redis client is in the dev extra")
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = migrated(create_app(make_settings(ratelimit_link="3/minute", ratelimit_storage_url=dead)))
    client = app.test_client()
    assert hammer_link(client, 5) == [410, 410, 410, 429, 429]


def test_the_429_body_is_the_apps_own_error_and_holds_no_limit_internals(
    make_settings, ticket_system_factory
):
    app = create_app(make_settings(ratelimit_link="1/minute"))
    _, _, client = ticket_system_factory(app)
    client.get(f"/s/{random_token()}")
    response = client.post(f"/s/{random_token()}", json={"items": []})
    assert_too_many_requests(response, as_json=True)
    body = json.dumps(response.get_json())
    assert "per 1 minute" not in body and "127.0.0.1" not in body


# -- the in-memory storage ----------------------------------------------------------------------


def test_in_memory_limits_start_no_thread_per_request(client, monkeypatch):
    """limits' stock MemoryStorage starts a new thread on any write 10 ms after its last sweep,
    i.e. on nearly every request of a quiet server; ours sweeps inline at most once a second."""
    assert isinstance(
        client.application.extensions["vault_service.limiter"].storage,
        ratelimits.SweptMemoryStorage,
    )
    started = []
    real_start = threading.Thread.start

    def counting_start(thread):
        started.append(thread.name)
        return real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    statuses = []
    for _ in range(5):
        time.sleep(0.02)  # past the stock storage's 10 ms timer, as between real requests
        statuses.append(client.get(f"/s/{random_token()}").status_code)
    assert statuses == [410] * 5  # limited (the limiter counted each) but not refused
    assert started == []


def test_in_memory_limits_forget_expired_entries_within_a_second():
    """The sweep is what trims every client's list of requests: it must still run (it calls
    into limits' MemoryStorage by its private names, which a new limits could rename)."""
    storage = ratelimits.SweptMemoryStorage()
    with freeze_time("2026-11-26 12:00:00") as frozen:
        assert storage.acquire_entry("client-a", limit=5, expiry=1)
        assert storage.events["client-a"]
        frozen.tick(0.5)
        assert storage.acquire_entry("client-b", limit=5, expiry=1)
        assert len(storage.events["client-a"]) == 1  # not yet expired, and no sweep due
        frozen.tick(1.0)
        assert storage.acquire_entry("client-b", limit=5, expiry=1)
        assert storage.events["client-a"] == []  # expired, and swept by this write
        assert storage.get_moving_window("client-b", limit=5, expiry=1)[1] == 1
