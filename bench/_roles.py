"""The benchmarks' app runs as deployed: the app's role under row-level security, the system scope's role with
BYPASSRLS, both made for the run (unique names; roles are cluster-wide) and dropped at its end. The database is
migrated by the owner (the admin URL); these roles only get grants on it (backend/dbroles.py)."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit, urlunsplit

import psycopg

from backend.dbroles import RoleSpec, libpq_url, provision


def _as_role(db_url: str, role: str) -> str:
    parts = urlsplit(db_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


def create_roles(db_url: str) -> dict[str, str]:
    """Create this run's two roles, grant them the migrated database `db_url` (as its owner); return the settings
    (DATABASE_URL, SYSTEM_DATABASE_URL, DATABASE_OWNER_URL) of an app process. Local trust authentication: no
    passwords."""
    suffix = secrets.token_hex(4)
    app, system = f"waitwell_bench_app_{suffix}", f"waitwell_bench_sys_{suffix}"
    provision(db_url, [RoleSpec(app, None, bypass_rls=False), RoleSpec(system, None, bypass_rls=True)])
    return {
        "DATABASE_URL": _as_role(db_url, app),
        "SYSTEM_DATABASE_URL": _as_role(db_url, system),
        "DATABASE_OWNER_URL": db_url,
    }


def drop_roles(admin_url: str, env: dict[str, str]) -> None:
    """Drop the roles `create_roles` made (after their database is dropped: their grants went with it)."""
    for key in ("DATABASE_URL", "SYSTEM_DATABASE_URL"):
        role = urlsplit(libpq_url(env[key])).username
        if role and role.startswith("waitwell_bench_"):
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')
