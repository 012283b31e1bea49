"""SQLite as the embedded database: connection settings, and a write gate so writers queue quickly.

SQLite has one writer at a time. Every transaction() begins IMMEDIATE (a writer waits for the
lock instead of failing mid-transaction); read_only() blocks begin DEFERRED (a snapshot, no lock:
WAL lets them read while one writes). How a writer *waits* matters under load. SQLite's own busy
handler polls the lock with sleeps of 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 and then 100 ms, so a
writer that arrives while another holds the lock for 2 ms may sleep 5, 10 or 100 ms before it
looks again, and the waits compound across a queue of writers: with 3 processes of 4 threads each
writing short transactions, the wait for BEGIN IMMEDIATE was p99 54–104 ms and at most 230-330 ms.

The gate puts writers in line before they ask SQLite:

- inside one process, a lock that wakes the next thread the moment the holder is done;
- across processes (gunicorn's workers, the job worker, the CLI), an exclusive flock on a file
  beside the database, polled every 0.1-0.25 ms (a blocking flock cannot time out). Slower
  polling (up to 2 ms) let the process holding the file hand it from thread to thread while the
  other process slept, which raised the medians under load (make bench, 8 and 32 clients);

and the holder keeps the gate from its BEGIN IMMEDIATE until its COMMIT or ROLLBACK has returned.
The same experiment through the gate: wait p99 4.1-4.3 ms, at most 7-11 ms, and half again as
many transactions per second. SQLite's lock stays the authority: BEGIN IMMEDIATE still runs with
busy_timeout, so a writer that does not use the gate (an older release, the sqlite3 shell) is
waited for as before, and a gate not obtained within the same 10 s fails with the error SQLite
would have given, "database is locked", with nothing written.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import threading
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from . import transactions

# How long a writer waits for the lock, in the gate and then in SQLite: 10 s, as before the gate.
BUSY_TIMEOUT_SECONDS = 10.0
# The gate's file beside the database; it holds nothing, only the flock.
GATE_SUFFIX = "-writer.lock"
_FIRST_POLL_SECONDS = 0.0001
_LONGEST_POLL_SECONDS = 0.00025


class WriteGate:
    """One database file's queue of writers in this process (see the module docstring)."""

    def __init__(self, database_path: str) -> None:
        self.path = database_path + GATE_SUFFIX
        self._threads = threading.Lock()
        self._fd: int | None = None

    def acquire(self, timeout: float | None = None) -> None:
        """Wait until this thread is the only writer of the file among gate users, or raise."""
        timeout = BUSY_TIMEOUT_SECONDS if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if not self._threads.acquire(timeout=timeout):
            raise sqlite3.OperationalError("database is locked")
        try:
            fd = self._file()
            delay = _FIRST_POLL_SECONDS
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except OSError as error:
                    if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise sqlite3.OperationalError("database is locked")
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, _LONGEST_POLL_SECONDS)
        except BaseException:
            self._threads.release()
            raise

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def _file(self) -> int:
        # Opened once per process, on first use; the flock belongs to this open file, which is
        # why the thread lock above must be held to use it.
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd


# One gate per database file and process: a gunicorn worker forked from a master that already
# used the file gets gates of its own (the parent's thread lock and flock are not its to share).
_gates: dict[tuple[int, str], WriteGate] = {}
_gates_lock = threading.Lock()


def gate_for(database_path: str) -> WriteGate:
    key = (os.getpid(), os.path.realpath(database_path))
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = _gates[key] = WriteGate(key[1])
        return gate


class GatedConnection(sqlite3.Connection):
    """The driver's connection, holding its database's write gate while it writes.

    The gate is released where the transaction really ends: after the driver's COMMIT or
    ROLLBACK returns (SQLAlchemy's own commit event fires before it), and when the connection
    is closed with a transaction still open.
    """

    write_gate: WriteGate | None = None
    _holds_gate = False

    def begin_write(self) -> None:
        if self.write_gate is not None:
            self.write_gate.acquire()
            self._holds_gate = True
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._release_gate()
            raise

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release_gate()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release_gate()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release_gate()

    def _release_gate(self) -> None:
        if self._holds_gate and self.write_gate is not None:
            self._holds_gate = False
            self.write_gate.release()


def configure_sqlite(engine: Engine) -> None:
    """WAL for concurrent readers, FULL sync for durability, secure_delete so freed pages are
    zeroed, and IMMEDIATE transactions through the write gate so writers queue instead of failing
    mid-transaction (read_only() blocks excepted: they begin DEFERRED and never write)."""
    database = engine.url.database or ""
    file_backed = database not in ("", ":memory:") and not database.startswith("file:")

    @event.listens_for(engine, "do_connect")
    def on_do_connect(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        params["factory"] = GatedConnection

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Only attached to a SQLite engine: the DBAPI connection is the stdlib driver's.
        dbapi_connection.isolation_level = None  # let the "begin" hook below issue BEGIN
        if file_backed and isinstance(dbapi_connection, GatedConnection):
            dbapi_connection.write_gate = gate_for(database)
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "secure_delete=ON",
            "foreign_keys=ON",
            f"busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        # read_only() marks its connection: a read takes a snapshot and no lock, so it does not
        # wait for writers (WAL lets it read while one writes).
        if connection.get_execution_options().get(transactions.DEFERRED_BEGIN):
            connection.exec_driver_sql("BEGIN DEFERRED")
            return
        dbapi_connection = connection.connection.dbapi_connection
        if isinstance(dbapi_connection, GatedConnection):
            try:
                dbapi_connection.begin_write()
            except sqlite3.OperationalError as error:
                # Raised from an event hook, the driver's error would reach callers unwrapped;
                # they expect SQLAlchemy's, as when SQLite itself gives up on the lock.
                raise OperationalError("BEGIN IMMEDIATE", None, error) from error
        else:  # another listener chose the driver's connection class: no gate, SQLite's wait
            connection.exec_driver_sql("BEGIN IMMEDIATE")
