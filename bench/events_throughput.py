"""`python -m bench.events_throughput`: outbound event deliveries per second to a loopback receiver.

What it measures: the worker's own loop (`jobs.process_due_jobs`: claim, sign, POST, complete),
one process, against an http.server receiver on 127.0.0.1 that answers 204, with the events
spread over tickets as real traffic would be (each ticket's events in order). Also the cost of
`emit` inside a transaction. No Vault is involved: neither enqueuing nor delivering calls it
(tests/test_events.py proves that against OpenBao), so none is started.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from vault_service import create_app, schema
from vault_service.config import load_settings
from vault_service.devtools.processes import free_port
from vault_service.extensions import current_settings, current_vault, db
from vault_service.models import Ticket
from vault_service.services import events, jobs
from vault_service.transactions import transaction


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver behind a proxy would

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def measure(events_count: int = 2000, tickets: int = 50, database_url: str = "") -> dict:
    """Enqueue `events_count` events over `tickets` tickets, deliver them all; the figures."""
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    directory = Path(tempfile.mkdtemp(prefix="events-bench-"))
    settings = load_settings(
        {},
        env="testing",
        database_url=database_url or f"sqlite:///{directory / 'bench.db'}",
        secret_key=secrets.token_urlsafe(48),
        ticket_api_tokens=(secrets.token_urlsafe(32),),
        vault_token="unused-no-vault-call-is-made",  # noqa: S106 - never sent anywhere
        events_url=f"http://127.0.0.1:{port}/hooks",
        events_secrets=(secrets.token_bytes(32),),
        log_level="WARNING",
        deployment_id="bench-deliveries",  # its own database, its own deployment (no Vault call)
    )
    app = create_app(settings)
    try:
        with app.app_context():
            schema.upgrade(db.engine)
            with transaction() as session:
                run = secrets.token_hex(4)  # a reused database keeps earlier runs' tickets
                refs = [f"BENCH-{run}-{n}" for n in range(tickets)]
                session.add_all(Ticket(ref=ref) for ref in refs)

            # What emit adds to a state change's transaction: its statements, not the commit,
            # which the change pays anyway. Half the events are enqueued so, in one transaction...
            half = events_count // 2
            with transaction():
                started = time.perf_counter()
                for n in range(half):
                    events.emit(
                        events.EventType.CREDENTIALS_REVEALED, refs[n % len(refs)], agent="a"
                    )
                emit_seconds = time.perf_counter() - started
            # ...and half with a commit each, as each state change commits its own.
            started = time.perf_counter()
            for n in range(half, events_count):
                with transaction():
                    events.emit(
                        events.EventType.CREDENTIALS_REVEALED, refs[n % len(refs)], agent="a"
                    )
            commit_seconds = time.perf_counter() - started

            started = time.perf_counter()
            delivered = 0
            while delivered < events_count:
                done = jobs.process_due_jobs(current_settings(), current_vault(), limit=500)
                if not done:
                    raise RuntimeError("deliveries stopped before all events were delivered")
                delivered += done[events.EVENT_DELIVERY_JOB]
            deliver_seconds = time.perf_counter() - started
            db.session.remove()
            db.engine.dispose()
    finally:
        server.shutdown()
    return {
        "events": events_count,
        "tickets": tickets,
        "database": settings.database_url.split(":", 1)[0].split("+")[0],
        "emit_ms_in_transaction": emit_seconds / half * 1000,
        "emit_ms_with_own_commit": commit_seconds / (events_count - half) * 1000,
        "deliveries_per_s": events_count / deliver_seconds,
        "deliver_seconds": deliver_seconds,
    }


def main() -> None:
    """Enqueue, deliver, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--tickets", type=int, default=50)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args()
    figures = measure(args.events, args.tickets, args.database_url or "")
    print(
        f"{figures['events']} events over {figures['tickets']} tickets, {figures['database']}: "
        f"emit {figures['emit_ms_in_transaction']:.2f} ms/event inside a transaction "
        f"({figures['emit_ms_with_own_commit']:.2f} ms with its own commit); "
        f"delivered {figures['deliveries_per_s']:.0f}/s by one worker "
        f"({figures['deliver_seconds']:.1f} s, receiver on 127.0.0.1 answering 204)"
    )


if __name__ == "__main__":
    main()
