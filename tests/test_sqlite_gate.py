"""SQLite's write gate (vault_service/sqlite.py): writers queue through it, across threads and
processes, and it never outlives the transaction that took it.

Checked the hard way: the gate is a real flock on a real file, read from outside with a second
open file description (what another process sees); the second writer is a real process; and what
a refused writer leaves behind is read back from the database file itself.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from vault_service import sqlite as gated
from vault_service.extensions import db
from vault_service.services import audit
from vault_service.transactions import read_only, transaction

ROOT = Path(__file__).resolve().parent.parent


def _engine(path: Path):
    engine = create_engine(f"sqlite:///{path}")
    gated.configure_sqlite(engine)
    return engine


def _gate_is_held(database: Path) -> bool:
    """Whether some open file holds the gate's flock: a new open file description asks."""
    fd = os.open(str(database) + gated.GATE_SUFFIX, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the flock if we got it
    return False


def _rows(database: Path) -> list[str]:
    connection = sqlite3.connect(database)
    try:
        return [row[0] for row in connection.execute("SELECT v FROM t ORDER BY id")]
    finally:
        connection.close()


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "gate.db"
    engine = _engine(path)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    engine.dispose()
    return path


HOLDER = textwrap.dedent(
    """
    import sys
    from sqlalchemy import create_engine, text
    from vault_service.sqlite import configure_sqlite
    engine = create_engine("sqlite:///" + sys.argv[1])
    configure_sqlite(engine)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO t (v) VALUES ('holder')"))
        print("holding", flush=True)
        sys.stdin.readline()  # commit when the test says so
    print("committed", flush=True)
    """
)


def _start_holder(database: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def _finish_holder(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "committed"
    assert holder.wait(30) == 0


def test_a_writer_in_another_process_holds_the_gate_and_the_next_writer_waits_for_it(database):
    holder = _start_holder(database)
    engine = _engine(database)
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO t (v) VALUES ('second')"))
        except BaseException as error:  # noqa: BLE001 - reported to the test thread
            errors.append(error)
        done.set()

    try:
        assert _gate_is_held(database)  # the other process's open write transaction
        writer = threading.Thread(target=write)
        writer.start()
        # While the holder's transaction is open the second writer cannot get in: it neither
        # finishes nor fails.
        assert not done.wait(0.5)
        # A read is not a writer: it takes no gate and does not wait.
        with engine.connect().execution_options(vault_service_deferred_begin=True) as reader:
            assert reader.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
            reader.rollback()
        _finish_holder(holder)
        assert done.wait(10)
        writer.join()
    finally:
        if holder.poll() is None:
            holder.kill()
        engine.dispose()
    assert errors == []
    assert _rows(database) == ["holder", "second"]
    assert not _gate_is_held(database)


def test_a_gate_not_obtained_in_time_fails_as_sqlite_would_and_writes_nothing(
    database, monkeypatch
):
    monkeypatch.setattr(gated, "BUSY_TIMEOUT_SECONDS", 0.3)
    holder = _start_holder(database)
    engine = _engine(database)
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO t (v) VALUES ('refused')"))
        _finish_holder(holder)
        # The refused writer let go of this process's gate: the next write goes straight in.
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t (v) VALUES ('after')"))
    finally:
        if holder.poll() is None:
            holder.kill()
        engine.dispose()
    assert _rows(database) == ["holder", "after"]


def test_the_gate_ends_with_the_transaction_however_it_ends(database):
    engine = _engine(database)
    try:
        with pytest.raises(ZeroDivisionError):
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO t (v) VALUES ('rolled back')"))
                assert _gate_is_held(database)
                raise ZeroDivisionError
        assert not _gate_is_held(database)

        with pytest.raises(IntegrityError):  # a failing statement, then rollback
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO t (v) VALUES (NULL)"))
        assert not _gate_is_held(database)

        connection = engine.connect()
        connection.execute(text("INSERT INTO t (v) VALUES ('abandoned')"))
        assert _gate_is_held(database)
        connection.invalidate()  # the driver's connection is closed mid-transaction
        assert not _gate_is_held(database)

        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t (v) VALUES ('kept')"))
        assert not _gate_is_held(database)
    finally:
        engine.dispose()
    assert _rows(database) == ["kept"]


def test_threads_of_one_process_take_turns_and_none_is_lost(database):
    engine = _engine(database)
    inside = 0
    most_inside = 0
    count_lock = threading.Lock()
    errors: list[BaseException] = []

    def write(name: str) -> None:
        nonlocal inside, most_inside
        try:
            for index in range(20):
                with engine.begin() as connection:
                    with count_lock:
                        inside += 1
                        most_inside = max(most_inside, inside)
                    connection.execute(
                        text("INSERT INTO t (v) VALUES (:v)"), {"v": f"{name}{index}"}
                    )
                    time.sleep(0.001)
                    with count_lock:
                        inside -= 1
        except BaseException as error:  # noqa: BLE001 - reported to the test thread
            errors.append(error)

    threads = [threading.Thread(target=write, args=(f"w{k}-",)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    assert errors == []
    assert most_inside == 1  # one writer at a time, as SQLite requires
    assert len(_rows(database)) == 80


def test_the_app_writes_through_the_gate(app):
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("the write gate is SQLite's")
        path = Path(db.engine.url.database or "")
        with read_only():
            assert not _gate_is_held(path)  # a read takes no gate
        with transaction():
            audit.record("test.gate", actor="test")
            db.session.flush()
            assert _gate_is_held(path)
        assert not _gate_is_held(path)
        db.session.remove()
