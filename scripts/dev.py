#!/usr/bin/env python3
"""`make dev`: an embedded OpenBao, the real policies, the app on 127.0.0.1 — one command.

DEVELOPMENT ONLY. OpenBao is initialised with a single unseal key kept beside its data under
var/openbao/, so anyone who can read var/ can read every secret in it.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

from vault_service.devtools.embedded_openbao import EmbeddedOpenBao
from vault_service.services.totp import new_secret as new_totp_secret
from vault_service.vault import bootstrap_vault, issue_app_token

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("VAULT_SERVICE_VAR_DIR", ROOT / "var")).resolve()
DEV_ENV = VAR / "dev.env"
DEMO_AGENT = "demo"
DEMO_TICKET = "DEMO-1"

BANNER = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! DEVELOPMENT MODE: OpenBao's unseal key and root token are stored in var/openbao/    !!
!! init.json and it is unsealed automatically. Never use this setup for real data.     !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as written by write_env_file."""
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key] = value
    return values


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Write secrets readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# Written by `make dev` (development only). Use: set -a; . var/dev.env\n")
        for key, value in values.items():
            handle.write(f"{key}={value}\n")


class PortProblem(Exception):
    """A port setting that cannot be used, as the one line to print."""


def read_port(variable: str, default: int) -> int:
    """PORT or OPENBAO_PORT: an integer in 1-65535, or one line saying what to change."""
    raw = os.environ.get(variable, "") or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise PortProblem(f"make dev: {variable}={raw!r} is not a port number (1-65535)")
    return int(raw)


def check_port_free(variable: str, port: int) -> None:
    """Refuse a taken port before anything is bootstrapped or printed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as gunicorn and OpenBao bind: a port in TIME_WAIT from the previous run
        # is free to them, so it counts as free here too.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise PortProblem(
                f"make dev: port {port} on 127.0.0.1 is in use; "
                f"choose another with {variable}=<port> make dev"
            ) from None


def main() -> int:
    try:
        port = read_port("PORT", 8000)
        openbao_port = read_port("OPENBAO_PORT", 8200)
        if port == openbao_port:
            raise PortProblem(f"make dev: PORT and OPENBAO_PORT are both {port}; change one")
        # Both ports first: nothing is started, bootstrapped or printed for a run that cannot
        # serve (a race with another program binding meanwhile still fails, later and louder).
        check_port_free("OPENBAO_PORT", openbao_port)
        check_port_free("PORT", port)
    except PortProblem as problem:
        print(problem, file=sys.stderr)
        return 1
    VAR.mkdir(mode=0o700, exist_ok=True)
    previous = read_env_file(DEV_ENV)
    # Secrets are generated once and kept, so the data from an earlier run stays usable.
    secret_key = previous.get("VAULT_SERVICE_SECRET_KEY") or secrets.token_urlsafe(48)
    api_token = previous.get("VAULT_SERVICE_TICKET_API_TOKEN") or secrets.token_urlsafe(32)
    webhook_secret = previous.get("VAULT_SERVICE_WEBHOOK_SECRET") or (
        "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    )
    agent_password = previous.get("DEMO_AGENT_PASSWORD") or secrets.token_urlsafe(12)
    agent_totp_secret = previous.get("DEMO_AGENT_TOTP_SECRET") or new_totp_secret()

    print(BANNER, file=sys.stderr)
    openbao = EmbeddedOpenBao(VAR / "openbao", openbao_port)
    openbao.start()
    try:
        init = openbao.ensure_initialized_and_unsealed()
        for line in bootstrap_vault(openbao.addr, init.root_token):
            print(f"bootstrap: {line}")
        app_token = issue_app_token(openbao.addr, init.root_token, ttl_seconds=7 * 24 * 3600)

        env = {
            "VAULT_SERVICE_ENV": "development",
            "VAULT_SERVICE_DATABASE_URL": f"sqlite:///{VAR / 'vault_service.db'}",
            "VAULT_ADDR": openbao.addr,
            "VAULT_SERVICE_VAULT_TOKEN": app_token.token,
            "VAULT_SERVICE_SECRET_KEY": secret_key,
            "VAULT_SERVICE_TICKET_API_TOKEN": api_token,
            "VAULT_SERVICE_WEBHOOK_SECRET": webhook_secret,
            "VAULT_SERVICE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        }
        os.environ.update(env)
        demo_link = prepare_app(agent_password, agent_totp_secret)
        write_env_file(
            DEV_ENV,
            {
                **env,
                "DEMO_AGENT_USERNAME": DEMO_AGENT,
                "DEMO_AGENT_PASSWORD": agent_password,
                "DEMO_AGENT_TOTP_SECRET": agent_totp_secret,
                "DEMO_SUBMISSION_LINK": demo_link,
            },
        )
        print(
            f"""
