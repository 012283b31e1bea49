"""The service's clients over HTTP: the ticket system, a customer, and an agent's browser.

Production cookies are `Secure` and named `__Host-session`; an HTTP client rightly refuses to
send a Secure cookie over plain http, so the agent copies the session cookie by hand: it reads
Set-Cookie and sends the Cookie header itself. Nothing else differs from a browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.cookiejar
import json
import secrets
import struct
import time
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

import requests

from vault_service.services.providers.standard_webhooks import signed_headers


class UnexpectedResponse(RuntimeError):
    """The service answered something a correct lifecycle never gets."""


def _expect(response: requests.Response, status: int, what: str) -> requests.Response:
    if response.status_code != status:
        raise UnexpectedResponse(f"{what}: expected {status}, got {response.status_code}")
    return response


def _hidden_input(page: str, name: str) -> str:
    marker = f'name="{name}" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def totp_code(secret: str, moment: float | None = None) -> str:
    """The RFC 6238 code (SHA-1, 6 digits, 30-second steps) of a base32 secret, as an
    authenticator app shows it."""
    key = base64.b32decode(secret.replace(" ", "").upper() + "=" * (-len(secret) % 8))
    step = int((time.time() if moment is None else moment) // 30)
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def enrolment_secret(page: str) -> str:
    """The secret an enrolment page offers for typing by hand (spaces between groups)."""
    marker = 'id="totp-secret">'
    start = page.index(marker) + len(marker)
    return page[start : page.index("<", start)].replace(" ", "")


def throwaway_items(count: int) -> tuple[list[dict], list[str]]:
    """`count` credential items with random throwaway values; returns them and their markers."""
    items, markers = [], []
    for index in range(count):
        marker = secrets.token_hex(12)
        markers.append(marker)
        if index % 2 == 0:
            items.append(
                {
                    "kind": "sftp",
                    "host": "files.example.test",
                    "port": "22",
                    "username": f"deploy{index}",
                    "password": marker,
                }
            )
        else:
            items.append(
                {
                    "kind": "admin_panel",
                    "url": "https://shop.example.test/admin",
                    "username": f"owner{index}@example.test",
                    "password": marker,
                }
            )
    return items, markers


class Client:
    """One client connection (keep-alive) speaking to gunicorn on loopback."""

    def __init__(self, base: str, api_token: str, webhook_key: bytes):
        self.base = base
        self.api_token = api_token
        self.webhook_key = webhook_key
        self.http = requests.Session()
        self.http.trust_env = False
        # The session cookie is handled by hand (see the module docstring).
        self.http.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self.cookies: dict[str, str] = {}
        self.csrf_token = ""

    # -- plumbing ---------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, agent: bool = False, **kwargs) -> requests.Response:
        """One request. Only the agent's carry the agent's session cookie: the ticket system, a
        customer's browser and a health probe have none (sending it would make the app verify
        and re-sign a session on requests that in reality come without one)."""
        headers = kwargs.pop("headers", {})
        if agent and self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = self.http.request(
            method, self.base + path, headers=headers, allow_redirects=False, timeout=30, **kwargs
        )
        if not agent:
            return response
        for header in response.raw.headers.getlist("Set-Cookie"):
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return response

    def _api_headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_token}"}

    # -- the ticket system ------------------------------------------------------------------

    def create_link(self, ticket_ref: str) -> str:
        """A submission link for the ticket; returns its path (the https origin stripped)."""
        response = self._send(
            "POST",
            f"/api/v1/tickets/{ticket_ref}/submission-links",
            headers=self._api_headers(),
        )
        url = _expect(response, 201, "create link").json()["url"]
        return urlsplit(url).path

    def ticket_status(self, ticket_ref: str) -> dict:
        response = self._send("GET", f"/api/v1/tickets/{ticket_ref}", headers=self._api_headers())
        return _expect(response, 200, "ticket API").json()

    def close(self, ticket_ref: str) -> None:
        """The signed ticket.closed webhook."""
        body = json.dumps({"type": "ticket.closed", "data": {"ticket_ref": ticket_ref}}).encode()
        headers = signed_headers([self.webhook_key], body)
        response = self._send("POST", "/api/v1/webhooks/ticket-events", data=body, headers=headers)
        _expect(response, 202, "close webhook")

    # -- the customer -----------------------------------------------------------------------

    def submit(self, link_path: str, items: list[dict]) -> None:
        response = self._send("POST", link_path, json={"items": items})
        _expect(response, 201, "submit")

    # -- the agent --------------------------------------------------------------------------

    def login(self, username: str, password: str) -> None:
        """Log in; a new agent sets up its second factor on the way, as a person would."""
        page = _expect(self._send("GET", "/login", agent=True), 200, "login page").text
        self.csrf_token = _hidden_input(page, "csrf_token")
        form = {"username": username, "password": password, "csrf_token": self.csrf_token}
        response = _expect(self._send("POST", "/login", agent=True, data=form), 302, "login")
        location = urlsplit(response.headers.get("Location", "")).path
        if location.startswith("/account/"):
            # First login of an agent without a second factor: enrol a throwaway TOTP secret.
            page = _expect(self._send("GET", location, agent=True), 200, "enrolment page").text
            secret = enrolment_secret(page)
            form = {"code": totp_code(secret), "csrf_token": _hidden_input(page, "csrf_token")}
            _expect(self._send("POST", location, agent=True, data=form), 200, "enrolment")
        # The session changed at login; take the CSRF token its forms carry now.
        page = _expect(self._send("GET", "/", agent=True), 200, "dashboard").text
        if 'name="csrf_token"' in page:
            self.csrf_token = _hidden_input(page, "csrf_token")

    def request_access(self, ticket_ref: str, minutes: int = 30) -> None:
        response = self._send(
            "POST",
            f"/tickets/{ticket_ref}/access",
            agent=True,
            data={
                "reason": "benchmark",
                "duration_minutes": str(minutes),
                "csrf_token": self.csrf_token,
            },
        )
        _expect(response, 302, "request access")

    def ticket_page(self, ticket_ref: str) -> str:
        """The ticket page; returns the agent's grant id (the reveal form's hidden input)."""
        page = _expect(
            self._send("GET", f"/tickets/{ticket_ref}", agent=True), 200, "ticket page"
        ).text
        if 'name="grant_id"' not in page:
            raise UnexpectedResponse("ticket page: no grant (the access request failed)")
        return _hidden_input(page, "grant_id")

    def reveal(self, ticket_ref: str, grant_id: str) -> str:
        response = self._send(
            "POST",
            f"/tickets/{ticket_ref}/reveal",
            agent=True,
            data={"grant_id": grant_id, "csrf_token": self.csrf_token},
        )
        return _expect(response, 200, "reveal").text

    def healthz(self) -> None:
        _expect(self._send("GET", "/healthz"), 200, "healthz")

    def fresh_connection(self) -> None:
        """Drop the kept-alive connection and open a new one (unmeasured). gunicorn closes a
        connection idle for 2 s; a request sent just as it does so is reset, so a client that
        sat idle (while the floor ran, or the database was seeded) reconnects first."""
        self.http.close()
        self.healthz()

    def dashboard(self) -> str:
        return _expect(self._send("GET", "/", agent=True), 200, "dashboard").text
