"""The system under test: OpenBao (pebbledb), a database, the app under gunicorn, the worker.

Everything listens on free loopback ports, lives in a throwaway directory, uses throwaway
secrets, and is stopped by `close()` (call it in a finally).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import hvac
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from vault_service.devtools.embedded_openbao import EmbeddedOpenBao, bao_binary
from vault_service.devtools.processes import Process, free_port, start_gunicorn
from vault_service.vault import bootstrap_vault, issue_app_token

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
AGENT_USERNAME = "bench-agent"  # the first agent; concurrent clients are bench-agent-1, -2, ...


def agent_name(index: int) -> str:
    """One agent per client: a TOTP code is good once per agent and 30-second step."""
    return AGENT_USERNAME if index == 0 else f"{AGENT_USERNAME}-{index}"


# The production command (Dockerfile CMD) if it cannot be read: 2 gthread workers, 4 threads.
FALLBACK_GUNICORN_ARGS = [
    "vault_service.wsgi:app",
    "--workers",
    "2",
    "--worker-class",
    "gthread",
    "--threads",
    "4",
    "--timeout",
    "30",
    "--graceful-timeout",
    "30",
    "--worker-tmp-dir",
    "/dev/shm",  # noqa: S108 - the heartbeat directory, as in the Dockerfile
    "--no-control-socket",
    "--error-logfile",
    "-",
    "--log-level",
    "info",
]


def production_gunicorn_args() -> tuple[list[str], str]:
    """gunicorn's arguments exactly as the Dockerfile's CMD has them, without its --bind."""
    source = "Dockerfile CMD"
    try:
        dockerfile = (ROOT / "Dockerfile").read_text()
        match = re.search(r"^CMD\s+(\[.*?\])\s*$", dockerfile, re.MULTILINE | re.DOTALL)
        argv = json.loads(match.group(1).replace("\\\n", " ")) if match else None
    except (OSError, ValueError):
        argv = None
    if not argv or argv[0] != "gunicorn":
        argv, source = ["gunicorn", *FALLBACK_GUNICORN_ARGS], "built-in copy of the Dockerfile CMD"
    args = argv[1:]
    if "--bind" in args:
        index = args.index("--bind")
        del args[index : index + 2]
    return args, source


@dataclass
class Database:
    """A fresh database for one phase: a SQLite file, or a private PostgreSQL schema."""

    url: str
    kind: str
    # Each phase's database is its own deployment in the run's one OpenBao: a second database
    # under one deployment id is refused (services/deployment.py).
    deployment_id: str
    drop: str | None = None  # the PostgreSQL schema to drop at the end

    @classmethod
    def create(cls, directory: Path, name: str, postgres_url: str = "") -> Database:
        if not postgres_url:
            return cls(f"sqlite:///{directory / f'{name}.db'}", "sqlite", f"bench-{name}")
        # Never touch the given database's own tables: everything lives in a schema of ours,
        # selected per connection through search_path, and dropped afterwards.
        schema = f"vault_service_bench_{name}_{secrets.token_hex(4)}"
        engine = create_engine(postgres_url)
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
        url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
        return cls(url.render_as_string(hide_password=False), "postgresql", f"bench-{name}", schema)

    def dispose(self, postgres_url: str) -> None:
        if self.drop:
            engine = create_engine(postgres_url)
            with engine.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{self.drop}" CASCADE'))
            engine.dispose()


@dataclass
class Vault:
    """The OpenBao server: address, audit log, the floor's token (app policy only)."""

    server: EmbeddedOpenBao
    root_token: str
    floor_token: str
    role_id: str
    secret_id: str

    @property
    def addr(self) -> str:
        return self.server.addr

    @property
    def pid(self) -> int:
        return self.server.process.pid


def start_vault(directory: Path) -> Vault:
    """OpenBao with pebbledb storage and a file audit device, bootstrapped with AppRole."""
    server = EmbeddedOpenBao(directory / "openbao", free_port())
    server.start()
    try:
        init = server.ensure_initialized_and_unsealed()
        bootstrap_vault(server.addr, init.root_token, enable_approle=True)
        root = hvac.Client(url=server.addr, token=init.root_token, timeout=10)
        role_id = root.auth.approle.read_role_id("vault-service")["data"]["role_id"]
        secret_id = root.auth.approle.generate_secret_id("vault-service")["data"]["secret_id"]
        # The floor calls Vault as the app does: with a token holding only the app policy.
        floor = issue_app_token(server.addr, init.root_token, ttl_seconds=4 * 3600).token
    except BaseException:
        server.stop()
        raise
    return Vault(server, init.root_token, floor, role_id, secret_id)


