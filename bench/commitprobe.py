"""The cost of one durable commit on the benchmark's database, for the sequential budget.

A submission and a reveal each end in one durable commit (SQLite with synchronous=FULL: an
fsync of the WAL; PostgreSQL: a WAL flush) that no floor pays, since the floor keeps no record.
It is measured where the app's database lives (a sibling SQLite file in the same directory, on
the same filesystem, opened with the app's own connection settings; or a schema of its own on
the same PostgreSQL server): a one-row insert and its commit, repeated.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.stack import Database
from vault_service.sqlite import configure_sqlite


def durable_commit_seconds(run_dir: Path, postgres_url: str, samples: int = 200) -> list[float]:
    """Seconds per one-row write transaction, begin to durable commit, `samples` times."""
    database = Database.create(run_dir, "commit-probe", postgres_url)
    engine = create_engine(database.url)
    if database.kind == "sqlite":
        configure_sqlite(engine)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE commit_probe (id INTEGER PRIMARY KEY, at TEXT)"))
        seconds = []
        for index in range(samples):
            started = time.perf_counter()
            with engine.begin() as connection:
                connection.execute(
                    text("INSERT INTO commit_probe (id, at) VALUES (:id, :at)"),
                    {"id": index, "at": time.strftime("%Y-%m-%dT%H:%M:%S")},
                )
            seconds.append(time.perf_counter() - started)
        return seconds
    finally:
        engine.dispose()
        database.dispose(postgres_url)
