"""Alembic migrations: up/down cycles, no drift from the models, and the 0002 clinic backfill.

Each test migrates its OWN scratch database (a PostgreSQL database created here and dropped afterwards, or a
SQLite file under tmp_path), never the session's test database.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql

from backend.models import metadata
from backend.settings import PROJECT_ROOT

ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

HEAD = "0022_provider_next_free"
HOT_QUERY_INDEXES = "0021_hot_query_indexes"
PAYMENTS = "0020_payments"
SELF_REGISTRATION = "0019_self_registration"
AUDIT_CHAIN_SHARDS = "0018_audit_chain_shards"
PRACTICE_TEXTS = "0017_practice_texts"
ONBOARDING = "0016_onboarding"
RLS = "0015_rls"
SSO = "0014_sso"
ENCRYPT_FREE_TEXT = "0013_encrypt_free_text"
AUDIT_READS = "0012_audit_reads"
IDLE_LOGOFF = "0011_idle_logoff"
MFA = "0010_mfa"
DELIVERY_FENCING = "0009_delivery_fencing"
REVOCABLE_TOKENS = "0008_revocable_tokens"
DELIVERY_REPORTS = "0007_delivery_reports"
REMINDERS = "0006_reminders"
NOTIFICATIONS = "0005_notifications"
WAITLIST = "0004_waitlist"
BOOKING = "0003_booking"
BACKFILL = "0002_backfill_clinics"
INITIAL = "0001_initial"


# --- scratch databases -------------------------------------------------------------------------------


def _pg_url(name: str) -> str:
    base = ADMIN_URL.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"scratch_alembic_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'scratch_alembic.db'}"


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")


def _config(url: str) -> Config:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


@pytest.fixture
def engine_for() -> Iterator[Any]:
    """engine_for(url) -> a pool-less engine, disposed after the test (so DROP DATABASE is not blocked)."""
    engines: list[sa.Engine] = []

    def make(url: str) -> sa.Engine:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def _revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


# --- up / down ---------------------------------------------------------------------------------------


def test_revisions_are_linear_with_readable_ids() -> None:
    script = ScriptDirectory.from_config(_config("sqlite://"))
    assert script.get_heads() == [HEAD]
    chain = [rev.revision for rev in script.walk_revisions()]
    assert chain == [HEAD, HOT_QUERY_INDEXES, PAYMENTS, SELF_REGISTRATION, AUDIT_CHAIN_SHARDS, PRACTICE_TEXTS,
                     ONBOARDING, RLS, SSO, ENCRYPT_FREE_TEXT, AUDIT_READS, IDLE_LOGOFF, MFA, DELIVERY_FENCING,
                     REVOCABLE_TOKENS, DELIVERY_REPORTS, REMINDERS, NOTIFICATIONS, WAITLIST, BOOKING, BACKFILL,
                     INITIAL]  # fmt: skip


def test_upgrade_downgrade_upgrade(db_url: str, engine_for: Any) -> None:
    cfg = _config(db_url)
    engine = engine_for(db_url)
    expected = set(metadata.tables)

    command.upgrade(cfg, "head")
    assert _tables(engine) == expected
    assert _revision(engine) == HEAD

    command.downgrade(cfg, "base")
    assert _tables(engine) == set()
    assert _revision(engine) is None

    command.upgrade(cfg, "head")
    assert _tables(engine) == expected
    assert _revision(engine) == HEAD


# --- drift -------------------------------------------------------------------------------------------


def _diffs(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "render_as_batch": True, "target_metadata": metadata}
        )
        return compare_metadata(context, metadata)


def test_no_drift_between_models_and_migrations(db_url: str, engine_for: Any) -> None:
    command.upgrade(_config(db_url), "head")
    # Both dialects compare clean today. Should SQLite ever report something that is only a reflection
    # limitation (e.g. it stores no time zone flag on DATETIME), filter exactly that here, with the reason.
    assert _diffs(engine_for(db_url)) == []


def test_drift_check_is_live(pg_url: str, engine_for: Any) -> None:
    """At 0001 the comparison must see what later revisions add: the check really runs."""
    command.upgrade(_config(pg_url), INITIAL)
    diffs = _diffs(engine_for(pg_url))
    nullable = [d[0] for d in diffs if isinstance(d, list) and d[0][0] == "modify_nullable"]
    assert [(op[2], op[3], op[5], op[6]) for op in nullable] == [
        ("appointments", "clinic_id", True, False),
        ("notifications", "patient_id", False, True),
    ]
    added_tables = {d[1].name for d in diffs if isinstance(d, tuple) and d[0] == "add_table"}
    assert added_tables == {
        "booking_policies",
        "notification_deliveries",
        "appointment_reminders",
        "notification_settings",
        "practice_sso",
        "mfa_recovery_codes",
        "audit_access_events",
        "onboarding_links",
        "practice_texts",
        "registrations",
        "fee_policies",
        "fee_policy_acceptances",
        "payment_methods",
        "payments",
        "provider_next_free",
    }


def test_named_check_constraints_and_partial_indexes_exist(db_url: str, engine_for: Any) -> None:
    """Alembic's autogenerate compares neither CHECK constraints nor index predicates; check them here."""
    command.upgrade(_config(db_url), "head")
    engine = engine_for(db_url)
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        expected = {c.name for c in table.constraints if isinstance(c, sa.CheckConstraint)}
        actual = {c["name"] for c in inspector.get_check_constraints(table.name)}
        assert actual == expected, table.name

    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            rows = conn.execute(
                sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'waitlist_policies'")
            )
        else:
            rows = conn.execute(
                sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'waitlist_policies'")
            )
        definitions = {name: sql for name, sql in rows if sql}
    assert "UNIQUE" in definitions["uq_waitlist_policies_default"].upper()
    assert "WHERE" in definitions["uq_waitlist_policies_default"].upper()
    assert "IS NULL" in definitions["uq_waitlist_policies_default"].upper()
    assert "IS NOT NULL" in definitions["uq_waitlist_policies_clinic"].upper()


