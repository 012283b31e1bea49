"""Fixtures: one real OpenBao per session (bootstrapped with the real policies), a fresh database
per test (SQLite by default, PostgreSQL when VAULT_SERVICE_TEST_DATABASE_URL says so), and the app
running under a token that holds only policies/vault-service.hcl — never the root token."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import hvac
import pytest
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

from vault_service import create_app, schema
from vault_service.config import load_settings
from vault_service.devtools.embedded_openbao import EmbeddedOpenBao
from vault_service.devtools.processes import free_port
from vault_service.extensions import db
from vault_service.services.providers import standard_webhooks
from vault_service.vault import bootstrap_vault, issue_app_token

from .helpers import CHROMIUM, EventReceiver, Gunicorn, QuietRequestHandler, use_deployment

WEBHOOK_KEY = secrets.token_bytes(32)
WEBHOOK_SECRET = "whsec_" + base64.b64encode(WEBHOOK_KEY).decode()
TICKET_API_TOKEN = secrets.token_urlsafe(32)
AGENT_PASSWORD = "correct horse battery staple"
# Every agent the fixtures create is provisioned with this TOTP secret (see AgentBrowser).
AGENT_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
TEST_DATABASE_URL = os.environ.get("VAULT_SERVICE_TEST_DATABASE_URL", "")


@dataclass
class OpenBaoServer:
    """The session's OpenBao: address, root token (fixtures only), and its audit log path."""

    process: EmbeddedOpenBao
    addr: str
    root_token: str
    unseal_key: str
    audit_log: Path

    def admin(self) -> hvac.Client:
        """A root client, for bootstrap and for checking Vault's state from the outside."""
        return hvac.Client(url=self.addr, token=self.root_token, timeout=10)


@pytest.fixture(scope="session")
def openbao(tmp_path_factory) -> OpenBaoServer:
    """A real OpenBao server (pebbledb storage), initialised, unsealed and bootstrapped."""
    directory = tmp_path_factory.mktemp("openbao")
    server = EmbeddedOpenBao(directory, free_port())
    server.start()
    try:
        init = server.ensure_initialized_and_unsealed()
        bootstrap_vault(server.addr, init.root_token)
        yield OpenBaoServer(server, server.addr, init.root_token, init.unseal_key, server.audit_log)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def app_token(openbao) -> str:
    """A token with only the app policy, as the app gets it in development."""
    return issue_app_token(openbao.addr, openbao.root_token, ttl_seconds=4 * 3600).token


def _reset_postgres(url: str) -> None:
    """An empty public schema (the migration tests start from nothing)."""
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    _MIGRATED_POSTGRES.clear()


# Everything a test could change in the schema besides rows: columns, constraints, indexes,
# triggers, functions, views, sequences and the Alembic revision. Equal to the fingerprint taken
# right after the migrations means "the migrations' schema", so emptying the tables is enough.
_SCHEMA_FINGERPRINT = """
SELECT 'column', table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable
       || ' ' || coalesce(column_default, '')
  FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL SELECT 'constraint', conrelid::regclass::text || ' ' || conname || ' '
       || pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL SELECT 'index', indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL SELECT 'trigger', tgrelid::regclass::text || ' ' || tgname
  FROM pg_trigger WHERE NOT tgisinternal
UNION ALL SELECT 'function', proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
UNION ALL SELECT 'view', viewname FROM pg_views WHERE schemaname = 'public'
UNION ALL SELECT 'sequence', sequencename FROM pg_sequences WHERE schemaname = 'public'
UNION ALL SELECT 'revision', version_num FROM alembic_version
ORDER BY 1, 2
"""
# The fingerprint of the migrated schema, once this session has migrated it.
_MIGRATED_POSTGRES: dict[str, str] = {}


