"""Schema changes go through Alembic migrations (vault_service/migrations); this runs them."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    """An Alembic configuration without an ini file: the scripts ship inside the package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


FIRST_REVISION = "0001"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to `revision` (idempotent)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        tables = set(inspect(connection).get_table_names())
        if "tickets" in tables and "alembic_version" not in tables:
            # A database created before migrations existed holds exactly the first revision.
            command.stamp(config, FIRST_REVISION)
        command.upgrade(config, revision)


@cache
def head_revision() -> str:
    """The revision the code expects: the single head of the shipped migrations."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads: merge them")
    return heads[0]


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def schema_state(connection: Connection) -> str:
    """`ok` when the database is at the code's head; otherwise what an operator must read."""
    current, head = current_revision(connection), head_revision()
    if current == head:
        return "ok"
    if current is None:
        return f"not migrated (code expects {head}): run vault-service migrate upgrade"
    return f"at {current}, code expects {head}: run vault-service migrate upgrade"


def history() -> list[str]:
    """Every shipped revision, newest first, as `rev: message`."""
    script = ScriptDirectory.from_config(alembic_config())
    return [f"{rev.revision}: {rev.doc}" for rev in script.walk_revisions()]


def downgrade(engine: Engine, revision: str) -> None:
    """Step the database back to `revision`."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def revision(engine: Engine, message: str) -> None:
    """Autogenerate a new migration from the models (developers: `vault-service db-revision`)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)
