"""Plain helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hvac
import hvac.exceptions
import requests
from joserfc import jws as jose_jws
from joserfc.jwk import KeySet
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug.serving import WSGIRequestHandler

from vault_service import jws
from vault_service.clock import utcnow
from vault_service.config import OidcSettings
from vault_service.devtools import processes
from vault_service.devtools.processes import free_port
from vault_service.extensions import current_settings, current_vault, db
from vault_service.models import Grant, Lease, LeaseStatus, Ticket
from vault_service.services import sweep
from vault_service.vault import RECEIPT_KEY, lease_names

ROOT = Path(__file__).resolve().parent.parent

# A complete production environment (every required secret, strong enough): settings tests vary
# one variable of it.
PRODUCTION_ENVIRONMENT = {
    "VAULT_SERVICE_ENV": "production",
    "VAULT_SERVICE_DEPLOYMENT_ID": "prod",
    "VAULT_SERVICE_SECRET_KEY": "k" * 48,
    "VAULT_SERVICE_TICKET_API_TOKEN": "t" * 40,
    "VAULT_SERVICE_WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"w" * 32).decode(),
    "VAULT_SERVICE_VAULT_ROLE_ID": "role",
    "VAULT_SERVICE_VAULT_SECRET_ID": "secret",
    "VAULT_SERVICE_PUBLIC_URL": "https://vault.example.test",
}


# The deployment id of the running test's apps (set by conftest's make_settings), so a test can
# name its leases' material in Vault as the app does without threading the id through every call.
_CURRENT_DEPLOYMENT = {"id": ""}


def use_deployment(deployment_id: str) -> None:
    """Make `deployment_id` the one key_of, folder_of and item_path name material for."""
    _CURRENT_DEPLOYMENT["id"] = deployment_id


def current_deployment() -> str:
    """The running test's deployment id."""
    return _CURRENT_DEPLOYMENT["id"]


def key_of(lease_id: str) -> str:
    """A lease's transit key, as the test's app names it."""
    return lease_names(lease_id, deployment=current_deployment()).key_name


def folder_of(lease_id: str) -> str:
    """A lease's KV folder (relative to the mount), as the test's app names it."""
    return lease_names(lease_id, deployment=current_deployment()).kv_folder


def item_path(lease_id: str, item_id: str) -> str:
    """One item's KV path (relative to the mount), as the test's app names it."""
    return lease_names(lease_id, deployment=current_deployment()).item_path(item_id)


def run_worker_pass(app, *, orphans: bool = False) -> sweep.SweepReport:
    """One worker pass. Orphan sweeps stay off by default: every test shares one OpenBao, and
    other tests' leases are unknown to this test's fresh database."""
    with app.app_context():
        return sweep.sweep(current_settings(), current_vault(), orphans=orphans)


def vault_requests_since(openbao, offset: int) -> list[dict]:
    """The requests OpenBao's audit device recorded after `offset` bytes of its log."""
    with open(openbao.audit_log, "rb") as log:
        log.seek(offset)
        lines = log.read().splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    return [entry["request"] for entry in entries if entry.get("type") == "request"]


def lease_of(app, ticket_ref: str) -> Lease:
    """The lease of a ticket, loaded in a context of its own."""
    with app.app_context():
        ticket = db.session.scalar(select(Ticket).where(Ticket.ref == ticket_ref))
        return db.session.scalar(select(Lease).where(Lease.ticket_id == ticket.id))


ORIGIN_FIELDS = ("client_address", "user_agent", "request_id")


def own_details(details: dict) -> dict:
    """An audit record's details without the request origin every record of a request carries
    (services/audit.py; tests/test_request_origin.py checks those)."""
    return {key: value for key, value in details.items() if key not in ORIGIN_FIELDS}


