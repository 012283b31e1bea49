"""Database round trips per operation on PostgreSQL: the profiled lifecycle, counted, not timed.

`python -m bench.roundtrips [operation ...]` (VAULT_SERVICE_BENCH_DATABASE_URL names the server)
drives the same in-process lifecycle as bench.profile and counts, per request, what psycopg
sends: every statement (SQLAlchemy's and the pool's pre-ping), and psycopg's own BEGIN, COMMIT
and ROLLBACK (it begins a transaction implicitly, before a transaction's first statement, and
never shows SQLAlchemy that as a statement). Pool checkouts are counted beside them. The counts
are deterministic, unlike timings on a shared machine; the table goes to stdout and each
operation's first request, statement by statement, to the report files.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter

import psycopg
from sqlalchemy import event
from sqlalchemy.pool import Pool

from bench import profile

# The counter of the request being run (set between start() and stop()), else None.
_current: list[Counter[str] | None] = [None]
_trace: list[str] = []
# One per operation, in the order bench.profile makes them: the operations' order.
_counters: list[RoundTrips] = []
CHECKOUT = "(pool checkout)"


def _shape(sql: object) -> str:
    """A statement's verb and table: enough to tell what it is, nothing of its values."""
    sql = " ".join(str(sql).split())
    match = re.match(r"(SELECT|INSERT INTO|UPDATE|DELETE FROM)\s+(.*)", sql, re.IGNORECASE)
    if not match:
        return sql[:60] or "(empty query: pre-ping)"
    verb, rest = match.group(1).upper().split()[0], match.group(2)
    table = re.search(r"\bFROM\s+(\w+)", sql) if verb == "SELECT" else re.match(r"(\w+)", rest)
    name = table.group(1) if table else rest[:40]
    extra = " FOR UPDATE" if " FOR UPDATE" in sql else ""
    extra += " RETURNING" if " RETURNING " in sql else ""
    return f"{verb} {name}{extra}"


def _note(what: str) -> None:
    counter = _current[0]
    if counter is not None:
        counter[what] += 1
        _trace.append(what)


def _install() -> None:
    """Count at psycopg's door: statements, and its own transaction commands (a private method,
    psycopg 3.3's; a bench tool may lean on it)."""
    execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
    command = psycopg.Connection._exec_command

    # Noted once sent, so that an implicit BEGIN (sent first, inside) is listed before it.
    def counted_execute(self, query, params=None, **kwargs):
        try:
            return execute(self, query, params, **kwargs)
        finally:
            _note(_shape(query))

    def counted_executemany(self, query, params_seq, **kwargs):
        try:
            return executemany(self, query, params_seq, **kwargs)
        finally:
            # psycopg 3 sends the rows in one pipeline: one round trip to wait for.
            _note(f"{_shape(query)} (executemany)")

    def counted_command(self, sql, *args, **kwargs):
        text = sql.decode() if isinstance(sql, bytes) else str(sql)
        _note(text.split()[0].upper() if text else "(empty command)")
        return command(self, sql, *args, **kwargs)

    psycopg.Cursor.execute = counted_execute
    psycopg.Cursor.executemany = counted_executemany
    psycopg.Connection._exec_command = counted_command
    event.listen(Pool, "checkout", lambda *_: _note(CHECKOUT))


class RoundTrips:
    """Stands in for a profiler: counts each request between start() and stop()."""

    def __init__(self) -> None:
        self.requests: list[Counter[str]] = []
        self.first: list[str] = []

    def start(self) -> None:
        self.requests.append(Counter())
        _trace.clear()
        _current[0] = self.requests[-1]

    def stop(self) -> None:
        _current[0] = None
        if len(self.requests) == 1:
            self.first = list(_trace)

    def totals(self) -> list[int]:
        return [sum(n for what, n in c.items() if what != CHECKOUT) for c in self.requests]

    def checkouts(self) -> list[int]:
        return [c[CHECKOUT] for c in self.requests]

    def output_text(self, flat: bool = False, **_: object) -> str:
        if not flat:
            return "\n".join(["(the first request, in order)", *self.first])
        return "\n".join(["(per request, on average)"] + [
            f"{n / len(self.requests):6.1f}  {what}"
            for what, n in sum(self.requests, Counter()).most_common()
        ])  # fmt: skip


def _spread(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def main() -> int:
    if not os.environ.get("VAULT_SERVICE_BENCH_DATABASE_URL"):
        print("bench.roundtrips counts PostgreSQL's: set VAULT_SERVICE_BENCH_DATABASE_URL")
        return 2
    _install()

    def make_counter() -> RoundTrips:
        _counters.append(RoundTrips())
        return _counters[-1]

    operations = sys.argv[1:] or [
        "create_link", "submit", "request_access", "ticket_page",
        "reveal", "close", "purge", "ticket_api",
    ]  # fmt: skip
    sys.argv[1:] = operations
    status = profile.main(make_counter)
    print(f"{'operation':16s}{'round trips':>12s}{'checkouts':>11s}")
    for op, counter in zip(operations, _counters, strict=True):
        print(f"{op:16s}{_spread(counter.totals()):>12s}{_spread(counter.checkouts()):>11s}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