def test_overlap_exclusion_constraints_come_and_go_with_0003(pg_url: str, engine_for: Any) -> None:
    """Invariant 1 lives in PostgreSQL: 0003 adds both exclusion constraints and its downgrade removes them."""
    cfg = _config(pg_url)
    engine = engine_for(pg_url)
    query = sa.text(
        "SELECT conname FROM pg_constraint WHERE contype = 'x' AND conrelid = 'appointments'::regclass ORDER BY 1"
    )
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert list(conn.execute(query).scalars()) == [
            "ex_appointments_patient_overlap",
            "ex_appointments_provider_overlap",
        ]
    command.downgrade(cfg, BACKFILL)
    with engine.connect() as conn:
        assert list(conn.execute(query).scalars()) == []


# --- 0002: the clinic backfill -----------------------------------------------------------------------

# The 0001 schema, as far as these inserts need it (plain constructs, like the migrations themselves).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
tenants = sa.table(
    "tenants", sa.column("id", sa.Uuid()), sa.column("name"), sa.column("slug"), sa.column("created_at", TS)
)
clinics = sa.table(
    "clinics",
    sa.column("id", sa.Uuid()),
    sa.column("tenant_id", sa.Uuid()),
    sa.column("name"),
    sa.column("timezone"),
    sa.column("address"),
    sa.column("phone"),
    sa.column("archived_at", TS),
    sa.column("created_at", TS),
)
providers = sa.table(
    "providers",
    sa.column("id", sa.Uuid()),
    sa.column("tenant_id", sa.Uuid()),
    sa.column("full_name"),
    sa.column("title"),
    sa.column("kind"),
    sa.column("specialties", JSON),
    sa.column("languages", JSON),
    sa.column("modalities", JSON),
    sa.column("bio"),
    sa.column("active", sa.Boolean()),
    sa.column("created_at", TS),
)
provider_clinics = sa.table(
    "provider_clinics",
    sa.column("tenant_id", sa.Uuid()),
    sa.column("provider_id", sa.Uuid()),
    sa.column("clinic_id", sa.Uuid()),
)
patients = sa.table(
    "patients",
    sa.column("id", sa.Uuid()),
    sa.column("tenant_id", sa.Uuid()),
    sa.column("full_name"),
    sa.column("email"),
    sa.column("phone"),
    sa.column("locale"),
    sa.column("home_clinic_id", sa.Uuid()),
    sa.column("created_at", TS),
)
appointments = sa.table(
    "appointments",
    sa.column("id", sa.Uuid()),
    sa.column("tenant_id", sa.Uuid()),
    sa.column("provider_id", sa.Uuid()),
    sa.column("patient_id", sa.Uuid()),
    sa.column("clinic_id", sa.Uuid()),
    sa.column("start_at", TS),
    sa.column("end_at", TS),
    sa.column("modality"),
    sa.column("status"),
    sa.column("version", sa.Integer()),
    sa.column("cancel_reason"),
    sa.column("created_at", TS),
    sa.column("updated_at", TS),
)

T0 = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)


def _ts(engine: sa.Engine, value: datetime) -> datetime:
    # What the app's UTCDateTime stores: naive UTC on SQLite, aware elsewhere.
    return value.replace(tzinfo=None) if engine.dialect.name == "sqlite" else value


def _add_tenant(conn: sa.Connection, slug: str) -> uuid.UUID:
    tenant_id = uuid.uuid4()
    conn.execute(sa.insert(tenants).values(id=tenant_id, name=slug.title(), slug=slug, created_at=T0))
    return tenant_id


def _add_clinic(
    conn: sa.Connection, tenant_id: uuid.UUID, name: str, created_at: datetime, archived: bool = False
) -> uuid.UUID:
    clinic_id = uuid.uuid4()
    conn.execute(
        sa.insert(clinics).values(
            id=clinic_id,
            tenant_id=tenant_id,
            name=name,
            timezone="Europe/Berlin",
            address="",
            phone="",
            archived_at=created_at if archived else None,
            created_at=created_at,
        )
    )
    return clinic_id