def make_child_environment() -> dict[str, str]:
    """The environment for a child process (gunicorn, the worker, `make dev`): this one without
    Vault or app settings, and with this checkout first on PYTHONPATH, so that a child runs the
    code under test even where the venv has another copy of vault_service installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass
class Attempt:
    """One POST the receiver got: its headers and bytes, and what it answered."""

    webhook_id: str
    timestamp: int
    signatures: list[str]
    body: bytes
    event: dict | None
    status: int
    received_at: float


class EventReceiver:
    """A ticket system's events endpoint on 127.0.0.1 (http.server in a thread).

    Every delivery is verified with the independent `standardwebhooks` package, once per
    configured secret (each must verify). `answer(event)` decides the reply: (status, processed);
    a processed event takes effect once per webhook-id, as a receiver deduplicating on it would,
    so `effects` shows the exactly-once outcome whatever was redelivered. `stop()` closes the
    socket (the service then meets a refused connection) and `start()` opens it again.
    """

    def __init__(self, secrets: list[str]):
        self.secrets = secrets
        self.port = free_port()
        self.attempts: list[Attempt] = []
        self.effects: dict[str, dict] = {}
        self.answer: Callable[[dict], tuple[int, bool]] = lambda event: (204, True)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/vault-service"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, event = receiver.receive(self.path, dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def receive(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict | None]:
        """Verify, answer, and take effect once per webhook-id."""
        headers = {k.lower(): v for k, v in headers.items()}
        event = None
        try:
            for secret in self.secrets:
                event = Webhook(secret).verify(body, headers)
        except WebhookVerificationError:
            event = None
        if path != "/hooks/vault-service" or headers.get("content-type") != "application/json":
            event = None
        status, processed = (401, False) if event is None else self.answer(event)
        with self._lock:
            webhook_id = headers.get("webhook-id", "")
            if processed and webhook_id not in self.effects:
                self.effects[webhook_id] = event
            self.attempts.append(
                Attempt(
                    webhook_id,
                    int(headers.get("webhook-timestamp", "0")),
                    headers.get("webhook-signature", "").split(),
                    body,
                    event,
                    status,
                    time.time(),
                )
            )
        return status, event

    def delivered(self) -> list[Attempt]:
        """The attempts answered 2xx, in arrival order."""
        with self._lock:
            return [a for a in self.attempts if 200 <= a.status < 300]

    def events_of(self, ticket_ref: str) -> list[dict]:
        """The events that took effect for a ticket, in the order they did."""
        with self._lock:
            return [e for e in self.effects.values() if e["data"]["ticket_ref"] == ticket_ref]


# -- signed receipts, checked with an independent JOSE implementation (joserfc), never ours -----


def published_key_set(client: Any) -> KeySet:
    """The JWKS as any verifier fetches it: anonymously, from the well-known URL."""
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return KeySet.import_key_set(response.get_json())


def verify_independently(client: Any, token: str) -> dict[str, Any]:
    """joserfc's verdict (not ours): the signature against the published keys, then the claims."""
    signed = jose_jws.deserialize_compact(token, published_key_set(client), algorithms=["EdDSA"])
    assert signed.protected["alg"] == "EdDSA"
    assert signed.protected["kid"].startswith(f"{RECEIPT_KEY}:v")
    return json.loads(signed.payload)