def _postgres_fingerprint(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text(_SCHEMA_FINGERPRINT)).all()
    except Exception:  # noqa: BLE001 - no alembic_version (say): not the migrated schema
        return None
    finally:
        engine.dispose()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def _fresh_postgres(url: str) -> None:
    """A database at the latest migration holding no rows. Migrating from nothing costs about
    0.3 s a test; when the schema is still exactly the migrations' (its fingerprint says so) it
    is emptied instead (TRUNCATE, about 0.07 s). A test that changed the schema in any way (the
    migration tests, a revision set back) gets it dropped and migrated again."""
    fingerprint = _postgres_fingerprint(url)
    if fingerprint is not None and fingerprint == _MIGRATED_POSTGRES.get(url):
        engine = create_engine(url)
        with engine.begin() as connection:
            tables = connection.execute(
                text(
                    "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'"
                    " AND tablename <> 'alembic_version'"
                )
            ).scalars()
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        engine.dispose()
        return
    _reset_postgres(url)
    engine = create_engine(url)
    schema.upgrade(engine)
    engine.dispose()
    fingerprint = _postgres_fingerprint(url)
    assert fingerprint is not None
    _MIGRATED_POSTGRES[url] = fingerprint


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory) -> Path:
    """One SQLite file built by the migrations; each test gets a copy (much faster than
    migrating each test's database, and still the migrations' schema)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_engine(f"sqlite:///{path}")
    schema.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def empty_database_url(tmp_path) -> str:
    """A database with no tables at all (for the migration tests)."""
    if TEST_DATABASE_URL:
        _reset_postgres(TEST_DATABASE_URL)
        return TEST_DATABASE_URL
    return f"sqlite:///{tmp_path / 'empty.db'}"


@pytest.fixture
def database_url(tmp_path, migrated_sqlite_template) -> str:
    """A fresh database for each test, at the latest migration but holding no rows."""
    if TEST_DATABASE_URL:
        _fresh_postgres(TEST_DATABASE_URL)
        return TEST_DATABASE_URL
    path = tmp_path / "vault_service.db"
    shutil.copyfile(migrated_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def make_settings(openbao, app_token, database_url):
    """Build test settings with overrides."""

    # One key per test, shared by every app a test builds over its database, as by the processes
    # of one deployment: agents' TOTP secrets are encrypted under a key derived from it.
    secret_key = secrets.token_urlsafe(48)
    # One deployment id per test: every test has a fresh database but shares the session's
    # OpenBao, as deployments sharing one OpenBao do, and Vault's deployment marker refuses a
    # second database on an id (services/deployment.py). Every app of the test shares it.
    deployment_id = "t-" + secrets.token_hex(8)
    use_deployment(deployment_id)

    def build(**overrides):
        values = {
            "env": "testing",
            "database_url": database_url,
            "secret_key": secret_key,
            "ticket_api_tokens": (TICKET_API_TOKEN,),
            "webhook_secrets": (WEBHOOK_KEY,),
            "public_url": "http://localhost",
            "vault_addr": openbao.addr,
            "vault_token": app_token,
            "deployment_id": deployment_id,
            "log_level": "DEBUG",
        }
        values.update(overrides)
        return load_settings({}, **values)

    return build


@pytest.fixture
def settings(make_settings):
    return make_settings()


@pytest.fixture
def app(settings):
    """The app, with its tables created in the test's fresh database."""
    app = create_app(settings)
    with app.app_context():
        schema.upgrade(db.engine)  # the migrations, as production builds its schema
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def vault(app):
    """The app's own Vault client (app token, real policies)."""
    return app.extensions["vault_service.vault"]


class TicketSystem:
    """Acts as the ticket system: bearer-token API calls and signed webhooks."""

    def __init__(self, client):
        self.client = client

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {TICKET_API_TOKEN}"}

    def create_link(self, ticket_ref: str, **body):
        return self.client.post(
            f"/api/v1/tickets/{ticket_ref}/submission-links",
            json=body or None,
            headers=self.headers(),
        )

    def link_path(self, ticket_ref: str, **body) -> str:
        response = self.create_link(ticket_ref, **body)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["url"].removeprefix("http://localhost")

    def status(self, ticket_ref: str):
        return self.client.get(f"/api/v1/tickets/{ticket_ref}", headers=self.headers())

    def signed_headers(
        self, body: bytes, *, webhook_id: str | None = None, timestamp: int | None = None
    ) -> dict:
        return standard_webhooks.signed_headers(
            [WEBHOOK_KEY], body, webhook_id=webhook_id, timestamp=timestamp
        )

    def send_event(self, event_type: str, ticket_ref: str, **header_overrides):
        body = json.dumps({"type": event_type, "data": {"ticket_ref": ticket_ref}}).encode()
        headers = self.signed_headers(body, **header_overrides)
        return self.client.post("/api/v1/webhooks/ticket-events", data=body, headers=headers)

    def close(self, ticket_ref: str, **kwargs):
        return self.send_event("ticket.closed", ticket_ref, **kwargs)


