"""No response names the server software or its version: gunicorn started with
vault_service/gunicorn_conf.py (as the Dockerfile and `make dev` start it) answers without its
banner, on the app's pages and on gunicorn's own error responses."""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import socket
from pathlib import Path

import pytest
import requests

from vault_service.devtools import processes
from vault_service.devtools.processes import free_port

from .helpers import ROOT, make_child_environment

GUNICORN_CONF = "python:vault_service.gunicorn_conf"
VERSION = re.compile(r"\d+\.\d+")


class Gunicorn:
    """gunicorn serving the app on a free loopback port, with a minimal environment."""

    def __init__(self, tmp_path: Path, openbao, app_token: str, database: Path, conf: bool):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        inherited = make_child_environment()
        env = {
            **inherited,
            "VAULT_SERVICE_ENV": "testing",
            "VAULT_SERVICE_DATABASE_URL": f"sqlite:///{database}",
            "VAULT_ADDR": openbao.addr,
            "VAULT_SERVICE_VAULT_TOKEN": app_token,
            "VAULT_SERVICE_DEPLOYMENT_ID": "t-" + secrets.token_hex(8),
            "VAULT_SERVICE_SECRET_KEY": secrets.token_urlsafe(48),
            "VAULT_SERVICE_TICKET_API_TOKEN": secrets.token_urlsafe(32),
            "VAULT_SERVICE_WEBHOOK_SECRET": "whsec_" + base64.b64encode(os.urandom(32)).decode(),
            "VAULT_SERVICE_PUBLIC_URL": self.base,
        }
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