def tamper(token: str, part: int) -> str:
    """The token with one byte of one part (0 header, 1 payload, 2 signature) changed."""
    parts = token.split(".")
    raw = bytearray(jws.b64url_decode(parts[part]))
    raw[len(raw) // 2] ^= 0x01
    parts[part] = jws.b64url(bytes(raw))
    return ".".join(parts)


# -- gunicorn started as the Dockerfile starts it (test_server_banner.py and others) -----------

GUNICORN_CONF = "python:vault_service.gunicorn_conf"


def app_environment(
    openbao: Any, app_token: str, database: Path, public_url: str
) -> dict[str, str]:
    """A child app's environment: testing mode on a SQLite file, the session's OpenBao under the
    app token, a deployment id and throwaway secrets of its own."""
    return {
        **make_child_environment(),
        "VAULT_SERVICE_ENV": "testing",
        "VAULT_SERVICE_DATABASE_URL": f"sqlite:///{database}",
        "VAULT_ADDR": openbao.addr,
        "VAULT_SERVICE_VAULT_TOKEN": app_token,
        "VAULT_SERVICE_DEPLOYMENT_ID": "t-" + secrets.token_hex(8),
        "VAULT_SERVICE_SECRET_KEY": secrets.token_urlsafe(48),
        "VAULT_SERVICE_TICKET_API_TOKEN": secrets.token_urlsafe(32),
        "VAULT_SERVICE_WEBHOOK_SECRET": "whsec_" + base64.b64encode(os.urandom(32)).decode(),
        "VAULT_SERVICE_PUBLIC_URL": public_url,
    }


class Gunicorn:
    """gunicorn serving the app on a free loopback port, with a minimal environment."""

    def __init__(self, tmp_path: Path, openbao, app_token: str, database: Path, conf: bool):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = app_environment(openbao, app_token, database, self.base)
        self.env = env  # for tests that call the API (its token) or read the settings
        args = ["-c", GUNICORN_CONF] if conf else []
        args += ["--workers", "1", "vault_service.wsgi:app"]
        self.log = tmp_path / f"gunicorn-{self.port}.log"
        self.process = processes.start_gunicorn(
            args, port=self.port, log_path=self.log, env=env, cwd=ROOT
        )

    def raw(self, request: bytes) -> bytes:
        """Send bytes as they are (gunicorn's own parser errors never reach the app)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            connection.sendall(request)
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def stop(self) -> None:
        self.process.stop()


# -- real Chromium against a werkzeug server (test_browser.py, test_customer_pages_browser.py) -

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class QuietRequestHandler(WSGIRequestHandler):
    """werkzeug's server without its `Server: Werkzeug/x Python/y` banner, like production."""

    def version_string(self) -> str:
        return "vault-service"


# -- the customer's form, and the branding an organisation gives it -----------------------------


def csrf_token_of(page: str) -> str:
    marker = 'name="csrf_token" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


BRAND = "Acme Hosting <GmbH> & Co"
SUPPORT = "support@acme.example"
PRIVACY = "https://acme.example/privacy"
# A 24x24 blue square PNG: the logo the branded app serves (visible in the screenshots).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000018000000180806000000e0773df80000002549444154789c"
    "63908fdfff9f969861d482510b462d18b560d482510b462d18b56068580000d3cf074cc02c00c40000000049"
    "454e44ae426082"
)


# -- agent and customer pages in Chromium ------------------------------------------------------

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"


def log_browser_in(page, live_server: str, agent, username: str = "alice") -> None:
    """Log the agent in with the conftest helper (password and second factor, however the
    login works) and hand its session to the browser. The helper speaks as this browser (same
    address and User-Agent), so the session's binding to them holds."""
    agent.client.environ_base["HTTP_USER_AGENT"] = page.evaluate("navigator.userAgent")
    response = agent.login(username)
    assert response.status_code in (302, 303), response.status_code
    name = agent.app.config["SESSION_COOKIE_NAME"]
    cookie = agent.client.get_cookie(name)
    assert cookie is not None, "the login set no session cookie"
    page.context.add_cookies([{"name": name, "value": cookie.value, "url": live_server}])


def assert_accessible(page, where: str) -> None:
    """axe-core's WCAG 2.x A/AA rules and best practices: nothing serious or critical."""
    source = AXE.read_text()
    # Evaluated through the DevTools protocol, which the page's CSP does not govern: the page
    # itself stays exactly as served (no inline script tag is added).
    page.evaluate(source)
    results = page.evaluate(
        "() => axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}})"
    )
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{where}: {bad}"
    assert results["passes"], where  # axe did run its rules


# -- the customer's HTML form ------------------------------------------------------------------

# One valid file-transfer login, as the form posts it.
GOOD = {"ft_kind": "sftp", "ft_host": "h.example", "ft_port": "22", "ft_username": "u",
        "ft_password": "pw-4b1d"}  # fmt: skip


