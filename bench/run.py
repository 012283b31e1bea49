"""`python -m bench`: one run, one machine, every phase; results as JSON and Markdown.

Configuration (environment):

    BENCH_ITERATIONS=100            sequential lifecycles measured (after BENCH_WARMUP=5)
    BENCH_CONCURRENCY=8,32          concurrency levels (clients), each its own phase beside the
                                    floor at the same concurrency
    BENCH_CONCURRENT_LIFECYCLES=96  lifecycles driven at each level (at least 4 per client)
    BENCH_LARGE_PURGE=5             purges of a ticket with 10 items and 5 live grants
    BENCH_MASS_CLOSE=1000           tickets closed in one burst (a list, e.g. 1000,5000: the first
                                    size is drained by each worker count, larger ones by the most
                                    workers only, for the growth; empty or 0: skip the phase)
    BENCH_MASS_CLOSE_WORKERS=1,2,4  worker processes draining the queue
    BENCH_MASS_CLOSE_BURST=32       concurrent clients sending the close webhooks
    BENCH_EVENTS=100                submits and closes measured with outbound events on and off
                                    (two apps side by side, alternating; 0: skip the phase)
    BENCH_EVENTS_DELIVERIES=2000    events delivered to a loopback receiver (deliveries/s)
    BENCH_SCALE=1000,10000,100000   ticket counts of the scale curve (empty: skip it)
    BENCH_SCALE_OPEN=300            open tickets among them (the rest is purged history)
    BENCH_SCALE_REQUESTS=50         measurements per size and endpoint
    BENCH_PROFILE=1                 py-spy profiles of the app and the worker (0: none)
    BENCH_PROFILE_ITERATIONS=20     lifecycles sampled for the profile
    BENCH_RESULTS_DIR=bench/results
    BENCH_KEEP=1                    keep the throwaway run directory (logs) afterwards
    VAULT_SERVICE_BENCH_DATABASE_URL=postgresql+psycopg://...   PostgreSQL instead of SQLite
        (the benchmark works in a schema of its own and drops it; it never touches others)
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench import pyspy, report
from bench.auditlog import AuditLog
from bench.commitprobe import durable_commit_seconds
from bench.eventsphase import deliveries, drain_purges, events_on_off
from bench.floor import Floor
from bench.lifecycle import Lifecycles, profile_lifecycles
from bench.massclose import mass_close, summarize_rounds
from bench.procs import MemorySampler
from bench.scale import measure_scale
from bench.stack import (
    ROOT,
    App,
    Database,
    Secrets,
    app_environment,
    make_run_dir,
    openbao_version,
    production_gunicorn_args,
    remove_run_dir,
    start_vault,
)
from bench.stats import summarize


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def _ints(text: str) -> tuple[int, ...]:
    """Parse "1,8, 32" as (1, 8, 32): a list of sizes, sorted, duplicates dropped."""
    return tuple(sorted({int(part) for part in text.replace(",", " ").split()}))


@dataclass(frozen=True)
class BenchConfig:
    iterations: int = 100
    warmup: int = 5
    concurrency: tuple[int, ...] = (8, 32)
    concurrent_lifecycles: int = 96
    large_purge: int = 5
    large_purge_items: int = 10
    large_purge_grants: int = 5
    mass_close: tuple[int, ...] = (1000,)
    mass_close_workers: tuple[int, ...] = (1, 2, 4)
    mass_close_burst: int = 32
    events: int = 100
    events_deliveries: int = 2000
    scale: tuple[int, ...] = (1000, 10000, 100000)
    scale_open: int = 300
    scale_requests: int = 50
    profile: bool = True
    profile_iterations: int = 20
    results_dir: str = str(ROOT / "bench" / "results")
    keep: bool = False
    database_url: str = field(default="", repr=False)

    @classmethod
    def from_env(cls) -> BenchConfig:
        scale = os.environ.get("BENCH_SCALE", "1000,10000,100000")
        levels = os.environ.get("BENCH_CONCURRENCY") or "8,32"
        return cls(
            iterations=_int("BENCH_ITERATIONS", cls.iterations),
            warmup=_int("BENCH_WARMUP", cls.warmup),
            concurrency=_ints(levels),
            concurrent_lifecycles=_int("BENCH_CONCURRENT_LIFECYCLES", cls.concurrent_lifecycles),
            large_purge=_int("BENCH_LARGE_PURGE", cls.large_purge),
            mass_close=tuple(n for n in _ints(os.environ.get("BENCH_MASS_CLOSE", "1000")) if n),
            mass_close_workers=_ints(os.environ.get("BENCH_MASS_CLOSE_WORKERS") or "1,2,4"),
            mass_close_burst=_int("BENCH_MASS_CLOSE_BURST", cls.mass_close_burst),
            events=_int("BENCH_EVENTS", cls.events),
            events_deliveries=_int("BENCH_EVENTS_DELIVERIES", cls.events_deliveries),
            scale=_ints(scale),
            scale_open=_int("BENCH_SCALE_OPEN", cls.scale_open),
            scale_requests=_int("BENCH_SCALE_REQUESTS", cls.scale_requests),
            profile=os.environ.get("BENCH_PROFILE", "1") not in ("0", "false"),
            profile_iterations=_int("BENCH_PROFILE_ITERATIONS", cls.profile_iterations),
            results_dir=os.environ.get("BENCH_RESULTS_DIR") or cls.results_dir,
            keep=os.environ.get("BENCH_KEEP", "") in ("1", "true"),
            database_url=os.environ.get("VAULT_SERVICE_BENCH_DATABASE_URL", ""),
        )

    def public(self) -> dict:
        """The configuration for the report: without the database URL (it may hold a password)."""
        values = asdict(self)
        values.pop("database_url")
        values["database"] = "postgresql" if self.database_url else "sqlite"
        return values


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _git() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "vault_service"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" + uncommitted changes in vault_service/" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _database_version(config: BenchConfig) -> str:
    if not config.database_url:
        return f"SQLite {sqlite3.sqlite_version}"
    from sqlalchemy import create_engine, text

    engine = create_engine(config.database_url)
    with engine.connect() as connection:
        version = connection.execute(text("SHOW server_version")).scalar()
    engine.dispose()
    return f"PostgreSQL {version}"


def machine_info(config: BenchConfig) -> dict:
    args, source = production_gunicorn_args()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "openbao": openbao_version(),
        "database": _database_version(config),
        "git": _git(),
        "gunicorn": " ".join(args),
        "gunicorn_source": source,
        # Anything else running shows here: the numbers are only as quiet as the machine.
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    config = BenchConfig.from_env()
    started = time.monotonic()
    stamp = datetime.now(UTC)
    out_dir = Path(config.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / stamp.strftime("%Y%m%dT%H%M%SZ")
    profiling = config.profile and pyspy.available()
    results: dict = {
        "started_at": stamp.isoformat(timespec="seconds"),
        "config": config.public(),
        "machine": machine_info(config),
    }
    summary: dict = {}
    run_dir = make_run_dir()
    sampler = MemorySampler()
    vault = None
    apps: list[App] = []
    databases: list[Database] = []
    failed = True
    try:
        log(f"OpenBao (pebbledb) in {run_dir}")
        vault = start_vault(run_dir)
        sampler.watch("openbao", [vault.pid])
        sampler.start()
        keys = Secrets()
        audit = AuditLog(vault.server.audit_log)

        def start_app(name: str, extra_env: dict | None = None) -> App:
            database = Database.create(run_dir, name, config.database_url)
            databases.append(database)
            env = {**app_environment(vault, database, run_dir, keys), **(extra_env or {})}
            app = App(env, run_dir, name)
            apps.append(app)
            burst = config.mass_close_burst if config.mass_close else 1
            app.prepare(keys.agent_password, agents=max(*config.concurrency, burst))
            app.start()
            sampler.watch("app (each gunicorn worker)", app.gunicorn_worker_pids())
            sampler.watch("worker", [app.worker.pid])
            sampler.reset()
            return app

        app = start_app("lifecycle")
        lifecycles = Lifecycles(app, vault.addr, vault.floor_token, vault.pid, audit, keys)
        log(f"sequential: {config.warmup} + {config.iterations} lifecycles beside the floor")
        sequential = lifecycles.sequential(config.iterations, config.warmup)
        summary["sequential"] = report.summarize_phase(sequential)
        log("durable commit: 200 one-row commits beside the app's database")
        summary["durable_commit"] = summarize(durable_commit_seconds(run_dir, config.database_url))
        concurrent: dict[int, dict] = {}
        summary["concurrent"] = {}
        for level in config.concurrency:
            count = max(config.concurrent_lifecycles, 4 * level)
            log(f"concurrent: {count} lifecycles, {level} clients, floor at {level} too")
            concurrent[level] = lifecycles.concurrent(count, level)
            summary["concurrent"][str(level)] = {
                "clients": level,
                "lifecycles": count,
                **report.summarize_phase(concurrent[level]),
            }
        if config.large_purge:
            log(f"large purge: {config.large_purge} tickets of 10 items and 5 live grants")
            summary["large_purge"] = report.summarize_large_purge(
                lifecycles.large_purge(
                    config.large_purge, config.large_purge_items, config.large_purge_grants
                ),
                config.large_purge_items,
                config.large_purge_grants,
            )
        if config.mass_close:
            log(
                f"mass close: {', '.join(map(str, config.mass_close))} tickets, "
                f"{config.mass_close_burst} clients closing, "
                f"{', '.join(map(str, config.mass_close_workers))} workers draining"
            )
            summary["mass_close"] = summarize_rounds(
                mass_close(
                    lifecycles, config.mass_close, config.mass_close_workers,
                    config.mass_close_burst,
                )
            )  # fmt: skip
        if config.events:
            log(f"events: {config.events} submits and closes with outbound events on and off")
            events_app = start_app(
                "events",
                {
                    # Enqueuing only: the receiver is never called in this phase (the driven
                    # worker is not asked to deliver), so it need not exist.
                    "VAULT_SERVICE_EVENTS_URL": "https://events.bench.invalid/hooks",
                    "VAULT_SERVICE_EVENTS_SECRET": keys.webhook_secret,
                },
            )
            summary["events"] = events_on_off(
                lifecycles,
                Lifecycles(events_app, vault.addr, vault.floor_token, vault.pid, audit, keys),
                config.events,
            )
            drain_purges(app)
            events_app.stop()
            log(f"events: {config.events_deliveries} deliveries to a receiver on loopback")
            delivery_db = Database.create(run_dir, "deliveries", config.database_url)
            databases.append(delivery_db)
            summary["events"]["delivery"] = deliveries(delivery_db.url, config.events_deliveries)
        summary["lifecycle_peak_rss_mib"] = sampler.peaks_mib()
        if profiling:
            log(f"profile: {config.profile_iterations} lifecycles under py-spy")
            summary["profile"] = profile_lifecycles(lifecycles, config.profile_iterations, prefix)
        results["raw_latencies_ms"] = {
            phase: {op: [round(x * 1000, 3) for x in rec.seconds] for op, rec in records.items()}
            for phase, records in (
                ("sequential", sequential),
                *((f"concurrent_{level}", records) for level, records in concurrent.items()),
            )
        }
        app.stop()

        if config.scale:
            app = start_app("scale")
            log(f"scale: {', '.join(map(str, config.scale))} tickets")
            deployment = app.env["VAULT_SERVICE_DEPLOYMENT_ID"]
            floors = [
                # Eight hvac clients provision the open tickets' Vault material.
                Floor(vault.addr, vault.floor_token, deployment)
                for _ in range(8)
            ]
            scale = measure_scale(
                app, databases[-1], keys, floors, audit, config.public(), sampler,
                prefix if profiling else None,
            )  # fmt: skip
            summary["scale"] = report.summarize_scale(scale)
            app.stop()
        failed = False
    finally:
        for running in apps:
            running.stop()
        sampler.stop()
        if vault is not None:
            vault.server.stop()
        for database in databases:
            database.dispose(config.database_url)
        if config.keep or failed:
            log(f"run directory kept (logs; throwaway secrets only): {run_dir}")
        else:
            remove_run_dir(run_dir)

    results["duration_seconds"] = time.monotonic() - started
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["summary"] = summary
    results["targets"] = [asdict(v) for v in report.verdicts(summary)]
    prefix.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = report.markdown(results)
    prefix.with_suffix(".md").write_text(table + "\n")
    print(table)
    log(f"results: {prefix}.json and .md ({results['duration_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
