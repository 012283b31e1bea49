"""The scale curve: the dashboard, the ticket API and a sweep pass with 1k, 10k, 100k tickets.

Tickets are seeded straight into the app's tables with SQLAlchemy Core bulk inserts, shaped like
real history: most tickets purged (lease purged, link consumed, an expired grant whose token was
erased, a completed purge job with its receipt, the webhook delivery), a few hundred open with
credential items and real Vault material (transit key, lease token and entity, KV entries, a
live grant for some), made directly with hvac, so the orphan sweep lists what a live system holds.
The sweep then has nothing to do, which is the state it spends nearly all its time in.
"""

from __future__ import annotations

import random
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

from bench import pyspy
from bench.auditlog import AuditLog
from bench.client import Client, throwaway_items
from bench.floor import Floor, FloorLease
from bench.procs import MemorySampler, group_cpu_seconds
from bench.stack import AGENT_USERNAME, App, Database, Secrets
from bench.stats import most_common
from vault_service.models import (
    Agent,
    CredentialItem,
    Grant,
    Job,
    Lease,
    SubmissionLink,
    Ticket,
    WebhookDelivery,
)
from vault_service.services.dashboard import PAGE_SIZE as DASHBOARD_PAGE_SIZE

BATCH = 5000


def _receipt(ref: str, lease_id: str, closed: datetime, purged: datetime) -> dict:
    """A receipt shaped like the purge job's (sizes matter for the ticket API, not values)."""
    accessors = [secrets.token_urlsafe(18) for _ in range(2)]
    return {
        "ticket_ref": ref,
        "lease_id": lease_id,
        "reason": "ticket_closed",
        "requested_at": closed.isoformat(),
        "completed_at": purged.isoformat(),
        "destroyed": {
            "kv_entries": 2,
            "credential_records": 2,
            "transit_key": f"ticket-{lease_id}",
            "identity_entity": str(uuid.uuid4()),
            "tokens_revoked": 2,
            "token_accessors": accessors,
        },
        "verified_absent_in_vault": True,
        "audit_record_hash": secrets.token_hex(32),
    }


