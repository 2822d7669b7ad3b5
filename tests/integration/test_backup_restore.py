"""Backups restore to the same data: a seeded database dumped (pg_dump -Fc) and restored into a fresh one has every
table with the same row count and checksum; the key file round-trips; the embedded SQLite mode likewise.

The two PostgreSQL databases are this test's own (created and dropped here); the session's database is untouched.
"""

from __future__ import annotations

import hashlib
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from backend import backup, seed
from backend.crypto.rotation import survey
from backend.db import make_engine
from backend.settings import PROJECT_ROOT, get_settings
from tests.conftest import ADMIN_URL, APP_ROLE, SYSTEM_ROLE, _db_url


def _migrate(url: str) -> None:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "head")


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    """Two fresh databases of this test (source, restore target), as the owner's URLs; dropped afterwards."""
    names = [f"clinic_backup_{kind}_{secrets.token_hex(4)}" for kind in ("src", "dst")]
    created: list[str] = []
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            for name in names:
                conn.execute(f'CREATE DATABASE "{name}"')
                created.append(name)
        yield _db_url(names[0]), _db_url(names[1])
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            for name in created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_fingerprint(engine: sa.Engine) -> dict[str, tuple[int, str]]:
    """Per table of the public schema: row count and md5 of every row's text, ordered by the primary key."""
    result: dict[str, tuple[int, str]] = {}
    with engine.connect() as conn:
        tables = conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()
        for table in sorted(tables):
            pk = conn.execute(
                sa.text(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
                    " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                    " WHERE i.indrelid = CAST(:t AS regclass) AND i.indisprimary ORDER BY a.attnum"
                ),
                {"t": f'public."{table}"'},
            ).scalars()
            order = ", ".join(f't."{column}"' for column in pk) or "t::text"
            count, digest = conn.execute(
                sa.text(
                    f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY {order}), ''))"  # noqa: S608
                    f' FROM public."{table}" AS t'
                )
            ).one()
            result[table] = (count, digest)
    return result


def _pg_schema_objects(engine: sa.Engine) -> dict[str, int]:
    """What a restore must bring back beside the rows: policies (row-level security), triggers, indexes, sequences."""
    queries = {
        "policies": "SELECT count(*) FROM pg_policies WHERE schemaname = 'public'",
        "rls_tables": "SELECT count(*) FROM pg_class WHERE relrowsecurity AND relnamespace = 'public'::regnamespace",
        "triggers": "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace",
        "indexes": "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'",
        "sequences": "SELECT count(*) FROM pg_sequences WHERE schemaname = 'public'",
    }
    with engine.connect() as conn:
        return {name: conn.execute(sa.text(sql)).scalar_one() for name, sql in queries.items()}


def test_postgres_backup_restores_every_table(databases: tuple[str, str], tmp_path: Path) -> None:
    source_url, target_url = databases
    _migrate(source_url)
    source = make_engine(source_url)
    target = make_engine(target_url)
    try:
        assert seed.seed_demo(engine=source) == ["harbor", "summit"]
        before = _pg_fingerprint(source)
        filled = [name for name, (count, _) in before.items() if count]
        assert len(filled) >= 12, filled  # practices, clinics, people, appointments, waitlists, audit, ...
        assert sum(count for count, _ in before.values()) > 100

        dump = backup.backup_postgres(source_url, tmp_path)
        assert dump.parent == tmp_path and dump.suffix == ".dump"
        assert stat.S_IMODE(dump.stat().st_mode) == 0o600
        assert dump.read_bytes().startswith(b"PGDMP")  # pg_dump's custom format
        assert not list(tmp_path.glob("*.partial"))

        # Through the command line, as `make restore FILE=... TARGET_URL=...` runs it.
        assert backup.main(["restore", str(dump), "--target-url", target_url]) == 0
        assert _pg_fingerprint(target) == before
        assert _pg_schema_objects(target) == _pg_schema_objects(source)

        # The app's roles were granted the restored tables as `make migrate` grants them; the audit stays append-only.
        with target.connect() as conn:

            def may(role: str, table: str, privilege: str) -> bool:
                query = sa.text("SELECT has_table_privilege(:role, :table, :privilege)")
                return bool(conn.execute(query, {"role": role, "table": table, "privilege": privilege}).scalar())

            for role in (APP_ROLE, SYSTEM_ROLE):
                assert may(role, "appointments", "UPDATE")
                assert may(role, "audit_events", "INSERT")
                assert not may(role, "audit_events", "UPDATE")

        # The encrypted columns of the restored copy decrypt with this deployment's keys.
        reports = survey(target)
        assert sum(r.current for r in reports) > 0
        assert sum(r.unreadable for r in reports) == 0

        # Never over live data: the now-populated target is refused, and nothing in it changes.
        assert backup.main(["restore", str(dump), "--target-url", target_url]) == 1
        assert _pg_fingerprint(target) == before
    finally:
        source.dispose()
        target.dispose()


