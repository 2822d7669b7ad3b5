"""Test session set-up: a fresh PostgreSQL database per run (dropped at the end), migrated with alembic.

As deployed, the app does not connect as the owner: each run creates its own two roles (cluster-wide, so with
unique names, dropped at the end): the app's (no superuser, no BYPASSRLS: row-level security applies) and the
system scope's (BYPASSRLS). The `engine` fixture is the owner's (superuser: it sees every row, for assertions and
clean-up); the app runs on `app_engine` (backend.db.get_engine()).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
import uvicorn

ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
TEST_DB_NAME = f"clinic_test_{os.getpid()}_{secrets.token_hex(3)}"
_ROLE_SUFFIX = secrets.token_hex(4)
APP_ROLE = f"waitwell_app_{_ROLE_SUFFIX}"
SYSTEM_ROLE = f"waitwell_sys_{_ROLE_SUFFIX}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(config: uvicorn.Config) -> Iterator[str]:
    """Run `config` (an ASGI app on 127.0.0.1) in a thread of this process; yield its base URL, stop it after."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://{config.host}:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def _db_url(name: str, role: str | None = None) -> str:
    """The URL of database `name` as the admin (owner), or as `role` (trust authentication, no password)."""
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    if role is not None:
        scheme, rest = base.split("://", 1)
        base = f"{scheme}://{role}@{rest.rsplit('@', 1)[-1]}"
    return f"{base}/{name}"


def grant_test_roles(db_name: str) -> None:
    """Give this run's app and system roles the tables of `db_name` (migrated), as `make migrate` does."""
    from backend.dbroles import RoleSpec, provision

    provision(
        _db_url(db_name),
        [RoleSpec(APP_ROLE, None, bypass_rls=False), RoleSpec(SYSTEM_ROLE, None, bypass_rls=True)],
        create=not _created_roles,
    )


def role_env(db_name: str) -> dict[str, str]:
    """The database settings of an app process on `db_name`: app role, system role, owner."""
    return {
        "DATABASE_URL": _db_url(db_name, APP_ROLE),
        "SYSTEM_DATABASE_URL": _db_url(db_name, SYSTEM_ROLE),
        "DATABASE_OWNER_URL": _db_url(db_name),
    }


def _admin(sql: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def _unit_tests_only(config: pytest.Config) -> bool:
    """True when every path this run was given lies under tests/unit: such a run needs no service at all."""
    unit = (Path(__file__).parent / "unit").resolve()
    paths = [Path(str(arg).split("::", 1)[0]).resolve() for arg in config.args]
    return bool(paths) and all(path == unit or unit in path.parents for path in paths)


_created_database = False
_created_roles = False


def pytest_configure(config: pytest.Config) -> None:
    # Settings are read once per process; point them at this run's database before anything reads them.
    os.environ["DATABASE_URL"] = _db_url(TEST_DB_NAME)
    os.environ.pop("SYSTEM_DATABASE_URL", None)
    os.environ.pop("DATABASE_OWNER_URL", None)
    os.environ.pop("MIGRATION_DATABASE_URL", None)
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(48))
    os.environ.pop("CELERY_BROKER_URL", None)
    # Tasks run in-process unless a test starts a real worker (test_worker_cascade does, and unsets this).
    os.environ["CELERY_EAGER"] = "1"
    # Rate limits off for the suite (it sends many requests from one address); tests/integration/test_rate_limit.py
    # turns them on with its own limiter. Keys of this run stay apart from other runs on the shared Redis.
    os.environ["RATE_LIMIT_ENABLED"] = "0"
    os.environ["REDIS_KEY_PREFIX"] = f"test-{TEST_DB_NAME}"
    if _unit_tests_only(config):
        # Unit tests are pure logic: no PostgreSQL, no Redis (nothing is created, nothing is reachable).
        os.environ.pop("REDIS_URL", None)
        return
    os.environ["REDIS_URL"] = REDIS_URL
    _admin(f'CREATE DATABASE "{TEST_DB_NAME}"')
    global _created_database
    _created_database = True

    # Logging is configured by now (backend.logging_config): alembic's INFO lines (its plugins at import, each
    # revision) would flood the output.
    alembic_logger = logging.getLogger("alembic")
    level = alembic_logger.level
    alembic_logger.setLevel(logging.WARNING)
    try:
        from alembic import command
        from alembic.config import Config

        from backend.settings import PROJECT_ROOT

        cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
        cfg.set_main_option("sqlalchemy.url", os.environ["DATABASE_URL"])
        command.upgrade(cfg, "head")
    finally:
        alembic_logger.setLevel(level)

    # From here on the app (this process, and the workers and servers it starts) connects as the app's role.
    global _created_roles
    grant_test_roles(TEST_DB_NAME)
    _created_roles = True
    os.environ.update(role_env(TEST_DB_NAME))

    # Composed as the app and the worker are: the notifications package writes the notices of domain events.
    from backend import composition

    composition.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _created_database:
        return
    from backend.db import get_engine, get_system_engine

    get_engine().dispose()
    get_system_engine().dispose()
    _admin(f'DROP DATABASE IF EXISTS "{TEST_DB_NAME}" WITH (FORCE)')
    if _created_roles:
        # Only this run's roles. Their grants lived in this run's databases, which are gone now.
        for role in (APP_ROLE, SYSTEM_ROLE):
            try:
                _admin(f'DROP ROLE IF EXISTS "{role}"')
            except psycopg.Error as exc:
                print(f"could not drop role {role}: {exc}")


@pytest.fixture(scope="session")
def engine() -> Iterator[sa.Engine]:
    """The owner's engine (a superuser here): sees every practice's rows, for assertions and clean-up."""
    from backend.db import make_engine

    owner = make_engine(_db_url(TEST_DB_NAME))
    yield owner
    owner.dispose()


@pytest.fixture(scope="session")
def app_engine() -> sa.Engine:
    """The app's engine: the app's role, under row-level security."""
    from backend.db import get_engine

    return get_engine()


@pytest.fixture
def db(engine: sa.Engine) -> Iterator[sa.Engine]:
    """Give the test an empty database and empty it again afterwards."""
    from backend.models import metadata

    yield engine
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    for attempt in range(5):
        try:
            with engine.begin() as conn:
                # The audit tables refuse TRUNCATE (append-only triggers); replica mode skips triggers (superuser).
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
                conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
            break
        except sa.exc.OperationalError as exc:
            # A served app's in-process delivery of the test's last message may still hold a row lock: PostgreSQL
            # breaks the deadlock by failing the TRUNCATE, which is safe to run again once that work is done.
            if attempt == 4 or "deadlock detected" not in str(exc):
                raise