class Seeder:
    """Adds tickets to a database until it holds a given number."""

    def __init__(self, database: Database, open_tickets: int, floors: list[Floor], seed: int = 7):
        self.engine = create_engine(database.url)
        self.kind = database.kind
        self.open_tickets = open_tickets
        self.floors = floors
        self.random = random.Random(seed)
        self.refs: list[str] = []
        self.material: dict[int, FloorLease] = {}
        with self.engine.connect() as connection:
            self.agent_id = connection.scalar(
                select(Agent.id).where(Agent.username == AGENT_USERNAME)
            )
            self.existing = connection.scalar(select(func.count()).select_from(Ticket)) or 0

    def grow_to(self, total: int) -> float:
        """Seed until the database holds `total` tickets; returns the seconds it took."""
        started = time.perf_counter()
        now = datetime.now(UTC)
        self._provision(range(self.existing, min(total, self.open_tickets)))
        rows: dict[str, list[dict]] = {}
        while self.existing < total:
            index = self.existing
            if index < self.open_tickets:
                self._open_ticket(rows, index, now)
            else:
                self._purged_ticket(rows, index, now)
            self.existing += 1
            if len(rows["tickets"]) >= BATCH:
                self._flush(rows)
        self._flush(rows)
        if self.kind == "postgresql":
            # Autovacuum would have analysed tables this size long before anyone looked.
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("ANALYZE"))
        return time.perf_counter() - started

    def _provision(self, indexes: range) -> None:
        """Vault material of open tickets, made as the service makes it (one thread per floor)."""

        def provision(floor: Floor, share: list[int]) -> None:
            for index in share:
                items, _ = throwaway_items(2)
                lease = floor.create_link(lease_id=str(uuid.uuid4()))
                floor.submit(lease, items)
                if index % 3 == 0:  # a live grant; the sweep leaves it alone
                    floor.request_access(lease, ttl_seconds=4 * 3600)
                self.material[index] = lease

        shares = [list(indexes)[k :: len(self.floors)] for k in range(len(self.floors))]
        with ThreadPoolExecutor(max_workers=len(self.floors)) as pool:
            futures = [
                pool.submit(provision, f, s) for f, s in zip(self.floors, shares, strict=True)
            ]
            for future in futures:
                future.result()

    def _common(self, rows: dict, index: int, created: datetime, lease_id: str) -> str:
        """The ticket and its (consumed) link; returns the ticket id."""
        ref = f"H-{index:07d}"
        self.refs.append(ref)
        ticket_id = str(uuid.uuid4())
        rows.setdefault("tickets", []).append(
            {"id": ticket_id, "ref": ref, "created_at": created, "status": "open"}
        )
        rows.setdefault("links", []).append(
            {
                "id": str(uuid.uuid4()),
                "ticket_id": ticket_id,
                "lease_id": lease_id,
                "token_hash": secrets.token_hex(32),
                "created_at": created,
                "expires_at": created + timedelta(hours=72),
                "consumed_at": created + timedelta(hours=1),
            }
        )
        return ticket_id

    def _open_ticket(self, rows: dict, index: int, now: datetime) -> None:
        lease = self.material.pop(index)
        created = now - timedelta(hours=self.random.uniform(1, 20 * 24))
        ticket_id = self._common(rows, index, created, lease.lease_id)
        link_id = rows["links"][-1]["id"]
        rows.setdefault("leases", []).append(
            {
                "id": lease.lease_id,
                "ticket_id": ticket_id,
                "status": "active",
                "created_at": created,
                "expires_at": created + timedelta(days=30),
                "token_accessor": lease.accessor,
                "entity_id": lease.entity_id,
                "token_ciphertext": lease.sealed_token,
            }
        )
        for position, (item_id, kind) in enumerate(
            zip(lease.item_ids, ("sftp", "admin_panel"), strict=True)
        ):
            rows.setdefault("items", []).append(
                {
                    "id": item_id,
                    "lease_id": lease.lease_id,
                    "link_id": link_id,
                    "kind": kind,
                    "position": position,
                    "created_at": created + timedelta(hours=1),
                }
            )
        for accessor, sealed in lease.grants:
            rows.setdefault("grants", []).append(
                {
                    "id": str(uuid.uuid4()),
                    "lease_id": lease.lease_id,
                    "agent_id": self.agent_id,
                    "reason": "seeded",
                    "created_at": now,
                    "expires_at": now + timedelta(hours=4),
                    "token_accessor": accessor,
                    "token_ciphertext": sealed,
                }
            )

    def _purged_ticket(self, rows: dict, index: int, now: datetime) -> None:
        lease_id = str(uuid.uuid4())
        created = now - timedelta(days=self.random.uniform(2, 90))
        closed, purged = created + timedelta(days=1), created + timedelta(days=1, minutes=1)
        ticket_id = self._common(rows, index, created, lease_id)
        ref = rows["tickets"][-1]["ref"]
        rows["tickets"][-1].update(status="purged", closed_at=closed, purged_at=purged)
        rows.setdefault("leases", []).append(
            {
                "id": lease_id,
                "ticket_id": ticket_id,
                "status": "purged",
                "created_at": created,
                "expires_at": created + timedelta(days=30),
                "token_accessor": secrets.token_urlsafe(18),
                "entity_id": str(uuid.uuid4()),
                "token_ciphertext": None,
                "purged_at": purged,
            }
        )
        # An expired grant whose wrapped token an earlier sweep erased.
        rows.setdefault("grants", []).append(
            {
                "id": str(uuid.uuid4()),
                "lease_id": lease_id,
                "agent_id": self.agent_id,
                "reason": "seeded history",
                "created_at": created + timedelta(hours=2),
                "expires_at": created + timedelta(hours=2, minutes=30),
                "token_accessor": secrets.token_urlsafe(18),
                "token_ciphertext": None,
            }
        )
        rows.setdefault("jobs", []).append(
            {
                "id": str(uuid.uuid4()),
                "kind": "purge",
                "payload": {"lease_id": lease_id, "reason": "ticket_closed"},
                "dedupe_key": lease_id,
                "ticket_id": ticket_id,
                "created_at": closed,
                "attempts": 1,
                "next_attempt_at": closed,
                "completed_at": purged,
                "result": _receipt(ref, lease_id, closed, purged),
            }
        )
        rows.setdefault("deliveries", []).append(
            {
                "webhook_id": f"msg_{uuid.uuid4().hex}",
                "event_type": "ticket.closed",
                "received_at": closed,
            }
        )

    def _flush(self, rows: dict) -> None:
        tables = [
            ("tickets", Ticket),
            ("leases", Lease),
            ("links", SubmissionLink),
            ("items", CredentialItem),
            ("grants", Grant),
            ("jobs", Job),
            ("deliveries", WebhookDelivery),
        ]
        with self.engine.begin() as connection:
            for key, model in tables:
                if rows.get(key):
                    connection.execute(model.__table__.insert(), rows[key])
        rows.clear()

    def dispose(self) -> None:
        self.engine.dispose()