def test_pg_dump_matches_the_server_version() -> None:
    client, server = backup.check_client_version(backup.LibpqTarget.parse(_db_url("postgres")))
    assert client >= server


def test_key_backup_round_trip(tmp_path: Path) -> None:
    settings = get_settings()
    path = backup.backup_keys(tmp_path / "keys")
    assert path.name.startswith(backup.KEYS_FILE_PREFIX)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert backup.read_keys(path) == {"SECRET_KEY": settings.secret_key, "ENCRYPTION_KEYS": settings.encryption_keys}

    secret_file = tmp_path / "data" / "secret.key"
    assert backup.restore_keys(path, secret_file=secret_file) == secret_file
    assert secret_file.read_text() == settings.secret_key
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600

    # A different key already in place is not overwritten silently.
    secret_file.write_text("another-key-" + "x" * 40)
    with pytest.raises(backup.BackupError, match="different key"):
        backup.restore_keys(path, secret_file=secret_file)
    backup.restore_keys(path, secret_file=secret_file, force=True)
    assert secret_file.read_text() == settings.secret_key


def test_database_dump_holds_no_key(databases: tuple[str, str], tmp_path: Path) -> None:
    source_url, _ = databases
    _migrate(source_url)
    dump = backup.backup_postgres(source_url, tmp_path)
    # Uncompressed SQL of the whole dump: the signing key appears nowhere in it.
    sql = backup._run(["pg_restore", "-f", "-", str(dump)], backup.LibpqTarget.parse(source_url))
    assert "CREATE TABLE public.appointments" in sql
    assert get_settings().secret_key not in sql


def _sqlite_fingerprint(path: Path) -> dict[str, tuple[int, str]]:
    engine = make_engine(f"sqlite:///{path}")
    result: dict[str, tuple[int, str]] = {}
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            for table in sorted(inspector.get_table_names()):
                pk = inspector.get_pk_constraint(table)["constrained_columns"]
                order = ", ".join(f'"{column}"' for column in pk) or "rowid"
                rows = conn.exec_driver_sql(f'SELECT * FROM "{table}" ORDER BY {order}').all()  # noqa: S608
                digest = hashlib.md5(repr([tuple(row) for row in rows]).encode(), usedforsecurity=False).hexdigest()
                result[table] = (len(rows), digest)
    finally:
        engine.dispose()
    return result


def test_sqlite_backup_restores_every_table(tmp_path: Path) -> None:
    database = tmp_path / "clinic.db"
    _migrate(f"sqlite:///{database}")
    engine = make_engine(f"sqlite:///{database}")
    try:
        assert seed.seed_demo(engine=engine) == ["harbor", "summit"]
        # The online backup API copies a consistent state while a connection holds the database open.
        with engine.connect() as held:
            held.exec_driver_sql("SELECT count(*) FROM tenants").scalar()
            copy = backup.backup_sqlite(database, tmp_path / "backups")
    finally:
        engine.dispose()
    assert copy.suffix == ".sqlite3"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    before = _sqlite_fingerprint(database)
    assert len([name for name, (count, _) in before.items() if count]) >= 12

    restored = tmp_path / "restored" / "clinic.db"
    assert backup.main(["restore", str(copy), "--target-url", f"sqlite:///{restored}"]) == 0
    assert _sqlite_fingerprint(restored) == before

    with pytest.raises(backup.BackupError, match="already has"):
        backup.restore_sqlite(copy, restored)


def test_make_backup_writes_the_dump_and_the_keys_apart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `make backup`: the configured database (DATABASE_OWNER_URL here: this session's database) and the keys.
    assert backup.main(["backup", "--dir", str(tmp_path)]) == 0
    dumps = list(tmp_path.glob("waitwell-*.dump"))
    keys = list(tmp_path.glob(f"{backup.KEYS_FILE_PREFIX}*.env"))
    assert len(dumps) == 1 and len(keys) == 1
    assert dumps[0].read_bytes().startswith(b"PGDMP")
    assert backup.read_keys(keys[0])["SECRET_KEY"] == get_settings().secret_key
    out = capsys.readouterr().out
    assert str(dumps[0]) in out and str(keys[0]) in out
    assert get_settings().secret_key not in out  # the key is in its file, never on the screen
