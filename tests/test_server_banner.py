"""No response names the server software or its version: gunicorn started with
vault_service/gunicorn_conf.py (as the Dockerfile and `make dev` start it) answers without its
banner, on the app's pages and on gunicorn's own error responses."""

from __future__ import annotations

import re
import secrets

import requests

VERSION = re.compile(r"\d+\.\d+")


def banner_free(value: str | None) -> bool:
    """A Server header (if any) that names no software we run and carries no version."""
    if value is None:
        return True
    lowered = value.lower()
    return not (
        {"gunicorn", "werkzeug", "python", "flask"} & set(re.split(r"[^a-z]+", lowered))
        or VERSION.search(value)
    )


def test_gunicorn_with_the_shipped_config_sends_no_banner(start_gunicorn):
    server = start_gunicorn()
    responses = {
        "health": requests.get(f"{server.base}/healthz", timeout=5),
        "login page": requests.get(f"{server.base}/login", timeout=5),
        "gone link": requests.get(f"{server.base}/s/{secrets.token_urlsafe(32)}", timeout=5),
        "not found": requests.get(f"{server.base}/no-such-page", timeout=5),
        "api 401": requests.get(f"{server.base}/api/v1/tickets/T-1", timeout=5),
        "method not allowed": requests.delete(f"{server.base}/healthz", timeout=5),
    }
    for kind, response in responses.items():
        server_header = response.headers.get("Server")
        assert banner_free(server_header), (kind, server_header)
        assert server_header == "vault-service", kind
        assert "gunicorn" not in response.text.lower(), kind
    # gunicorn's own answer to a request it cannot parse never reaches Flask: it too is clean.
    raw = server.raw(b"NOT A REQUEST\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400"), raw[:200]
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    assert "gunicorn" not in head.lower()
    assert not VERSION.search(head.split("\r\n", 1)[1])


def test_without_the_config_gunicorn_would_name_itself(start_gunicorn):
    """The control: proves the test above would see the banner if the config stopped working."""
    server = start_gunicorn(conf=False)
    response = requests.get(f"{server.base}/healthz", timeout=5)
    assert not banner_free(response.headers.get("Server"))


def test_the_test_client_and_app_never_add_a_server_header(client):
    for path in ("/healthz", "/login", "/no-such-page"):
        assert banner_free(client.get(path).headers.get("Server")), path