# What the scale curve measures, and which process serves it.
SCALE_MEASUREMENTS = {
    "dashboard": "agent dashboard",
    "ticket_api": "ticket API",
    "sweep": "sweep pass (nothing to do)",
    "sweep_orphans": "sweep pass with the orphan sweep",
}


def measure_scale(
    app: App,
    database: Database,
    keys: Secrets,
    floors: list[Floor],
    audit: AuditLog,
    config: dict,
    sampler: MemorySampler,
    profile_prefix: Path | None = None,
) -> dict:
    """Latency of the dashboard, the ticket API and a sweep pass at each size, and peak RSS.

    The measurements take turns (dashboard, ticket API, sweep, sweep with orphans, again), so
    drift during a size touches each alike.
    """
    client = Client(app.base, keys.ticket_api_token, keys.webhook_key)
    client.login(AGENT_USERNAME, keys.agent_password)
    seeder = Seeder(database, config["scale_open"], floors)
    picker = random.Random(11)
    results: dict[str, dict] = {}

    def measure(name: str) -> tuple[float, float, int]:
        """One measurement: seconds, CPU seconds of the serving process(es), Vault calls."""
        in_worker = name.startswith("sweep")
        pids = [app.worker.pid] if in_worker else app.gunicorn_worker_pids()
        audit.take()
        before = group_cpu_seconds(pids)
        started = time.perf_counter()
        if name == "dashboard":
            page = client.dashboard()
            # One page of the paged dashboard (services/dashboard.py): every row links its ticket.
            if page.count('href="/tickets/') < min(config["scale_open"], DASHBOARD_PAGE_SIZE):
                raise RuntimeError("dashboard: open tickets missing")
        elif name == "ticket_api":
            client.ticket_status(picker.choice(seeder.refs))
        else:
            answer = app.command(name.replace("_", "-"))
            if any(answer["report"].values()):
                raise RuntimeError(f"the sweep had work to do: {answer['report']}")
        elapsed = answer["seconds"] if in_worker else time.perf_counter() - started
        return elapsed, group_cpu_seconds(pids) - before, len(audit.take())

    try:
        for position, size in enumerate(config["scale"]):
            seed_seconds = seeder.grow_to(size)
            client.fresh_connection()
            sampler.reset()
            samples: dict[str, list[float]] = {name: [] for name in SCALE_MEASUREMENTS}
            cpu = dict.fromkeys(SCALE_MEASUREMENTS, 0.0)
            calls: dict[str, list[int]] = {name: [] for name in SCALE_MEASUREMENTS}
            for round_index in range(config["scale_requests"] + 3):  # 3 rounds warm caches
                for name in SCALE_MEASUREMENTS:
                    elapsed, cpu_used, call_count = measure(name)
                    if round_index >= 3:
                        samples[name].append(elapsed)
                        cpu[name] += cpu_used
                        calls[name].append(call_count)
            results[str(size)] = {
                "seed_seconds": round(seed_seconds, 1),
                "samples": samples,
                "cpu_seconds": cpu,
                "vault_calls": {name: most_common(values) for name, values in calls.items()},
                "peak_rss_mib": sampler.peaks_mib(),
            }
            if profile_prefix and position in (0, len(config["scale"]) - 1):
                results[str(size)]["profile"] = _profile_size(
                    app, measure, profile_prefix, size, config["scale_requests"]
                )
    finally:
        seeder.dispose()
    return results


def _profile_size(app: App, measure, prefix: Path, size: int, rounds: int) -> dict:
    """The same measurements again, sampled by py-spy (gunicorn and the worker)."""
    raws = [
        prefix.with_name(f"{prefix.name}-pyspy-scale-{size}-{n}.txt") for n in ("app", "worker")
    ]
    rate = 250
    with (
        pyspy.record(app.gunicorn.pid, raws[0], rate, subprocesses=True),
        pyspy.record(app.worker.pid, raws[1], rate),
    ):
        time.sleep(1.5)  # py-spy attaches
        for _ in range(rounds):
            for name in SCALE_MEASUREMENTS:
                measure(name)
        time.sleep(0.5)
    # Both sweeps run `sweep`; the profile tells them apart only by what they call.
    requests = {"dashboard": rounds, "ticket_api": rounds, "sweep": 2 * rounds}
    table = pyspy.profile_table(raws, rate, requests)
    return {"rounds": rounds, "rate_hz": rate, "raw": [str(r) for r in raws], "table": table}
