"""Pooled PostgreSQL connections: one the server closed is replaced before use, without a ping.

SQLAlchemy's pool_pre_ping sends an empty query on every checkout, and a request checks out a
connection for each of its transactions (read_only() ends its own before every Vault call): a
round trip each time, several per request, to learn what the socket already knows. A server
that ends a connection (a restart, pg_terminate_backend, idle_session_timeout, a crash) sends
its goodbye or closes the socket, so the idle connection becomes readable; nothing else makes
it so, since a connection in the pool has read every reply up to ReadyForQuery and the app
does not LISTEN. The check below is a poll with no wait, and on a hit it does what a failed
pre-ping does: every pooled connection older than now is discarded and a new one is made.

What neither catches: a peer that vanished without closing (its host lost). A ping would learn
that from a reset; here the first statement fails instead, SQLAlchemy sees the disconnect and
discards the pool the same way, and that one request fails closed.
"""

from __future__ import annotations

import select
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry

if TYPE_CHECKING:
    # psycopg is the postgres extra's: a SQLite-only install imports this module without it.
    import psycopg


def closed_by_server(connection: psycopg.Connection[Any]) -> bool:
    """Whether an idle connection has been ended by the server (or broke), without asking it."""
    if connection.closed:  # also when it broke
        return True
    poller = select.poll()
    # Readable means the server wrote to a connection that owes it nothing: its FATAL message
    # or end of file. POLLHUP and POLLERR are always reported.
    poller.register(connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def replace_closed_connections(engine: Engine) -> None:
    """Discard a pooled psycopg connection the server has closed, on checkout, before use."""

    @event.listens_for(engine, "checkout")
    def on_checkout(
        dbapi_connection: psycopg.Connection[Any], _record: ConnectionPoolEntry, _proxy: object
    ) -> None:
        if closed_by_server(dbapi_connection):
            # As a failed pre-ping: a server that closed one connection (a restart) closed the
            # others too, so the pool discards them all; the checkout retries with a new one.
            raise exc.InvalidatePoolError("the server closed this pooled connection")