@pytest.fixture
def ticket_system(client) -> TicketSystem:
    return TicketSystem(client)


class AgentBrowser:
    """Acts as an agent in a browser session: logs in and posts forms with their CSRF token.

    Second factor. `create()` provisions the agent with AGENT_TOTP_SECRET, as an operator would
    (no code is spent), and keeps the recovery codes in `recovery_codes[username]`. `login()`
    types a real code of that secret. The server accepts a code once: only for a time step later
    than the last one it accepted, within one step either side of now. So instead of waiting 30 s
    between logins, `totp_code()` reads the agent's last accepted step from the database and types
    the earliest step still acceptable - the previous step's code, then the current one, then the
    next one - as someone whose authenticator runs a little slow or fast would. That gives up to
    three logins per 30-second step with no waiting and no test-only path in the server; the
    previous step is skipped in the last 5 s of a real step so that a step boundary crossed before
    the server checks cannot make the code stale. A test needing more codes moves a frozen clock
    (freezegun) forward, as tests/test_sessions.py does.
    """

    def __init__(self, client, app):
        self.client = client
        self.app = app
        self.recovery_codes: dict[str, list[str]] = {}

    def create(self, username: str = "alice", role: str = "agent", enrol: bool = True) -> None:
        from vault_service.services.agents import create_agent, provision_totp

        with self.app.app_context():
            agent = create_agent(username, AGENT_PASSWORD, role, actor="test")
            if enrol:
                settings = self.app.extensions["vault_service.settings"]
                codes = provision_totp(settings, agent, AGENT_TOTP_SECRET, actor="test")
                self.recovery_codes[username] = codes

    def totp_code(self, username: str = "alice", secret: str = AGENT_TOTP_SECRET) -> str:
        """The code of the earliest time step the server will still accept for this agent."""
        from sqlalchemy import select

        from vault_service.clock import utcnow
        from vault_service.models import Agent
        from vault_service.services import totp

        with self.app.app_context():
            last = db.session.scalar(
                select(Agent.totp_last_step).where(Agent.username == username.lower())
            )
            db.session.rollback()
        now = utcnow()
        current = totp.time_step(now)
        into_step = now.timestamp() - current * totp.STEP_SECONDS
        earliest = current - 1 if into_step < totp.STEP_SECONDS - 5 else current
        for step in range(earliest, current + 2):
            if last is None or step > last:
                return totp.code_at(secret, step)
        raise AssertionError(
            f"every TOTP code acceptable now for {username} is spent: move the frozen clock on"
        )

    def csrf_token(self, path: str = "/login") -> str:
        page = self.client.get(path).get_data(as_text=True)
        marker = 'name="csrf_token" value="'
        start = page.index(marker) + len(marker)
        return page[start : page.index('"', start)]

    def login(
        self, username: str = "alice", password: str = AGENT_PASSWORD, code: str | None = None
    ):
        """Password and a fresh TOTP code (`code=""` sends none, e.g. for an unenrolled agent)."""
        code = self.totp_code(username) if code is None else code
        return self.client.post(
            "/login",
            data={
                "username": username,
                "password": password,
                "code": code,
                "csrf_token": self.csrf_token(),
            },
        )

    def reauth(self, username: str = "alice", code: str | None = None, next_path: str = "/"):
        """Answer the code re-prompt that guards reveals and access requests."""
        code = self.totp_code(username) if code is None else code
        return self.client.post(
            "/reauth",
            data={"code": code, "next": next_path, "csrf_token": self.csrf_token("/reauth")},
        )

    def post(self, path: str, data: dict, token_page: str = "/"):
        return self.client.post(path, data={**data, "csrf_token": self.csrf_token(token_page)})

    def request_access(self, ticket_ref: str, minutes: int = 30, reason: str = "debug upload"):
        return self.post(
            f"/tickets/{ticket_ref}/access",
            {"reason": reason, "duration_minutes": str(minutes)},
            token_page=f"/tickets/{ticket_ref}",
        )

    def current_grant_id(self, ticket_ref: str) -> str:
        page = self.client.get(f"/tickets/{ticket_ref}").get_data(as_text=True)
        marker = 'name="grant_id" value="'
        start = page.index(marker) + len(marker)
        return page[start : page.index('"', start)]

    def reveal(self, ticket_ref: str, grant_id: str | None = None):
        grant_id = grant_id or self.current_grant_id(ticket_ref)
        return self.post(
            f"/tickets/{ticket_ref}/reveal", {"grant_id": grant_id}, f"/tickets/{ticket_ref}"
        )


