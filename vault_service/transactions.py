"""The one owner of database transactions: services open them here, views never touch the session.

Two shapes, and a guard:

- `transaction()`: a unit of work that commits on success and rolls back (and re-raises) on any
  failure. Nested uses join the outermost one, which alone commits.
- `read_only()`: a read that must end before Vault is called. It ends with a commit, not a
  rollback: with expire_on_commit=False the loaded attributes stay readable afterwards, whereas
  a rollback expires them and the next attribute read silently opens a new transaction, which on
  SQLite holds the write lock across every Vault call that follows. It refuses pending changes,
  so nothing is ever committed by accident, and a statement that writes is refused before it
  is sent. On SQLite it begins DEFERRED (a snapshot without the write lock: readers do not
  queue behind writers); a transaction() opened inside it ends the read first, so no write
  ever runs in a snapshot (which SQLite would refuse, not wait for). On PostgreSQL at READ
  COMMITTED it runs without a transaction: each statement has its own snapshot either way, and
  BEGIN and COMMIT would be two round trips for nothing.
- `refuse_open_transaction()`: the Vault gateway calls it before every request to Vault (see
  create_app). A transaction held across a Vault call would hold SQLite's write lock (and
  PostgreSQL row locks) for a network round trip; the guard turns that mistake into an error
  at the first test that takes the path, instead of a stall under load.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from flask import has_app_context
from sqlalchemy import CursorResult, Result, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from .extensions import db

_DEPTH = "vault_service.transaction_depth"
# Set on the session while a read_only() block's own transaction is open; on SQLite that
# transaction began DEFERRED (a snapshot, no write lock), see configure_sqlite().
_READING = "vault_service.reading"
# The execution option the SQLite "begin" hook reads: BEGIN DEFERRED instead of IMMEDIATE.
DEFERRED_BEGIN = "vault_service_deferred_begin"
# Marks the connection a read_only() block began: statements that write are refused on it.
_READ_CONNECTION = "vault_service_read_connection"


class TransactionHeldAcrossVaultCall(RuntimeError):
    """A Vault call was attempted while this request's database transaction was open (a bug)."""


@contextmanager
def transaction() -> Iterator[Session]:
    """Commit on success, roll back and re-raise on failure; an inner use joins the outer one."""
    session = db.session()
    depth = session.info.get(_DEPTH, 0)
    if depth == 0 and session.info.pop(_READING, False):
        # A write inside a read_only() block: its transaction is a DEFERRED snapshot on SQLite,
        # and upgrading a snapshot to a writer fails at once (SQLITE_BUSY_SNAPSHOT, no busy
        # wait) if anyone committed since it began. End the read first; the write then begins
        # IMMEDIATE and queues for the lock like every other write.
        _end_read(session)
    session.info[_DEPTH] = depth + 1
    try:
        yield session
        if depth == 0:
            session.commit()
    except BaseException:
        if depth == 0:
            session.rollback()
        raise
    finally:
        session.info[_DEPTH] = depth


@contextmanager
def read_only() -> Iterator[Session]:
    """A read whose loaded objects stay usable after it ends; refuses to end with changes."""
    session = db.session()
    if session.info.get(_DEPTH, 0):
        # Inside a unit of work, a read is part of it: the outer block decides how it ends.
        yield session
        return
    if not session.in_transaction():
        # Begin it here, marked: on SQLite a read needs no write lock, so it begins DEFERRED
        # and does not queue behind writers (IMMEDIATE, which every other transaction takes so
        # that a writer waits for the lock instead of failing mid-transaction). PostgreSQL
        # ignores the option and may read without a transaction (_read_options).
        session.connection(execution_options=_read_options(session))
        session.info[_READING] = True
    try:
        yield session
    except BaseException:
        session.info.pop(_READING, None)
        session.rollback()
        raise
    if session.new or session.dirty or session.deleted:
        session.info.pop(_READING, None)
        session.rollback()
        raise RuntimeError("read_only() block made changes; use transaction() to write")
    _end_read(session)


def _read_options(session: Session) -> dict[str, object]:
    """How a read_only() block's connection runs: on PostgreSQL at READ COMMITTED, without a
    transaction.

    At READ COMMITTED (PostgreSQL's default) every statement takes a snapshot of its own, inside
    a transaction or not, so a read's BEGIN and COMMIT buy it nothing and cost two round trips
    (psycopg sends each on its own). Locks are the one thing a transaction would add, and a read
    takes none: it ends before the write that follows, which locks what it changes. Under a
    stricter server default (REPEATABLE READ or SERIALIZABLE: one snapshot for the whole read),
    or before the first connection has told SQLAlchemy the default, the read stays a transaction.
    """
    dialect = session.get_bind().dialect
    # Only set once a first connection has been made: unset reads as unknown.
    isolation = getattr(dialect, "default_isolation_level", None)
    if dialect.name == "postgresql" and isolation == "READ COMMITTED":
        return {_READ_CONNECTION: True, "isolation_level": "AUTOCOMMIT"}
    return {_READ_CONNECTION: True, DEFERRED_BEGIN: True}


def refuse_writes_in_reads(engine: Engine) -> None:
    """Refuse an INSERT, UPDATE or DELETE on a read_only() block's own connection before it is
    sent (an ORM flush included): without a transaction (PostgreSQL, _read_options) nothing
    could take it back, and in one the read would commit it. create_app installs it."""

    @event.listens_for(engine, "before_execute")
    def refuse_write(
        connection: Connection, statement: object, *_args: object, **_kwargs: object
    ) -> None:
        if getattr(statement, "is_dml", False) and connection.get_execution_options().get(
            _READ_CONNECTION
        ):
            raise RuntimeError("read_only() block made changes; use transaction() to write")


def _end_read(session: Session) -> None:
    """Commit a read (see read_only: a commit keeps the loaded objects usable)."""
    session.info.pop(_READING, None)
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("read_only() block made changes; use transaction() to write")
    session.commit()


def rows_matched(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched (the session types its result generically)."""
    return cast(CursorResult[Any], result).rowcount


def in_open_transaction() -> bool:
    """Whether this app context's session holds a database transaction right now."""
    if not has_app_context():
        return False  # a pool thread or a command without an app: no session of ours
    session = db.session()
    return session.in_transaction()


def refuse_open_transaction(operation: str) -> None:
    """Raise if a Vault call is about to run inside an open database transaction."""
    if in_open_transaction():
        raise TransactionHeldAcrossVaultCall(
            f"{operation}: a database transaction is open; end it before calling Vault"
        )