def form_post(client, path: str, data: dict, **kwargs):
    """Post the form as a browser does: with the CSRF token of a fresh GET of the page."""
    token = csrf_token_of(client.get(path, **kwargs).get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **data}, **kwargs)


# -- agents' pages and grants ------------------------------------------------------------------


def accessor_is_gone(openbao: Any, accessor: str) -> bool:
    """Whether Vault no longer knows the token behind this accessor (revoked or expired)."""
    try:
        openbao.admin().auth.token.lookup_accessor(accessor)
    except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
        return True
    return False


def add_waiting_tickets(app: Any, count: int, prefix: str = "BULK-") -> None:
    """`count` open tickets whose link is out and nothing submitted, oldest first."""
    now = utcnow()
    with app.app_context():
        for n in range(count):
            ticket = Ticket(ref=f"{prefix}{n:04d}", created_at=now)
            db.session.add(ticket)
            db.session.flush()
            db.session.add(
                Lease(
                    ticket_id=ticket.id,
                    status=LeaseStatus.PROVISIONING,
                    created_at=now + timedelta(seconds=n),
                    expires_at=now + timedelta(days=30),
                )
            )
        db.session.commit()


# Screenshots of the pages under test (VAULT_SERVICE_SCREENSHOTS, else ./screenshots).
SCREENSHOTS = Path(os.environ.get("VAULT_SERVICE_SCREENSHOTS", "screenshots"))


def shoot(page: Any, name: str) -> None:
    """A full-page screenshot named for what it shows."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


# -- Vault seen from outside the app -----------------------------------------------------------


def unseal_grant_token(app: Any, grant_id: str) -> str:
    """A grant's token, decrypted as the app would (to play an attacker who bypasses the app)."""
    with app.app_context():
        ciphertext = db.session.get(Grant, grant_id).token_ciphertext
    return app.extensions["vault_service.vault"].decrypt_token(ciphertext)


def client_for(openbao: Any, token: str) -> hvac.Client:
    """A Vault client holding `token`, nothing else."""
    return hvac.Client(url=openbao.addr, token=token, timeout=10)


def grant_tokens_of(openbao: Any, lease: Lease) -> list[dict[str, Any]]:
    """Every live grant token of a lease, found by Vault alone: each token Vault lists whose
    identity entity is the lease's (grants inherit it), the lease token itself aside. Vault's own
    lookup data: accessor, creation time and TTL, policies."""
    admin = openbao.admin()
    found = []
    for accessor in admin.auth.token.list_accessors()["data"]["keys"]:
        if accessor == lease.token_accessor:
            continue
        try:
            data = admin.auth.token.lookup_accessor(accessor)["data"]
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
            continue  # expired or revoked since the listing
        if data.get("entity_id") == lease.entity_id:
            found.append(data)
    return found


# -- OpenBao's identity OIDC provider, as the OIDC tests configure it ------------------------

OIDC_USER_PASSWORD = "provider-password-1"


@dataclass
class BaoUser:
    name: str
    entity_id: str