@pytest.fixture
def agent(client, app) -> AgentBrowser:
    browser = AgentBrowser(client, app)
    browser.create()
    return browser


# The key a module's events receiver verifies with, and its apps sign with (`events_secrets`).
EVENTS_KEY = secrets.token_bytes(32)


@pytest.fixture
def receiver():
    """The ticket system's events endpoint, verifying every delivery with EVENTS_KEY."""
    server = EventReceiver(["whsec_" + base64.b64encode(EVENTS_KEY).decode()])
    yield server
    server.stop()


@pytest.fixture
def admin_browser(app) -> AgentBrowser:
    """Bob, an admin, logged in in his own browser (cookie jar) beside alice's."""
    browser = AgentBrowser(app.test_client(), app)
    browser.create("bob", role="admin")
    browser.login("bob")
    return browser


SAMPLE_ITEMS = [
    {
        "kind": "sftp",
        "host": "files.example.test",
        "port": "22",
        "username": "deploy",
        "password": "  pässwörd with spaces ✓  ",
    },
    {
        "kind": "admin_panel",
        "url": "https://shop.example.test/admin",
        "username": "owner@example.test",
        "password": "hunter2-ünïcødé",
    },
]


@pytest.fixture
def submitted_ticket(ticket_system, client):
    """A ticket with SAMPLE_ITEMS submitted through its link; returns the ticket ref."""
    ticket_ref = f"T-{uuid.uuid4().hex[:8]}"
    path = ticket_system.link_path(ticket_ref)
    response = client.post(path, json={"items": SAMPLE_ITEMS, "notes": "use the staging site"})
    assert response.status_code == 201, response.get_json()
    return ticket_ref


@pytest.fixture
def ticket_system_factory():
    """For tests that build their own app (other settings, same database): its actors."""

    def build(app):
        from sqlalchemy import select

        from vault_service.models import Agent

        with app.app_context():
            schema.upgrade(db.engine)
            exists = db.session.scalar(select(Agent).where(Agent.username == "alice"))
            db.session.rollback()
        client = app.test_client()
        browser = AgentBrowser(client, app)
        if exists is None:
            browser.create()
        return TicketSystem(client), browser, client

    return build


# -- fixtures more than one test module uses (their helpers live in tests/helpers.py) ---------


@pytest.fixture
def start_gunicorn(tmp_path, openbao, app_token, migrated_sqlite_template):
    started: list[Gunicorn] = []

    def start(conf: bool = True) -> Gunicorn:
        database = tmp_path / f"db-{len(started)}.sqlite"
        shutil.copyfile(migrated_sqlite_template, database)
        server = Gunicorn(tmp_path, openbao, app_token, database, conf)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def app_without_vault(make_settings, settings):
    """The same service and database, pointed at a port where no Vault listens."""
    broken = create_app(
        make_settings(
            secret_key=settings.secret_key,  # so it recognises the working app's link tokens
            vault_addr=f"http://127.0.0.1:{free_port()}",
            vault_timeout_seconds=2.0,
        )
    )
    yield broken
    with broken.app_context():
        db.session.remove()
        db.engine.dispose()


# -- a browser on the app (the agents' pages; modules with other needs define their own) ------


@pytest.fixture
def live_server(app):
    """The app on a loopback port, served by werkzeug in a thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def page(live_server):
    """Debian's Chromium on the live server, allowed to use the clipboard (the copy buttons)."""
    from playwright import sync_api as playwright_api

    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 900})
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.console_messages = []
            page.on("console", lambda message: page.console_messages.append(message.text))
            yield page
        finally:
            browser.close()
