"""Alembic environment: one database, PostgreSQL (the service) or SQLite (the embedded default).

The URL is the caller's `sqlalchemy.url` main option when set (tests do
`cfg.set_main_option("sqlalchemy.url", url)`), otherwise `get_settings().owner_url`: DATABASE_OWNER_URL (or
MIGRATION_DATABASE_URL), else DATABASE_URL. Grants for the app's roles follow with `python -m backend.dbroles`.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

import sqlalchemy as sa
from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import event, pool
from sqlmodel.sql.sqltypes import AutoString

from backend.models import metadata
from backend.types import UTCDateTime

config = context.config

# Logging from alembic.ini only when run from the alembic command line; a program that calls
# alembic.command itself (the test session, the app) keeps its own logging configuration.
if config.config_file_name is not None and config.cmd_opts is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata


def _database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from backend.settings import get_settings

        # The owner's role: the tables are its own (the app's role, DATABASE_URL, may only use them).
        url = get_settings().owner_url
    # Plain postgresql:// would pick psycopg2, which we do not ship; we use psycopg 3.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    return url


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Render our app's column types as plain SQLAlchemy types, so migrations import nothing from the app."""
    if type_ == "type":
        if isinstance(obj, UTCDateTime):
            return "sa.DateTime(timezone=True)"
        if isinstance(obj, AutoString):
            return f"sa.String(length={obj.length})" if obj.length is not None else "sa.String()"
    return False  # the default rendering


def _configure_opts() -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        # SQLite cannot ALTER most things: batch mode recreates the table (a no-op wrapper on PostgreSQL).
        "render_as_batch": True,
        "compare_type": True,
        "render_item": render_item,
    }


def run_migrations_offline() -> None:
    """Emit SQL to stdout (alembic upgrade --sql)."""
    context.configure(
        url=_database_url(),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_configure_opts(),
    )
    with context.begin_transaction():
        context.run_migrations()


def _make_engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url, poolclass=pool.NullPool)
    if engine.dialect.name == "sqlite":
        # pysqlite defers BEGIN and lets DDL run outside a transaction; take over so a failed migration
        # rolls back whole (SQLite has transactional DDL). Foreign keys stay OFF (SQLite's default) here:
        # batch mode drops and recreates tables, which must not cascade or fail on references.

        @event.listens_for(engine, "connect")
        def _no_pysqlite_transactions(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        # True for SQLite too: with the explicit BEGIN above its DDL is transactional.
        transactional_ddl=True,
        **_configure_opts(),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # A caller may lend its own connection: cfg.attributes["connection"] = conn.
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = _make_engine(_database_url())
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