vault_service is starting on http://127.0.0.1:{port}   (OpenBao on {openbao.addr})
  agent login:       {DEMO_AGENT} / {agent_password}      -> http://127.0.0.1:{port}/login
  agent TOTP secret: {agent_totp_secret}   (for an authenticator app; or print a code:
    .venv/bin/python -c "import pyotp; print(pyotp.TOTP('{agent_totp_secret}').now())")
  ticket API token:  {api_token}
  webhook secret:    {webhook_secret}
  demo link:         {demo_link}   (ticket {DEMO_TICKET})
All of this is in var/dev.env. Ctrl-C stops the app and OpenBao; the data stays in var/.
""",
            flush=True,
        )
        return serve(port)
    finally:
        openbao.stop()


def prepare_app(agent_password: str, agent_totp_secret: str) -> str:
    """Create tables, the demo agent (with its TOTP secret) and a fresh demo link; return the
    link's URL."""
    from sqlalchemy import select

    from vault_service import create_app, schema
    from vault_service.extensions import current_settings, current_vault, db
    from vault_service.models import Agent, Ticket
    from vault_service.services.agents import (
        create_agent,
        get_agent,
        provision_totp,
        totp_secret_matches,
    )
    from vault_service.services.tickets import create_submission_link, link_url

    app = create_app()
    with app.app_context():
        schema.upgrade(db.engine)
        if db.session.scalar(select(Agent).where(Agent.username == DEMO_AGENT)) is None:
            create_agent(DEMO_AGENT, agent_password, "admin", actor="make-dev")
        db.session.rollback()
        # Enrolled with the secret in var/dev.env, so the demo logs in without a phone; a data
        # directory from before the second factor (or a lost dev.env) gets it provisioned anew.
        demo = get_agent(DEMO_AGENT)
        if demo is None:  # created just above; only a concurrent delete gets here
            raise RuntimeError(f"the demo agent {DEMO_AGENT!r} vanished while starting")
        if not totp_secret_matches(current_settings(), demo, agent_totp_secret):
            provision_totp(current_settings(), demo, agent_totp_secret, actor="make-dev")
        db.session.rollback()
        # A closed demo ticket takes no new links: start a fresh one instead.
        ticket_ref = DEMO_TICKET
        ticket_status = db.session.scalar(select(Ticket.status).where(Ticket.ref == ticket_ref))
        db.session.rollback()
        if ticket_status not in (None, "open"):
            ticket_ref = f"DEMO-{secrets.token_hex(3)}"
        _, token = create_submission_link(current_settings(), current_vault(), ticket_ref)
        return link_url(current_settings(), token)


def serve(port: int) -> int:
    """gunicorn with the purge worker inside the app process, until Ctrl-C."""
    env = dict(os.environ, VAULT_SERVICE_EMBEDDED_WORKER="1")
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "-c",
        "python:vault_service.gunicorn_conf",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--threads",
        "8",
        "--graceful-timeout",
        "5",
        "vault_service.wsgi:app",
    ]
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: process.terminate())
    return process.wait()


if __name__ == "__main__":
    sys.exit(main())
