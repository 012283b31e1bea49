"""`make dev` itself: the script starts OpenBao and the app, its in-process worker purges, and
everything survives a restart. Runs the real script as a subprocess on free loopback ports."""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyotp
import pytest
import requests

from vault_service.devtools.processes import Process, free_port
from vault_service.services.providers.standard_webhooks import sign

from .helpers import ROOT, make_child_environment


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs if not key.startswith("#")}


class DevServer:
    """One run of scripts/dev.py."""

    def __init__(self, var_dir: Path, port: int, openbao_port: int, log: Path):
        env = dict(make_child_environment(), PORT=str(port), OPENBAO_PORT=str(openbao_port))
        env["VAULT_SERVICE_VAR_DIR"] = str(var_dir)
        self.base = f"http://127.0.0.1:{port}"
        self.log = log
        argv = [sys.executable, str(ROOT / "scripts" / "dev.py")]
        self.process = Process("make dev", argv, log, env=env, cwd=ROOT)
        self.process.wait_for_url(f"{self.base}/readyz", 60)

    def stop(self) -> None:
        """Ctrl-C, as in a terminal: SIGINT to the script and its gunicorn."""
        self.process.stop(30, signal.SIGINT)


@pytest.fixture
def dev_ports():
    return free_port(), free_port()


def test_make_dev_serves_the_demo_purges_in_process_and_keeps_data_across_restarts(
    tmp_path, dev_ports
):
    var_dir = tmp_path / "var"
    log = tmp_path / "dev.log"
    server = DevServer(var_dir, *dev_ports, log)
    try:
        env = read_env(var_dir / "dev.env")
        assert {"DEMO_AGENT_USERNAME", "DEMO_AGENT_PASSWORD", "DEMO_SUBMISSION_LINK"} <= set(env)
        assert oct((var_dir / "dev.env").stat().st_mode & 0o777) == "0o600"
        # The demo agent is enrolled: password plus a code of the secret in dev.env logs in.
        browser = requests.Session()
        page = browser.get(f"{server.base}/login", timeout=10).text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        login = browser.post(
            f"{server.base}/login",
            data={
                "username": env["DEMO_AGENT_USERNAME"],
                "password": env["DEMO_AGENT_PASSWORD"],
                "code": pyotp.TOTP(env["DEMO_AGENT_TOTP_SECRET"]).now(),
                "csrf_token": csrf,
            },
            allow_redirects=False,
            timeout=10,
        )
        assert (login.status_code, login.headers["Location"]) == (302, "/")
        assert browser.get(f"{server.base}/", allow_redirects=False, timeout=10).status_code == 200
        api = {"Authorization": f"Bearer {env['VAULT_SERVICE_TICKET_API_TOKEN']}"}
        demo = env["DEMO_SUBMISSION_LINK"]
        item = {"kind": "other", "label": "demo", "secret": "s3cret ✓"}
        assert requests.post(demo, json={"items": [item]}, timeout=10).status_code == 201
        created = requests.post(
            f"{server.base}/api/v1/tickets/T-dev/submission-links", headers=api, timeout=10
        )
        assert created.status_code == 201
        link = created.json()["url"]
    finally:
        server.stop()

    # Restart: same secrets, same data, the old unused link still works.
    server = DevServer(var_dir, *dev_ports, log)
    try:
        assert (
            read_env(var_dir / "dev.env")["VAULT_SERVICE_TICKET_API_TOKEN"]
            == (env["VAULT_SERVICE_TICKET_API_TOKEN"])
        )
        status = requests.get(f"{server.base}/api/v1/tickets/DEMO-1", headers=api, timeout=10)
        assert status.json()["credential_count"] == 1
        assert requests.post(link, json={"items": [item]}, timeout=10).status_code == 201

        # A signed close, then the worker inside the dev server purges without any other process.
        key = base64.b64decode(env["VAULT_SERVICE_WEBHOOK_SECRET"].removeprefix("whsec_"))
        body = json.dumps({"type": "ticket.closed", "data": {"ticket_ref": "T-dev"}}).encode()
        msg_id, stamp = f"msg_{uuid.uuid4().hex}", int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(key, msg_id, stamp, body),
        }
        closed = requests.post(
            f"{server.base}/api/v1/webhooks/ticket-events", data=body, headers=headers, timeout=10
        )
        assert closed.status_code == 202
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = requests.get(f"{server.base}/api/v1/tickets/T-dev", headers=api, timeout=10)
            if status.json()["status"] == "purged":
                break
            time.sleep(0.5)
        assert status.json()["status"] == "purged"
    finally:
        server.stop()

    output = log.read_text()
    assert "DEVELOPMENT MODE" in output
    assert f"agent TOTP secret: {env['DEMO_AGENT_TOTP_SECRET']}" in output
    # Request log lines name the route, never the token in the path.
    token = link.rsplit("/", 1)[1]
    request_lines = [line for line in output.splitlines() if '"event": "request"' in line]
    assert any('"/s/<token>"' in line for line in request_lines)
    assert not [line for line in request_lines if token in line]


def run_dev_script(var_dir: Path, port: str, openbao_port: str) -> subprocess.CompletedProcess:
    """scripts/dev.py as `make dev` runs it, to completion (it must stop at once)."""
    env = dict(make_child_environment(), PORT=port, OPENBAO_PORT=openbao_port)
    env["VAULT_SERVICE_VAR_DIR"] = str(var_dir)
    argv = [sys.executable, str(ROOT / "scripts" / "dev.py")]
    return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("taken", ["PORT", "OPENBAO_PORT"])
def test_a_taken_port_is_one_line_naming_its_variable_before_anything_starts(tmp_path, taken):
    var_dir = tmp_path / "var"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = str(listener.getsockname()[1])
        ports = {"PORT": str(free_port()), "OPENBAO_PORT": str(free_port()), taken: busy}
        result = run_dev_script(var_dir, ports["PORT"], ports["OPENBAO_PORT"])
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"make dev: port {busy} on 127.0.0.1 is in use; choose another with {taken}=<port> make dev"
    ]
    # Nothing was bootstrapped, written or printed: no secrets, no data directory.
    assert not var_dir.exists()


def test_a_port_that_is_not_a_number_is_one_line_too(tmp_path):
    result = run_dev_script(tmp_path / "var", "http", str(free_port()))
    assert result.returncode != 0
    assert result.stderr.splitlines() == ["make dev: PORT='http' is not a port number (1-65535)"]
