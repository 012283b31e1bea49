"""Profiles for missed targets: the same lifecycle in-process under pyinstrument.

The app is built from the benchmark's production environment and driven through Flask's test
client (no gunicorn, no sockets in front), so the profile shows the service's own code: views,
services, SQLAlchemy, hvac. Each operation gets its own profiler, started and stopped around
each request and combined over all iterations; the reports (call tree and flat self-time) are
written beside the results.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from pyinstrument import Profiler

from bench.client import enrolment_secret, throwaway_items, totp_code
from bench.stack import AGENT_USERNAME, Secrets
from vault_service.services.providers.standard_webhooks import signed_headers


def _hidden(page: str, name: str) -> str:
    marker = f'name="{name}" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def profile_lifecycle(
    env: dict,
    keys: Secrets,
    operations: list[str],
    iterations: int,
    output: Path,
    log_file: Path,
    make_profiler=None,
) -> dict[str, str]:
    """Profile `operations` of `iterations` lifecycles; returns {operation: report file}.

    `make_profiler` builds each operation's profiler (pyinstrument's by default): anything with
    start(), stop() and output_text() will do (bench/roundtrips.py counts round trips so)."""
    from vault_service import create_app
    from vault_service.config import load_settings
    from vault_service.extensions import current_settings, current_vault, db
    from vault_service.services import jobs

    app = create_app(load_settings(env))
    # The app logs to stderr; keep the benchmark's output readable.
    stream = open(log_file, "a")  # noqa: SIM115 - closed below
    for handler in logging.getLogger("vault_service").handlers:
        handler.setStream(stream)
    client = app.test_client()
    api = {"Authorization": f"Bearer {keys.ticket_api_token}"}
    page = client.get("/login").get_data(as_text=True)
    form = {
        "username": AGENT_USERNAME,
        "password": keys.agent_password,
        "csrf_token": _hidden(page, "csrf_token"),
    }
    response = client.post("/login", data=form)
    if response.status_code != 302:
        raise RuntimeError("profile: login failed")
    location = urlsplit(response.headers.get("Location", "")).path
    if location.startswith("/account/"):  # a new agent sets up its second factor first
        page = client.get(location).get_data(as_text=True)
        code = totp_code(enrolment_secret(page))
        client.post(location, data={"code": code, "csrf_token": _hidden(page, "csrf_token")})
    csrf = _hidden(client.get("/").get_data(as_text=True), "csrf_token")

    make_profiler = make_profiler or (lambda: Profiler(interval=0.0002))
    profilers = {op: make_profiler() for op in operations}

    def run(op: str, keep: bool, expect: int, action, *args, **kwargs):
        """One request (or purge) under the operation's profiler; checks the outcome."""
        profiler = profilers.get(op) if keep else None
        if profiler:
            profiler.start()
        try:
            result = action(*args, **kwargs)
        finally:
            if profiler:
                profiler.stop()
        outcome = result if isinstance(result, int) else result.status_code
        if outcome != expect:
            raise RuntimeError(f"profile {op}: expected {expect}, got {outcome}")
        return result

    def do_purge() -> int:
        with app.app_context():
            try:
                done = jobs.process_due_jobs(current_settings(), current_vault(), limit=1)
                return sum(done.values())
            finally:
                db.session.remove()

    def close(ref: str):
        body = json.dumps({"type": "ticket.closed", "data": {"ticket_ref": ref}}).encode()
        headers = signed_headers([keys.webhook_key], body)
        return client.post("/api/v1/webhooks/ticket-events", data=body, headers=headers)

    warmup = 3
    for index in range(warmup + iterations):
        keep = index >= warmup
        ref = f"PR-{uuid.uuid4().hex[:8]}"
        items, _ = throwaway_items(2)
        link = run("create_link", keep, 201, client.post,
                   f"/api/v1/tickets/{ref}/submission-links", headers=api)  # fmt: skip
        path = urlsplit(link.get_json()["url"]).path
        run("submit", keep, 201, client.post, path, json={"items": items})
        access = {"reason": "profile", "duration_minutes": "30", "csrf_token": csrf}
        run("request_access", keep, 302, client.post, f"/tickets/{ref}/access", data=access)
        page = run("ticket_page", keep, 200, client.get, f"/tickets/{ref}")
        reveal = {"grant_id": _hidden(page.get_data(as_text=True), "grant_id"), "csrf_token": csrf}
        run("reveal", keep, 200, client.post, f"/tickets/{ref}/reveal", data=reveal)
        run("close", keep, 202, close, ref)
        run("purge", keep, 1, do_purge)
        run("ticket_api", keep, 200, client.get, f"/api/v1/tickets/{ref}", headers=api)
    stream.close()

    written = {}
    for op, profiler in profilers.items():
        path = output.with_name(f"{output.name}-profile-{op}.txt")
        tree = profiler.output_text(unicode=True, show_all=False)
        flat = profiler.output_text(unicode=True, flat=True)
        path.write_text(f"# {op}: {iterations} requests, call tree\n\n{tree}\n\n"
                        f"# {op}: self time by function\n\n{flat}\n")  # fmt: skip
        written[op] = str(path)
    return written


def main(make_profiler=None) -> int:
    """`python -m bench.profile [operation ...]`: profile a lifecycle on its own stack."""
    import os
    import sys
    from datetime import UTC, datetime

    from bench.stack import (
        ROOT,
        App,
        Database,
        app_environment,
        make_run_dir,
        remove_run_dir,
        start_vault,
    )

    operations = sys.argv[1:] or ["create_link", "submit", "request_access", "reveal", "purge"]
    iterations = int(os.environ.get("BENCH_PROFILE_ITERATIONS") or 30)
    postgres = os.environ.get("VAULT_SERVICE_BENCH_DATABASE_URL", "")
    out_dir = Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "bench" / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = make_run_dir()
    vault = database = None
    try:
        vault = start_vault(run_dir)
        keys = Secrets()
        database = Database.create(run_dir, "profile", postgres)
        env = app_environment(vault, database, run_dir, keys)
        App(env, run_dir, "profile").prepare(keys.agent_password)
        log_file = run_dir / "profile-app.log"
        written = profile_lifecycle(
            env, keys, operations, iterations, output, log_file, make_profiler
        )
    finally:
        if vault is not None:
            vault.server.stop()
        if database is not None:
            database.dispose(postgres)
        remove_run_dir(run_dir)
    for op, path in written.items():
        print(f"{op}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
