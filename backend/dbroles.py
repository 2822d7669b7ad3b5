"""PostgreSQL roles and grants: the owner migrates, the app's role lives under row-level security, the system role
(BYPASSRLS) serves the explicit system scope. Run after the migrations (`make migrate` does):

    python -m backend.dbroles

It connects with DATABASE_OWNER_URL, creates the roles named in DATABASE_URL and SYSTEM_DATABASE_URL when they do
not exist yet (with the URLs' passwords; this needs CREATEROLE, and a superuser for BYPASSRLS), and grants them
the tables of the database: read and write, except the audit tables (audit_*), which are append-only (SELECT and
INSERT). Default privileges give tables that later migrations create the same grants. Idempotent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)

# Tables whose rows are never changed or removed once written (the audit trail).
APPEND_ONLY_PREFIX = "audit"


@dataclass(frozen=True)
class RoleSpec:
    name: str
    password: str | None
    bypass_rls: bool


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://) as psycopg takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def role_of(url: str) -> tuple[str | None, str | None]:
    """The user name and password of a database URL (None when absent)."""
    parts = urlsplit(libpq_url(url))
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return user, password


def ensure_role(conn: psycopg.Connection, role: RoleSpec) -> bool:
    """Create `role` when absent (LOGIN, never superuser); returns whether it was created. An existing role is
    checked, not changed: the app's role must not bypass row-level security, the system role must."""
    row = conn.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (role.name,)).fetchone()
    if row is None:
        options = sql.SQL("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE {} ").format(
            sql.SQL("BYPASSRLS" if role.bypass_rls else "NOBYPASSRLS")
        )
        if role.password:
            options += sql.SQL("PASSWORD {}").format(sql.Literal(role.password))
        conn.execute(sql.SQL("CREATE ROLE {} ").format(sql.Identifier(role.name)) + options)
        return True
    superuser, bypass = bool(row[0]), bool(row[1])
    if not role.bypass_rls and (superuser or bypass):
        raise RuntimeError(f"role {role.name!r} bypasses row-level security: the app must not connect as it")
    if role.bypass_rls and not (superuser or bypass):
        raise RuntimeError(f"role {role.name!r} lacks BYPASSRLS: the system scope would see no rows")
    return False


def grant(conn: psycopg.Connection, role: str) -> None:
    """Give `role` the database's tables (now and later ones of the connected owner): read and write, the audit
    tables append-only, the sequences usable. Nothing else: no TRUNCATE, no DDL, no ownership."""
    ident = sql.Identifier(role)
    database = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), ident))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
    conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(ident))
    conn.execute(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(ident))
    defaults = "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT"
    conn.execute(sql.SQL(defaults + " SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}").format(ident))
    conn.execute(sql.SQL(defaults + " USAGE, SELECT ON SEQUENCES TO {}").format(ident))
    tables = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND (tablename LIKE %s OR tablename = %s)",
        (f"{APPEND_ONLY_PREFIX}%", "alembic_version"),
    ).fetchall()
    for (table,) in tables:
        conn.execute(sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON {} FROM {}").format(sql.Identifier(table), ident))
        if table == "alembic_version":
            conn.execute(sql.SQL("REVOKE INSERT ON {} FROM {}").format(sql.Identifier(table), ident))


def provision(owner_url: str, roles: list[RoleSpec], *, create: bool = True) -> list[str]:
    """Create (when `create`) and grant each role on the owner's database; returns the names created."""
    created: list[str] = []
    with psycopg.connect(libpq_url(owner_url), autocommit=True) as conn:
        for role in roles:
            if create and ensure_role(conn, role):
                created.append(role.name)
            grant(conn, role.name)
    return created


def roles_from_settings() -> tuple[str, list[RoleSpec]]:
    """The owner URL and the roles of DATABASE_URL and SYSTEM_DATABASE_URL that are not the owner itself."""
    from backend.settings import get_settings

    settings = get_settings()
    owner, _ = role_of(settings.owner_url)
    specs: list[RoleSpec] = []
    for url, bypass in ((settings.database_url, False), (settings.system_url, True)):
        name, password = role_of(url)
        if name and name != owner and name not in {s.name for s in specs}:
            specs.append(RoleSpec(name, password, bypass))
    return settings.owner_url, specs


def main() -> int:
    from backend.settings import get_settings

    if get_settings().is_sqlite:
        print("SQLite: no database roles (row-level security is PostgreSQL's).")
        return 0
    owner_url, specs = roles_from_settings()
    if not specs:
        print(
            "DATABASE_URL is the owner's role: row-level security does not apply to it. Set DATABASE_OWNER_URL to"
            " the owner and DATABASE_URL to an app role (README, Security)."
        )
        return 0
    created = provision(owner_url, specs)
    for spec in specs:
        state = "created" if spec.name in created else "exists"
        print(f"role {spec.name} ({'system, BYPASSRLS' if spec.bypass_rls else 'app'}): {state}, granted")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
