"""Migration 0013: rows written in plaintext before it are encrypted in place (and read back by the app's column
type), and downgrade restores the plaintext and the VARCHAR columns. PostgreSQL and SQLite, each on a scratch database
of its own (never the session's)."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from cryptography.fernet import Fernet
from sqlalchemy.dialects import postgresql

from backend import crypto
from backend.models import metadata
from backend.settings import PROJECT_ROOT

ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BEFORE = "0012_audit_reads"
ENCRYPT = "0013_encrypt_free_text"

NOTE = "Referred after a suicide attempt in March; café staff triggers flashbacks"
CANCEL = "Chemotherapy moved to this day"
LEAVE = "Own medical appointment"


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"scratch_encrypt_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'scratch_encrypt.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def scratch(db_url: str) -> Iterator[tuple[Config, sa.Engine]]:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", db_url)
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    yield cfg, engine
    engine.dispose()


# The schema at 0012 as far as these inserts need it (plain constructs, like the migrations themselves).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _table(name: str, *columns: tuple[str, Any]) -> sa.TableClause:
    return sa.table(name, *(sa.column(n, t) for n, t in columns))


STR = sa.String()
tenants = _table("tenants", ("id", sa.Uuid()), ("name", STR), ("slug", STR), ("created_at", TS))
clinics = _table("clinics", ("id", sa.Uuid()), ("tenant_id", sa.Uuid()), ("name", STR), ("timezone", STR),
                 ("address", STR), ("phone", STR), ("created_at", TS))  # fmt: skip
providers = _table("providers", ("id", sa.Uuid()), ("tenant_id", sa.Uuid()), ("full_name", STR), ("title", STR),
                   ("kind", STR), ("specialties", JSON), ("languages", JSON), ("modalities", JSON), ("bio", STR),
                   ("active", sa.Boolean()), ("created_at", TS))  # fmt: skip
patients = _table("patients", ("id", sa.Uuid()), ("tenant_id", sa.Uuid()), ("full_name", STR), ("email", STR),
                  ("phone", STR), ("locale", STR), ("home_clinic_id", sa.Uuid()), ("created_at", TS))  # fmt: skip
appointments = _table("appointments", ("id", sa.Uuid()), ("tenant_id", sa.Uuid()), ("provider_id", sa.Uuid()),
                      ("patient_id", sa.Uuid()), ("clinic_id", sa.Uuid()), ("start_at", TS), ("end_at", TS),
                      ("modality", STR), ("status", STR), ("version", sa.Integer()), ("cancel_reason", STR),
                      ("created_at", TS), ("updated_at", TS))  # fmt: skip
time_off = _table("time_off", ("id", sa.Uuid()), ("tenant_id", sa.Uuid()), ("provider_id", sa.Uuid()),
                  ("start_at", TS), ("end_at", TS), ("reason", STR))  # fmt: skip
waitlist_entries = _table("waitlist_entries", ("id", sa.Uuid()), ("tenant_id", sa.Uuid()), ("patient_id", sa.Uuid()),
                          ("clinic_id", sa.Uuid()), ("provider_id", sa.Uuid()), ("preferred_windows", JSON),
                          ("timezone", STR), ("earliest_date", sa.Date()), ("urgency", sa.Integer()), ("reason", STR),
                          ("status", STR), ("target_key", STR), ("version", sa.Integer()), ("created_at", TS),
                          ("updated_at", TS), ("last_confirmed_at", TS))  # fmt: skip


def _insert_plaintext(engine: sa.Engine) -> dict[str, list[tuple[uuid.UUID, str]]]:
    """A practice at 0012 with free text in each column (and an empty one each); returns (id, text) per table."""
    ts = (lambda v: v.replace(tzinfo=None)) if engine.dialect.name == "sqlite" else (lambda v: v)
    tenant, clinic, provider, patient = (uuid.uuid4() for _ in range(4))
    written: dict[str, list[tuple[uuid.UUID, str]]] = {"appointments": [], "time_off": [], "waitlist_entries": []}
    with engine.begin() as conn:
        conn.execute(sa.insert(tenants).values(id=tenant, name="Harbor", slug="harbor", created_at=ts(T0)))
        conn.execute(sa.insert(clinics).values(id=clinic, tenant_id=tenant, name="Downtown",
                                               timezone="America/New_York", address="", phone="",
                                               created_at=ts(T0)))  # fmt: skip
        conn.execute(sa.insert(providers).values(id=provider, tenant_id=tenant, full_name="Dr. Rivera", title="MD",
                                                 kind="doctor", specialties=[], languages=[], modalities=["in_person"],
                                                 bio="", active=True, created_at=ts(T0)))  # fmt: skip
        conn.execute(sa.insert(patients).values(id=patient, tenant_id=tenant, full_name="Alice",
                                                email="a@h.example", phone="", locale="en", home_clinic_id=clinic,
                                                created_at=ts(T0)))  # fmt: skip
        # Many rows in one column, so the migration's batches (500 rows) are crossed.
        for n, text in enumerate([CANCEL, "", *(f"{CANCEL} #{i}" for i in range(520))]):
            row_id = uuid.uuid4()
            start = T0 + timedelta(days=1 + n)
            conn.execute(sa.insert(appointments).values(
                id=row_id, tenant_id=tenant, provider_id=provider, patient_id=patient, clinic_id=clinic,
                start_at=ts(start), end_at=ts(start + timedelta(minutes=50)), modality="in_person",
                status="cancelled" if text else "booked", version=1, cancel_reason=text, created_at=ts(T0),
                updated_at=ts(T0),
            ))  # fmt: skip
            written["appointments"].append((row_id, text))
        for n, text in enumerate([LEAVE, ""]):
            row_id = uuid.uuid4()
            start = T0 + timedelta(days=30 + n)
            conn.execute(sa.insert(time_off).values(id=row_id, tenant_id=tenant, provider_id=provider,
                                                    start_at=ts(start), end_at=ts(start + timedelta(hours=3)),
                                                    reason=text))  # fmt: skip
            written["time_off"].append((row_id, text))
        for n, text in enumerate([NOTE, "ü" * 500, ""]):
            row_id = uuid.uuid4()
            conn.execute(sa.insert(waitlist_entries).values(
                id=row_id, tenant_id=tenant, patient_id=patient, clinic_id=clinic, provider_id=provider,
                preferred_windows=[], timezone="America/New_York", earliest_date=date(2026, 11, 3), urgency=2,
                reason=text, status="waiting" if n == 0 else "cancelled", target_key=f"k{n}", version=1,
                created_at=ts(T0), updated_at=ts(T0), last_confirmed_at=ts(T0),
            ))  # fmt: skip
            written["waitlist_entries"].append((row_id, text))
    return written


COLUMN = {"appointments": "cancel_reason", "time_off": "reason", "waitlist_entries": "reason"}


def _stored(engine: sa.Engine, table: str) -> dict[uuid.UUID, str]:
    """The raw stored values: plain Text columns, no app type."""
    plain = _table(table, ("id", sa.Uuid()), (COLUMN[table], sa.Text()))
    with engine.connect() as conn:
        return {row[0]: row[1] for row in conn.execute(sa.select(*plain.c))}


def _through_models(engine: sa.Engine, table: str) -> dict[uuid.UUID, str]:
    """The values read with the application's column types (EncryptedText decrypts)."""
    model = metadata.tables[table]
    with engine.connect() as conn:
        return {row[0]: row[1] for row in conn.execute(sa.select(model.c.id, model.c[COLUMN[table]]))}


