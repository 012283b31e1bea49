"""One deployment under test: processes, database, the ticket system's and customer's HTTP calls.

Its own Vault and SQLite database, gunicorn, the worker and the CLI started against them, and the
database read directly; shared by test_process_faults.py and test_events.py. A module of its own
rather than part of helpers.py: it is one large group that belongs together."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import hvac
import requests
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from vault_service import schema
from vault_service.devtools.embedded_openbao import EmbeddedOpenBao
from vault_service.devtools.processes import Process, free_port, start_gunicorn
from vault_service.models import AuditEvent, CredentialItem, Job, Lease, SubmissionLink, Ticket
from vault_service.services.providers.standard_webhooks import sign

from .conftest import SAMPLE_ITEMS
from .helpers import ROOT, make_child_environment, use_deployment

T = TypeVar("T")

BIN = Path(sys.executable).parent
# What a submission stores: SAMPLE_ITEMS plus the notes, kept as an item of their own.
NOTES = "use the staging site"
STORED_ITEMS = len(SAMPLE_ITEMS) + 1


def wait_for(check: Callable[[], T | None], timeout: float, what: str, *logs: Process) -> T:
    """Poll `check` until it returns something truthy; fail with the processes' logs if not."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name} ---\n{p.log_tail()}" for p in logs)
            raise AssertionError(f"no {what} within {timeout:.0f}s\n{tails}")
        time.sleep(0.1)


@dataclass
class DedicatedVault:
    """A deployment's own OpenBao: its process, root token and unseal key, and an app token."""

    server: EmbeddedOpenBao
    root_token: str
    unseal_key: str
    app_token: str

    @property
    def addr(self) -> str:
        return self.server.addr

    def admin(self) -> hvac.Client:
        return hvac.Client(url=self.addr, token=self.root_token, timeout=10)

    def take_down(self, outage: str) -> None:
        """`stopped`: the process exits (SIGTERM); `sealed`: it runs but serves nothing."""
        if outage == "stopped":
            self.server.stop()
        else:
            self.server.seal(self.root_token)

    def bring_back(self) -> None:
        """Start it again on the same storage if it is not running, and unseal it."""
        if self.server.process is None or self.server.process.poll() is not None:
            self.server.start()
        self.server.unseal(self.unseal_key)


class Stack:
    """One deployment under test: a SQLite database, the app's environment, its processes, and
    the ticket system's and customer's HTTP calls."""

    def __init__(self, directory: Path, vault: DedicatedVault):
        self.directory = directory
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database_url = f"sqlite:///{directory / 'vault_service.db'}"
        self.engine = create_engine(self.database_url)
        schema.upgrade(self.engine)
        self.api_token = secrets.token_urlsafe(32)
        self.webhook_key = secrets.token_bytes(32)
        inherited = make_child_environment()
        # A deployment id of its own: every stack has a fresh database on the module's OpenBao.
        self.deployment_id = "t-" + secrets.token_hex(8)
        use_deployment(self.deployment_id)
        self.env = {
            **inherited,
            "VAULT_SERVICE_ENV": "testing",
            "VAULT_SERVICE_DATABASE_URL": self.database_url,
            "VAULT_ADDR": vault.addr,
            "VAULT_SERVICE_VAULT_TOKEN": vault.app_token,
            "VAULT_SERVICE_SECRET_KEY": secrets.token_urlsafe(48),
            "VAULT_SERVICE_TICKET_API_TOKEN": self.api_token,
            "VAULT_SERVICE_WEBHOOK_SECRET": "whsec_" + base64.b64encode(self.webhook_key).decode(),
            "VAULT_SERVICE_PUBLIC_URL": self.base,
            "VAULT_SERVICE_DEPLOYMENT_ID": self.deployment_id,
        }
        self.processes: list[Process] = []

    # processes

    def _log_path(self, name: str) -> Path:
        return self.directory / f"{name}-{len(self.processes)}.log"

    def start_app(self, *, workers: int = 1, threads: int = 4, **env: str) -> Process:
        """gunicorn on this stack's port; returns once /healthz answers."""
        args = ["--workers", str(workers), "--threads", str(threads), "vault_service.wsgi:app"]
        log = self._log_path("gunicorn")
        app = start_gunicorn(args, port=self.port, log_path=log, env={**self.env, **env}, cwd=ROOT)
        self.processes.append(app)
        return app

    def start_worker(self, **env: str) -> Process:
        argv = [str(BIN / "vault-service"), "worker"]
        worker = Process(
            "worker", argv, self._log_path("worker"), env={**self.env, **env}, cwd=ROOT
        )
        self.processes.append(worker)
        return worker

    def run_cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "vault-service"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.engine.dispose()

    # the ticket system and the customer, over HTTP

    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"}

    def create_link(self, ref: str) -> str:
        response = requests.post(
            f"{self.base}/api/v1/tickets/{ref}/submission-links",
            headers=self.api_headers(),
            timeout=15,
        )
        assert response.status_code == 201, response.text
        return response.json()["url"]

    def submit(self, url: str, timeout: float = 30) -> requests.Response:
        return requests.post(url, json={"items": SAMPLE_ITEMS, "notes": NOTES}, timeout=timeout)

    def submit_ok(self, url: str) -> None:
        response = self.submit(url)
        assert response.status_code == 201, response.text
        assert response.json()["item_count"] == STORED_ITEMS

    def close_delivery(self, ref: str, webhook_id: str | None = None) -> tuple[bytes, dict]:
        """Body and headers of one signed ticket.closed delivery."""
        body = json.dumps({"type": "ticket.closed", "data": {"ticket_ref": ref}}).encode()
        webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(self.webhook_key, webhook_id, stamp, body),
        }
        return body, headers

    def post_delivery(self, body: bytes, headers: dict, timeout: float = 15) -> requests.Response:
        return requests.post(
            f"{self.base}/api/v1/webhooks/ticket-events",
            data=body,
            headers=headers,
            timeout=timeout,
        )

    def close_ticket(self, ref: str, webhook_id: str | None = None) -> requests.Response:
        return self.post_delivery(*self.close_delivery(ref, webhook_id))

    def status(self, ref: str) -> dict:
        response = requests.get(
            f"{self.base}/api/v1/tickets/{ref}", headers=self.api_headers(), timeout=15
        )
        assert response.status_code == 200, response.text
        return response.json()

    # the database, read directly

    def lease(self, ref: str) -> Lease:
        with Session(self.engine) as session:
            return session.scalars(
                select(Lease).join(Ticket, Lease.ticket_id == Ticket.id).where(Ticket.ref == ref)
            ).one()

    def jobs(self, ref: str) -> list[Job]:
        with Session(self.engine) as session:
            return list(
                session.scalars(
                    select(Job).join(Ticket, Job.ticket_id == Ticket.id).where(Ticket.ref == ref)
                )
            )

    def only_job(self, ref: str) -> Job:
        jobs = self.jobs(ref)
        assert len(jobs) == 1, f"{len(jobs)} purge jobs for {ref}"
        return jobs[0]

    def completed_job(self, ref: str) -> Job | None:
        job = self.only_job(ref)
        return job if job.completed_at is not None else None

    def audit_count(self, action: str, ref: str) -> int:
        with Session(self.engine) as session:
            return session.scalar(
                select(func.count(AuditEvent.id)).where(
                    AuditEvent.action == action, AuditEvent.ticket_ref == ref
                )
            )

    def credential_item_count(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.count(CredentialItem.id)))

    def links(self) -> list[SubmissionLink]:
        with Session(self.engine) as session:
            return list(session.scalars(select(SubmissionLink)))