@dataclass
class BaoProvider:
    """OpenBao's OIDC provider as configured for the tests: userpass users, their entities, the
    client's id and secret, the provider's issuer."""

    addr: str
    issuer: str
    client_id: str
    client_secret: str
    users: dict[str, BaoUser]
    root_token: str
    mount: str

    def _call(self, method: str, path: str, **body: object) -> dict:
        response = requests.request(
            method,
            f"{self.addr}/v1/{path}",
            headers={"X-Vault-Token": self.root_token},
            json=body or None,
            timeout=10,
        )
        assert response.status_code in (200, 204), (path, response.text)
        return response.json() if response.status_code == 200 else {}

    def user_token(self, name: str) -> str:
        """A userpass login at OpenBao: the token OpenBao's UI holds after its login form."""
        response = requests.post(
            f"{self.addr}/v1/auth/{self.mount}/login/{name}",
            json={"password": OIDC_USER_PASSWORD},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["auth"]["client_token"])

    def authorize(self, authorization_url: str, token: str) -> dict:
        """The authorization request the app built, sent as the user to the API path behind
        OpenBao's UI page (the UI calls it with the user's token and redirects with its answer)."""
        parts = urlsplit(authorization_url)
        assert parts.path.startswith("/ui/vault/identity/oidc/provider/"), parts.path
        api_path = parts.path.replace("/ui/vault/", "/v1/", 1)
        response = requests.get(
            f"{self.addr}{api_path}?{parts.query}", headers={"X-Vault-Token": token}, timeout=10
        )
        return {"status": response.status_code, **(response.json() if response.content else {})}

    def settings(self, **overrides: object) -> OidcSettings:
        values: dict[str, object] = {
            "issuer": self.issuer,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "provider_name": "OpenBao",
            "scopes": ("openid", "email", "groups"),
            "groups_claim": "groups",
            "role_map": (("support", "agent"), ("support-leads", "admin")),
            "provisioning": "jit",
        }
        values.update(overrides)
        return OidcSettings(**values)  # type: ignore[arg-type]


def configure_bao_provider(
    addr: str, root_token: str, redirect_uri: str, mount: str | None = None
) -> BaoProvider:
    """On a real OpenBao: a userpass mount with alice (group `support`), lead (`support-leads`)
    and mallory (no group), their entities and aliases, the groups, a key, an assignment, a
    client whose redirect URI is `redirect_uri`, email/groups/mfa scopes, and a provider."""
    suffix = uuid.uuid4().hex[:6]
    provider = BaoProvider(addr, "", "", "", {}, root_token, mount or f"userpass-{suffix}")
    provider._call("POST", f"sys/auth/{provider.mount}", type="userpass")
    accessor = provider._call("GET", "sys/auth")["data"][f"{provider.mount}/"]["accessor"]
    groups: dict[str, list[str]] = {"support": [], "support-leads": []}
    for name, email, group in (
        ("alice", "alice@example.test", "support"),
        ("lead", "lead@example.test", "support-leads"),
        ("mallory", "mallory@elsewhere.test", None),
    ):
        provider._call("POST", f"auth/{provider.mount}/users/{name}", password=OIDC_USER_PASSWORD)
        entity = provider._call(
            "POST", "identity/entity", name=f"{name}-{suffix}", metadata={"email": email}
        )
        entity_id = entity["data"]["id"]
        provider._call(
            "POST",
            "identity/entity-alias",
            name=name,
            canonical_id=entity_id,
            mount_accessor=accessor,
        )
        provider.users[name] = BaoUser(name, entity_id)
        if group:
            groups[group].append(entity_id)
    for group, members in groups.items():
        provider._call("POST", "identity/group", name=group, member_entity_ids=members)
    key = f"vs-key-{suffix}"
    provider._call("POST", f"identity/oidc/key/{key}", allowed_client_ids=["*"], algorithm="RS256")
    assignment = f"vs-{suffix}"
    provider._call(
        "POST",
        f"identity/oidc/assignment/{assignment}",
        entity_ids=[user.entity_id for user in provider.users.values()],
    )
    client_name = f"vault-service-{suffix}"
    provider._call(
        "POST",
        f"identity/oidc/client/{client_name}",
        key=key,
        redirect_uris=[redirect_uri],
        assignments=[assignment],
        id_token_ttl="10m",
        access_token_ttl="10m",
    )
    client = provider._call("GET", f"identity/oidc/client/{client_name}")["data"]
    provider.client_id, provider.client_secret = client["client_id"], client["client_secret"]
    for scope, template in (
        ("email", '{"email": {{identity.entity.metadata.email}}}'),
        ("groups", '{"groups": {{identity.entity.groups.names}}}'),
        # OpenBao's userpass checks no second factor; this scope lets a test say one was.
        ("mfa", '{"amr": ["pwd", "mfa"]}'),
    ):
        provider._call("POST", f"identity/oidc/scope/{scope}", template=template)
    name = f"vs-{suffix}"
    provider._call(
        "POST",
        f"identity/oidc/provider/{name}",
        issuer=addr,
        allowed_client_ids=[provider.client_id],
        scopes_supported=["email", "groups", "mfa"],
    )
    provider.issuer = f"{addr}/v1/identity/oidc/provider/{name}"
    return provider