def _add_legacy_rows(conn: sa.Connection, tenant_id: uuid.UUID) -> dict[str, uuid.UUID]:
    """A provider (no clinic link), a patient (no home clinic), an appointment (clinic_id NULL)."""
    ids = {"provider": uuid.uuid4(), "patient": uuid.uuid4(), "appointment": uuid.uuid4()}
    conn.execute(
        sa.insert(providers).values(
            id=ids["provider"],
            tenant_id=tenant_id,
            full_name="Dr. Legacy",
            title="MD",
            kind="doctor",
            specialties=["Psychiatry"],
            languages=["English"],
            modalities=["in_person"],
            bio="",
            active=True,
            created_at=T0,
        )
    )
    conn.execute(
        sa.insert(patients).values(
            id=ids["patient"],
            tenant_id=tenant_id,
            full_name="Pat Legacy",
            email="pat@legacy.example",
            phone="",
            locale="en",
            home_clinic_id=None,
            created_at=T0,
        )
    )
    conn.execute(
        sa.insert(appointments).values(
            id=ids["appointment"],
            tenant_id=tenant_id,
            provider_id=ids["provider"],
            patient_id=ids["patient"],
            clinic_id=None,
            start_at=T0 + timedelta(days=1),
            end_at=T0 + timedelta(days=1, minutes=50),
            modality="in_person",
            status="booked",
            version=1,
            cancel_reason="",
            created_at=T0,
            updated_at=T0,
        )
    )
    return ids


def _clinics_of(conn: sa.Connection, tenant_id: uuid.UUID) -> list[Any]:
    return list(conn.execute(sa.select(clinics).where(clinics.c.tenant_id == tenant_id).order_by(clinics.c.name)))


def _links_of(conn: sa.Connection, provider_id: uuid.UUID) -> list[uuid.UUID]:
    query = sa.select(provider_clinics.c.clinic_id).where(provider_clinics.c.provider_id == provider_id)
    return list(conn.execute(query).scalars())


def _assert_backfilled(conn: sa.Connection, ids: dict[str, uuid.UUID], clinic_id: uuid.UUID) -> None:
    appointment_clinic = conn.execute(
        sa.select(appointments.c.clinic_id).where(appointments.c.id == ids["appointment"])
    ).scalar_one()
    home_clinic = conn.execute(sa.select(patients.c.home_clinic_id).where(patients.c.id == ids["patient"])).scalar_one()
    assert appointment_clinic == clinic_id
    assert home_clinic == clinic_id
    assert _links_of(conn, ids["provider"]) == [clinic_id]


def test_backfill_clinics(db_url: str, engine_for: Any) -> None:
    cfg = _config(db_url)
    engine = engine_for(db_url)
    command.upgrade(cfg, INITIAL)

    with engine.begin() as conn:
        # A tenant from before clinics: no clinic at all.
        bare = _add_tenant(conn, "bare")
        bare_rows = _add_legacy_rows(conn, bare)
        # A tenant with clinics: an archived one (oldest), then the first live one, then a newer one.
        clinical = _add_tenant(conn, "clinical")
        _add_clinic(conn, clinical, "Closed site", _ts(engine, T0 - timedelta(days=30)), archived=True)
        first_live = _add_clinic(conn, clinical, "First site", _ts(engine, T0 - timedelta(days=20)))
        _add_clinic(conn, clinical, "Second site", _ts(engine, T0 - timedelta(days=10)))
        clinical_rows = _add_legacy_rows(conn, clinical)
        # An already linked provider keeps its one link.
        linked_provider = _add_legacy_rows(conn, clinical)["provider"]
        conn.execute(
            sa.insert(provider_clinics).values(tenant_id=clinical, provider_id=linked_provider, clinic_id=first_live)
        )
        # A tenant with nothing to backfill gets no clinic.
        empty = _add_tenant(conn, "empty")

    command.upgrade(cfg, "head")

    with engine.connect() as conn:
        (main_clinic,) = _clinics_of(conn, bare)
        assert (main_clinic.name, main_clinic.timezone, main_clinic.archived_at) == ("Main clinic", "UTC", None)
        _assert_backfilled(conn, bare_rows, main_clinic.id)

        assert [c.name for c in _clinics_of(conn, clinical)] == ["Closed site", "First site", "Second site"]
        _assert_backfilled(conn, clinical_rows, first_live)
        assert _links_of(conn, linked_provider) == [first_live]

        assert _clinics_of(conn, empty) == []

    # appointments.clinic_id is NOT NULL now.
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        _add_legacy_rows(conn, bare)

    # Downgrade keeps the data; upgrading again finds nothing to do (no new clinics, no duplicate links).
    command.downgrade(cfg, INITIAL)
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert len(_clinics_of(conn, bare)) == 1
        _assert_backfilled(conn, bare_rows, main_clinic.id)
        _assert_backfilled(conn, clinical_rows, first_live)