def openbao_version() -> str:
    """`bao version`, for the report."""
    try:
        output = subprocess.run(
            [bao_binary(), "version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return "unknown"
    return output.strip().split(", build")[0]


@dataclass
class Secrets:
    """Throwaway secrets for one run: generated here, never printed, gone with the run."""

    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    ticket_api_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    webhook_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    agent_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def webhook_secret(self) -> str:
        return "whsec_" + base64.b64encode(self.webhook_key).decode()


def app_environment(vault: Vault, database: Database, run_dir: Path, keys: Secrets) -> dict:
    """The production configuration (VAULT_SERVICE_ENV=production, AppRole, https public URL)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VAULT_", "BAO_", "BENCH_"))
    }
    # The benchmark's own package for `python -m bench.worker`, after anything already on
    # PYTHONPATH (a patched copy of vault_service placed there is what gets measured).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(ROOT)]))
    env.update(
        {
            "VAULT_SERVICE_ENV": "production",
            "VAULT_SERVICE_DATABASE_URL": database.url,
            "VAULT_SERVICE_VAR_DIR": str(run_dir),
            "VAULT_SERVICE_SECRET_KEY": keys.secret_key,
            "VAULT_SERVICE_TICKET_API_TOKEN": keys.ticket_api_token,
            "VAULT_SERVICE_WEBHOOK_SECRET": keys.webhook_secret,
            # Production refuses http; links come back as https://bench.invalid/s/<token> and the
            # benchmark strips the origin and calls gunicorn on loopback.
            "VAULT_SERVICE_PUBLIC_URL": "https://bench.invalid",
            "VAULT_SERVICE_DEPLOYMENT_ID": database.deployment_id,
            "VAULT_ADDR": vault.addr,
            "VAULT_SERVICE_VAULT_ROLE_ID": vault.role_id,
            "VAULT_SERVICE_VAULT_SECRET_ID": vault.secret_id,
            # Two production settings a load test must lift, and only these: the per-address
            # rate limits (every benchmark client is 127.0.0.1; the limiter still runs and
            # counts, so its cost is measured) and the 5-minute re-prompt for a code before
            # reveals and access requests (a run would otherwise stop to type one).
            "VAULT_SERVICE_RATELIMIT_LOGIN": "100000/minute",
            "VAULT_SERVICE_RATELIMIT_LINK": "100000/minute",
            "VAULT_SERVICE_RATELIMIT_API": "100000/minute",
            "VAULT_SERVICE_RATELIMIT_WEBHOOK": "100000/minute",
            "VAULT_SERVICE_REAUTH_SECONDS": "3600",
        }
    )
    return env


class App:
    """The app under gunicorn (production command) and the driven purge worker, on one database."""

    def __init__(self, env: dict, run_dir: Path, name: str, wsgi: str | None = None):
        self.env = env
        self.run_dir = run_dir
        self.name = name
        self.wsgi = wsgi
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.gunicorn: Process | None = None
        self.worker: Process | None = None
        self.gunicorn_source = ""

    def vault_service(self, *args: str, stdin: str | None = None) -> None:
        """Run a `vault-service` command against this app's database."""
        completed = subprocess.run(
            [str(BIN / "vault-service"), *args],
            input=stdin,
            env=self.env,
            cwd=self.run_dir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"vault-service {args[0]} failed: {completed.stderr[-2000:]}")

    def prepare(self, agent_password: str, agents: int = 1) -> None:
        """Create the schema (`vault-service init-db`) and the benchmark's agents."""
        self.vault_service("init-db")
        self.vault_service(
            "create-agent", AGENT_USERNAME, "--password-stdin", stdin=agent_password + "\n"
        )
        if agents > 1:
            # The others through the same service function in one process (a `vault-service`
            # process per agent would take a second each).
            create_agents(self.env, [agent_name(k) for k in range(1, agents)], agent_password)

    def start(self) -> None:
        args, self.gunicorn_source = production_gunicorn_args()
        if self.wsgi:
            args[args.index("vault_service.wsgi:app")] = self.wsgi
        self.gunicorn = start_gunicorn(
            args,
            port=self.port,
            log_path=self.run_dir / f"{self.name}-gunicorn.log",
            env=self.env,
            cwd=self.run_dir,
            ready_path="/readyz",
            timeout=60,
        )
        self.worker = self.spawn_worker("worker")

    def spawn_worker(self, label: str) -> Process:
        """One more driven worker process on this app's database (the mass close runs several)."""
        worker = Process(
            label,
            [sys.executable, "-m", "bench.worker"],
            self.run_dir / f"{self.name}-{label}.log",
            env=self.env,
            cwd=self.run_dir,
            pipe_stdio=True,
        )
        ready = json.loads(worker.popen.stdout.readline() or "{}")
        if not ready.get("ready"):
            worker.stop(5)
            raise RuntimeError(f"the worker did not start; see {self.name}-{label}.log")
        return worker

    def gunicorn_worker_pids(self) -> list[int]:
        import psutil

        return [child.pid for child in psutil.Process(self.gunicorn.pid).children()]

    def command(self, line: str) -> dict:
        """Send one command to the worker and wait for its answer."""
        send_command(self.worker, line)
        return read_answer(self.worker, line)

    def stop(self) -> None:
        if self.worker is not None:
            stop_worker(self.worker)
        if self.gunicorn is not None:
            self.gunicorn.stop(20)


def send_command(worker: Process, line: str) -> None:
    """One command line to a driven worker (bench/worker.py); read_answer() waits for it."""
    worker.popen.stdin.write(line + "\n")
    worker.popen.stdin.flush()


def read_answer(worker: Process, line: str) -> dict:
    answer = json.loads(worker.popen.stdout.readline() or '{"error": "worker died"}')
    if "error" in answer:
        raise RuntimeError(f"worker {line!r}: {answer['error']}")
    return answer


def stop_worker(worker: Process) -> None:
    """Ask a driven worker to quit, then make sure it has."""
    if worker.poll() is None:
        try:
            worker.popen.stdin.write("quit\n")
            worker.popen.stdin.close()
            worker.popen.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            pass
    worker.stop(20)


def create_agents(env: dict, usernames: list[str], password: str) -> None:
    """Agents created by vault_service's own service function, on the app's database."""
    import logging

    from vault_service import create_app
    from vault_service.config import load_settings
    from vault_service.extensions import db
    from vault_service.services.agents import create_agent

    app = create_app(load_settings(env))
    logging.getLogger("vault_service").handlers.clear()  # its log lines are not ours to print
    with app.app_context():
        for username in usernames:
            create_agent(username, password, "agent", actor="bench")
        db.session.remove()
        db.engine.dispose()


def make_run_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="vault-service-bench-"))


def remove_run_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