def _varchar_lengths(engine: sa.Engine) -> dict[str, Any]:
    inspector = sa.inspect(engine)
    return {
        table: next(getattr(c["type"], "length", None) for c in inspector.get_columns(table) if c["name"] == column)
        for table, column in COLUMN.items()
    }


def test_existing_rows_are_encrypted_and_downgrade_decrypts(scratch: tuple[Config, sa.Engine]) -> None:
    cfg, engine = scratch
    command.upgrade(cfg, BEFORE)
    written = _insert_plaintext(engine)
    assert _varchar_lengths(engine) == {"appointments": 500, "time_off": 200, "waitlist_entries": 500}

    command.upgrade(cfg, ENCRYPT)
    assert _varchar_lengths(engine) == dict.fromkeys(COLUMN)  # Text: no length
    for table, rows in written.items():
        stored = _stored(engine, table)
        for row_id, text in rows:
            if text:
                assert stored[row_id] != text and text[:12] not in stored[row_id]
                # Under the key the application derives from this session's SECRET_KEY.
                assert crypto.decrypt_text(stored[row_id]) == text
            else:
                assert stored[row_id] == ""
        assert _through_models(engine, table) == dict(rows)

    command.downgrade(cfg, BEFORE)
    assert _varchar_lengths(engine) == {"appointments": 500, "time_off": 200, "waitlist_entries": 500}
    for table, rows in written.items():
        assert _stored(engine, table) == dict(rows)


def test_the_migration_takes_the_keys_from_the_environment_or_its_caller(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENCRYPTION_KEYS in the environment (the first key encrypts), or keys lent by the program running alembic."""
    k1, k2, lent = (Fernet.generate_key().decode() for _ in range(3))
    for case in ("environment", "lent"):
        url = f"sqlite:///{tmp_path / f'{case}.db'}"
        cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
        cfg.set_main_option("sqlalchemy.url", url)
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        command.upgrade(cfg, BEFORE)
        written = _insert_plaintext(engine)
        if case == "environment":
            monkeypatch.setenv("ENCRYPTION_KEYS", f"{k1},{k2}")
            key = k1
        else:
            monkeypatch.delenv("ENCRYPTION_KEYS", raising=False)
            cfg.attributes["encryption_keys"] = lent
            key = lent
        command.upgrade(cfg, ENCRYPT)
        (row_id, text) = written["waitlist_entries"][0]
        assert Fernet(key.encode()).decrypt(_stored(engine, "waitlist_entries")[row_id].encode()).decode() == text
        command.downgrade(cfg, BEFORE)
        assert _stored(engine, "waitlist_entries")[row_id] == text
        engine.dispose()
