"""No live link token reaches gunicorn's own error log (issue 13 item 3): malformed request lines
carrying a live token (a non-ASCII byte after it, a bad HTTP version, an over-long header) make
gunicorn log the raw request line; with the shipped config every line is the app's JSON and the
token appears nowhere. The control without the config proves the test sees the leak."""

from __future__ import annotations

import json

import pytest
import requests

MALFORMED = [
    b"GET /s/{token}\xff HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /s/{token} HTTP/9.Z\r\nHost: x\r\n\r\n",
    b"GET /s/{token} HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    b"GET /r/{token}\x01 HTTP/1.1\r\n\r\n",
    b"GET /s/{token}?x=\xfe HTTP/1.0\r\n\r\n",
]


def live_link_token(server) -> str:
    """A real, unused link token, from the ticket API of the running server."""
    response = requests.post(
        f"{server.base}/api/v1/tickets/T-gunicorn/submission-links",
        headers={"Authorization": f"Bearer {server.env['VAULT_SERVICE_TICKET_API_TOKEN']}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    token = response.json()["url"].rsplit("/", 1)[1]
    assert requests.get(f"{server.base}/s/{token}", timeout=5).status_code == 200
    return token


def send_malformed(server, token: str) -> None:
    for template in MALFORMED:
        answer = server.raw(template.replace(b"{token}", token.encode()))
        assert answer.startswith(b"HTTP/1.1 4"), answer[:100]


@pytest.mark.parametrize("conf", [True, False], ids=["shipped-config", "control-no-config"])
def test_malformed_request_lines_never_put_a_live_token_in_gunicorns_log(start_gunicorn, conf):  # noqa: F811
    server = start_gunicorn(conf=conf)
    token = live_link_token(server)
    send_malformed(server, token)
    server.stop()  # flushes; the worker's and the master's lines are all in the file now
    lines = server.log.read_text(errors="replace").splitlines()
    assert any("Invalid request" in line or "invalid" in line.lower() for line in lines), lines
    leaked = [line for line in lines if token in line]
    if not conf:
        # Without the shipped logger gunicorn writes the raw request line, token and all.
        assert leaked, "the control saw no token: the test could not see a leak"
        return
    assert leaked == []
    for line in lines:
        entry = json.loads(line)  # every line is one JSON object
        assert {"ts", "level", "logger", "event"} <= set(entry), line
