"""INSERT ... ON CONFLICT for the database in use: one statement instead of a read, then a write.

SQLAlchemy builds the clause per dialect; PostgreSQL and SQLite (3.24 for the clause, 3.35 for
RETURNING with it) both speak it, with the same arguments.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_on_conflict(session: Session, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into `table` (a Table or a mapped class) that can take an ON CONFLICT clause."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
