"""The simulator's PostgreSQL databases: a template of the run's world and one copy per policy, all dropped."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backend.waitlist.simulation import Loaded, World, load_world

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def postgres_copies(world: World) -> Iterator[Callable[[], tuple[Any, Loaded]]]:
    """Like sqlite_copies, on PostgreSQL: a template database of this run, one copy per policy, all dropped."""
    import psycopg
    from alembic import command
    from alembic.config import Config

    from backend.db import make_engine
    from bench.booking import ADMIN_URL

    base = f"sim_{os.getpid()}_{secrets.token_hex(3)}"
    names = [f"{base}_tmpl"]
    engines: list[Any] = []

    def url(name: str) -> str:
        return ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{names[0]}"')
    try:
        cfg = Config(str(ROOT / "alembic.ini"))
        cfg.set_main_option("sqlalchemy.url", url(names[0]))
        command.upgrade(cfg, "head")
        template = make_engine(url(names[0]))
        loaded = load_world(world, template)
        template.dispose()

        def fresh() -> tuple[Any, Loaded]:
            name = f"{base}_{len(names)}"
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{names[0]}"')
            names.append(name)
            engine = make_engine(url(name))
            engines.append(engine)
            return engine, Loaded(loaded.tenant_id, loaded.clinics, loaded.providers, loaded.patients,
                                  loaded.appointments, dict(loaded.entries))  # fmt: skip

        yield fresh
    finally:
        for engine in engines:
            engine.dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            for name in reversed(names):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
