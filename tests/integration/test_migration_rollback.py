"""The rollback procedure, with data in place (issue 14, item 6; README, "Deploying on several machines").

tests/integration/test_migrations.py covers the schema's up/down cycles on empty databases and the 0002 backfill.
Here a scratch PostgreSQL database is migrated to head and seeded with the demo practices, as a running
deployment is; then the last revision is downgraded (`alembic downgrade -1`, the documented rollback of a release
whose migration must go) and upgraded again. Both steps succeed, and no row of any table is lost on the way.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from backend.settings import PROJECT_ROOT

ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def seeded_url() -> Iterator[str]:
    """A scratch database at head with the demo practices (created here, dropped after)."""
    name = f"scratch_rollback_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{ADMIN_URL.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    try:
        env = {**os.environ, "DATABASE_URL": url}
        for key in ("DATABASE_OWNER_URL", "SYSTEM_DATABASE_URL", "MIGRATION_DATABASE_URL"):
            env.pop(key, None)
        for args in (["-m", "alembic", "upgrade", "head"], ["-m", "backend.seed", "--demo"]):
            subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT, env=env, check=True, capture_output=True)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _config(url: str) -> Config:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def _state(engine: sa.Engine) -> tuple[str | None, dict[str, int]]:
    """The database's revision and the row count of each of its tables."""
    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        tables = sorted(set(sa.inspect(conn).get_table_names()) - {"alembic_version"})
        count = sa.select(sa.func.count())
        counts = {t: int(conn.execute(count.select_from(sa.table(t))).scalar_one()) for t in tables}
    return revision, counts


def test_downgrading_the_last_revision_and_upgrading_again_keeps_every_row(seeded_url: str) -> None:
    cfg = _config(seeded_url)
    head = ScriptDirectory.from_config(cfg).get_revision("head")
    assert head is not None and isinstance(head.down_revision, str)
    engine = sa.create_engine(seeded_url, poolclass=sa.pool.NullPool)
    try:
        revision, before = _state(engine)
        assert revision == head.revision
        # Data in place: the demo practices, their people, appointments, waitlists and audit trail.
        for table in ("tenants", "users", "patients", "providers", "appointments", "waitlist_entries"):
            assert before[table] > 0, table

        command.downgrade(cfg, "-1")
        revision, rolled_back = _state(engine)
        assert revision == head.down_revision
        # What the previous release knows keeps its rows; what only the last revision added goes with it, and
        # held nothing (the demo data does not use it yet) - else the rollback would lose data.
        for table, count in rolled_back.items():
            assert count == before[table], table
        assert all(before[t] == 0 for t in set(before) - set(rolled_back)), "the downgrade dropped rows"

        command.upgrade(cfg, "head")
        revision, after = _state(engine)
        assert revision == head.revision
        assert after == before
    finally:
        engine.dispose()
