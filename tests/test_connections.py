"""Pooled PostgreSQL connections: a checkout costs no round trip, and a connection the server
ended while it sat in the pool is replaced before anyone uses it (vault_service/connections.py).
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text

from vault_service import _pings_on_checkout
from vault_service.extensions import db

from .conftest import TEST_DATABASE_URL

postgres_only = pytest.mark.skipif(
    not TEST_DATABASE_URL, reason="PostgreSQL only (VAULT_SERVICE_TEST_DATABASE_URL)"
)


def _last_query(backend_pid: int) -> str:
    """What a backend ran last, as the server saw it (asked over a connection of its own)."""
    engine = create_engine(TEST_DATABASE_URL)
    try:
        with engine.connect() as connection:
            return connection.execute(
                text("SELECT query FROM pg_stat_activity WHERE pid = :pid"), {"pid": backend_pid}
            ).scalar_one()
    finally:
        engine.dispose()


def _terminate(backend_pid: int) -> None:
    """End a backend from another connection and wait until the server has let it go."""
    engine = create_engine(TEST_DATABASE_URL)
    try:
        with engine.connect() as connection:
            assert connection.execute(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": backend_pid}
            ).scalar_one()
            deadline = time.monotonic() + 10
            while connection.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": backend_pid}
            ).scalar_one():
                assert time.monotonic() < deadline, "the backend outlived pg_terminate_backend"
                time.sleep(0.05)
    finally:
        engine.dispose()


@postgres_only
def test_a_checkout_sends_the_server_nothing(app):
    with app.app_context():
        with db.engine.begin() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert _last_query(pid) == "COMMIT"
        # The same pooled connection again: a pre-ping would have run an empty query on it.
        with db.engine.connect() as connection:
            # psycopg knows the backend's pid without asking the server.
            assert connection.connection.dbapi_connection.info.backend_pid == pid
            assert _last_query(pid) == "COMMIT"


@postgres_only
def test_a_pooled_connection_the_server_ended_is_replaced_before_use(app):
    with app.app_context():
        with db.engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        _terminate(pid)  # as a server restart or idle_session_timeout would
        with db.engine.connect() as connection:
            replacement = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    assert replacement != pid


@pytest.mark.parametrize(
    ("url", "pings"),
    [
        ("sqlite:///var/vault_service.db", False),  # a file: no server to drop a connection
        ("postgresql+psycopg://db/vault", False),  # the socket is looked at instead
        ("postgresql+psycopg2://db/vault", True),  # any other driver keeps the ping
    ],
)
def test_only_drivers_without_the_socket_check_ping_on_checkout(url, pings):
    assert _pings_on_checkout(url) is pings