# -- nginx with the shipped configuration (test_reverse_proxy.py, test_topology.py) -----------

NGINX_SITE = ROOT / "deploy" / "nginx" / "vault-service.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def loopback_nginx_config(
    directory: Path, listen_port: int, upstream_ports: list[int], tls: Any = None
) -> Path:
    """The shipped site, its upstream replicas rewritten to loopback ports and its listener to
    127.0.0.1:`listen_port` (HTTPS with `tls`, a devtools ServerTLS; else its TLS lines
    dropped), inside a minimal main configuration that keeps every file in `directory`."""
    site = NGINX_SITE.read_text()
    replicas = re.findall(r"^ *server app-\d:8000[^;]*;\n", site, flags=re.MULTILINE)
    assert len(replicas) == 2, "the shipped upstream names two replicas"
    loopback = "".join(
        replicas[0].replace(re.search(r"app-\d:8000", replicas[0])[0], f"127.0.0.1:{port}")  # type: ignore[index]
        for port in upstream_ports
    )
    site = site.replace("".join(replicas), loopback)
    if tls is None:
        site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{listen_port};")
        site = re.sub(r"^\s*(http2|ssl_[a-z_]+) [^\n]*\n", "", site, flags=re.MULTILINE)
    else:
        site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{listen_port} ssl;")
        # `http2 on;` is nginx 1.25.1+ (the compose file's image); Debian 12 ships 1.22.
        site = re.sub(r"^\s*http2 on;\n", "", site, flags=re.MULTILINE)
        site = site.replace("/etc/nginx/tls/vault-service.crt", str(tls.cert_file))
        site = site.replace("/etc/nginx/tls/vault-service.key", str(tls.key_file))
    site = site.replace("/var/log/nginx/", f"{directory}/")
    (directory / "site.conf").write_text(site)
    temp = {name: directory / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    # As root, nginx's workers would switch to "nobody", who cannot enter pytest's private tmp.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = directory / "nginx.conf"
    main.write_text(
        f"""{user}worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/main-error.log warn;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {directory}/site.conf;
}}
"""
    )
    return main


# -- a deployment reached over HTTP(S), as the ticket system, a customer or an agent would -----


class HTTPAnswer:
    """A requests response with the flask test client's reading methods, so the fixtures' actors
    (TicketSystem, AgentBrowser) drive a real deployment the way they drive a test client."""

    def __init__(self, response: Any):
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers

    def get_json(self) -> Any:
        return self.response.json()

    def get_data(self, as_text: bool = False) -> Any:
        return self.response.text if as_text else self.response.content


class HTTPClient:
    """One browser-like session (cookies kept) against `base`, e.g. the reverse proxy."""

    def __init__(self, base: str, verify: bool | str = True, timeout: float = 30.0):
        import requests

        self.base, self.timeout = base.rstrip("/"), timeout
        self.session = requests.Session()
        self.session.verify = verify
        self.session.trust_env = False

    def get(self, path: str, **kwargs: Any) -> HTTPAnswer:
        return HTTPAnswer(self.session.get(self.base + path, timeout=self.timeout, **kwargs))

    def post(self, path: str, **kwargs: Any) -> HTTPAnswer:
        # A browser's form post carries its Origin and Referer; over HTTPS the app checks them.
        headers = {"Origin": self.base, "Referer": self.base + path, **kwargs.pop("headers", {})}
        return HTTPAnswer(
            self.session.post(self.base + path, timeout=self.timeout, headers=headers, **kwargs)
        )
