"""Free text that can carry clinical detail is stored encrypted (backend/crypto): the raw column holds a Fernet
token, never the words; services and the API give the words back; keys rotate without a row becoming unreadable."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlmodel import select

from backend import crypto
from backend.api.app import api
from backend.crypto import rotation
from backend.db import UnitOfWork
from backend.scheduling import availability, booking
from backend.scheduling.models import Appointment, TimeOff
from backend.settings import PROJECT_ROOT, get_settings
from backend.waitlist import service as waitlist
from backend.waitlist.models import WaitlistEntry
from tests.factories import Practice, add_appointment, bearer, call, future, make_practice

NOTE = "Panic attacks at night since the accident; sertraline 50 mg"
CANCEL = "Admitted to hospital, post-op recovery"
LEAVE = "Own surgery: knee"


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


def raw(engine: sa.Engine, table: str, column: str, row_id: uuid.UUID) -> str:
    """The stored value as the database holds it: a plain connection, no model, no type decorator."""
    with engine.connect() as conn:
        plain = sa.table(table, sa.column("id", sa.Uuid()), sa.column(column, sa.Text()))
        value = conn.execute(sa.select(plain.c[column]).where(plain.c.id == row_id)).scalar_one()
    assert isinstance(value, str)
    return value


def assert_ciphertext(stored: str, plaintext: str) -> None:
    assert stored != plaintext
    assert plaintext not in stored and plaintext.split()[0] not in stored
    assert stored.startswith("gAAAAA")  # a Fernet token (version byte 0x80, base64)
    assert crypto.decrypt_text(stored) == plaintext


# --- each column: ciphertext at rest, plaintext through the services and the API --------------------------------------


def test_note_to_the_care_team_is_encrypted_at_rest(client: TestClient, harbor: Practice, engine: sa.Engine) -> None:
    auth = bearer(client, harbor.patient_user.email)
    body = {"clinic_id": str(harbor.clinic.id), "provider_id": str(harbor.provider.id), "reason": NOTE}
    created = client.post("/api/v1/waitlists", json=body, headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["reason"] == NOTE
    entry_id = uuid.UUID(created.json()["id"])

    assert_ciphertext(raw(engine, "waitlist_entries", "reason", entry_id), NOTE)
    assert client.get(f"/api/v1/waitlists/{entry_id}", headers=auth).json()["reason"] == NOTE
    staff_view = call(harbor.doctor, waitlist.get_entry, entry_id)
    assert staff_view.reason == NOTE
    assert [v.reason for v in call(harbor.admin, waitlist.list_entries)] == [NOTE]


def test_cancellation_reason_is_encrypted_at_rest(client: TestClient, harbor: Practice, engine: sa.Engine) -> None:
    appointment = add_appointment(harbor, future(days=5))
    auth = bearer(client, harbor.patient_user.email)
    cancelled = client.post(f"/api/v1/appointments/{appointment.id}/cancel", json={"reason": CANCEL}, headers=auth)
    assert cancelled.status_code == 200, cancelled.text

    assert_ciphertext(raw(engine, "appointments", "cancel_reason", appointment.id), CANCEL)
    with UnitOfWork(harbor.doctor) as uow:
        assert uow.session.get(Appointment, appointment.id).cancel_reason == CANCEL  # type: ignore[union-attr]
        # A column selected on its own (as My appointments does) is decrypted too.
        assert uow.session.exec(select(Appointment.cancel_reason)).one() == CANCEL

    # The service path (the pages call it) and no reason at all: nothing to hide, stored empty.
    other = add_appointment(harbor, future(days=6))
    call(harbor.doctor, booking.cancel_appointment, other.id)
    assert raw(engine, "appointments", "cancel_reason", other.id) == ""


def test_time_off_reason_is_encrypted_at_rest(client: TestClient, harbor: Practice, engine: sa.Engine) -> None:
    auth = bearer(client, harbor.doctor_user.email)
    start = future(days=9, hour=8)
    body = {"start": start.isoformat(), "end": (start + timedelta(hours=4)).isoformat(), "reason": LEAVE}
    created = client.post(f"/api/v1/providers/{harbor.provider.id}/time-off", json=body, headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["reason"] == LEAVE
    time_off_id = uuid.UUID(created.json()["id"])

    assert_ciphertext(raw(engine, "time_off", "reason", time_off_id), LEAVE)
    view = call(harbor.doctor, availability.list_availability, harbor.provider.id)
    assert [t.reason for t in view.time_off] == [LEAVE]


def test_length_limits_apply_to_the_plaintext(client: TestClient, harbor: Practice, engine: sa.Engine) -> None:
    """500 characters of multi-byte text still fit (its token is far longer than the old VARCHAR(500)); 501 do not."""
    auth = bearer(client, harbor.patient_user.email)
    body = {"clinic_id": str(harbor.clinic.id), "provider_id": str(harbor.provider.id)}
    too_long = client.post("/api/v1/waitlists", json={**body, "reason": "ü" * 501}, headers=auth)
    assert too_long.status_code == 422
    with UnitOfWork(harbor.admin) as uow:
        assert uow.session.exec(select(WaitlistEntry)).all() == []

    created = client.post("/api/v1/waitlists", json={**body, "reason": "ü" * 500}, headers=auth)
    assert created.status_code == 201, created.text
    stored = raw(engine, "waitlist_entries", "reason", uuid.UUID(created.json()["id"]))
    assert len(stored) > 1000 and crypto.decrypt_text(stored) == "ü" * 500


# --- key rotation ---------------------------------------------------------------------------------------------------


def _tokens(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {
            "entry": conn.execute(sa.text("SELECT reason FROM waitlist_entries")).scalar_one(),
            "appointment": conn.execute(
                sa.text("SELECT cancel_reason FROM appointments WHERE cancel_reason <> ''")
            ).scalar_one(),
            "time_off": conn.execute(sa.text("SELECT reason FROM time_off")).scalar_one(),
        }


def _read_all(practice: Practice) -> tuple[str, str, str]:
    with UnitOfWork(practice.admin) as uow:
        s = uow.session
        entry = s.exec(select(WaitlistEntry)).one()
        (cancel_reason,) = [a.cancel_reason for a in s.exec(select(Appointment)) if a.cancel_reason]
        time_off = s.exec(select(TimeOff)).one()
        return entry.reason, cancel_reason, time_off.reason


def test_key_rotation(harbor: Practice, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    k1, k2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings = get_settings()

    # Written under K1 alone.
    monkeypatch.setattr(settings, "encryption_keys", k1)
    call(harbor.patient_actor, booking.cancel_appointment, add_appointment(harbor, future(days=4)).id, reason=CANCEL)
    call(harbor.patient_actor, waitlist.join_waitlist,
         waitlist.JoinRequest(clinic_id=harbor.clinic.id, provider_id=harbor.provider.id, reason=NOTE))  # fmt: skip
    start = future(days=8, hour=8)
    call(harbor.doctor, availability.add_time_off, harbor.provider.id, start=start, end=start + timedelta(hours=2),
         reason=LEAVE)  # fmt: skip
    under_k1 = _tokens(engine)
    assert all(Fernet(k1.encode()).decrypt(t.encode()) for t in under_k1.values())

    # K2 becomes current, K1 stays in the ring: every row still reads, nothing was rewritten.
    monkeypatch.setattr(settings, "encryption_keys", f"{k2},{k1}")
    assert _read_all(harbor) == (NOTE, CANCEL, LEAVE)
    assert _tokens(engine) == under_k1
    report = {r.column: (r.current, r.older, r.unreadable) for r in rotation.survey()}
    assert report["waitlist_entries.reason"] == report["appointments.cancel_reason"] == report["time_off.reason"]
    assert report["time_off.reason"] == (0, 1, 0)

    # Dropping K1 before rotating would make them unreadable.
    monkeypatch.setattr(settings, "encryption_keys", k2)
    with pytest.raises(crypto.DecryptionError):
        _read_all(harbor)
    monkeypatch.setattr(settings, "encryption_keys", f"{k2},{k1}")

    # The operator's command, as the README tells it (its own process, the keys from the environment).
    env = {**os.environ, "ENCRYPTION_KEYS": f"{k2},{k1}", "DATABASE_URL": settings.database_url}
    done = subprocess.run([sys.executable, "-m", "backend.crypto", "rotate"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "waitlist_entries.reason: 0 current, 1 re-encrypted under the current key, 0 unreadable" in done.stdout
    assert "the older keys can be removed" in done.stdout
    rotated = _tokens(engine)
    assert all(rotated[name] != under_k1[name] for name in rotated)
    assert all(Fernet(k2.encode()).decrypt(t.encode()) for t in rotated.values())

    # K1 removed: everything still reads, and a second rotation has nothing left to do.
    monkeypatch.setattr(settings, "encryption_keys", k2)
    assert _read_all(harbor) == (NOTE, CANCEL, LEAVE)
    assert all((r.current, r.older, r.unreadable) == (1, 0, 0) for r in rotation.rotate())
    assert _tokens(engine) == rotated


def test_status_flags_values_no_key_can_read(
    harbor: Practice, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lost = Fernet.generate_key().decode()
    monkeypatch.setattr(get_settings(), "encryption_keys", lost)
    call(harbor.patient_actor, waitlist.join_waitlist,
         waitlist.JoinRequest(clinic_id=harbor.clinic.id, provider_id=harbor.provider.id, reason=NOTE))  # fmt: skip
    monkeypatch.setattr(get_settings(), "encryption_keys", Fernet.generate_key().decode())
    before = _tokens_of(engine)
    assert rotation.main(["rotate"]) == 1  # nothing it cannot read is touched, and the operator is told
    assert "waitlist_entries.reason: 0 current, 0 re-encrypted under the current key, 1 unreadable" in (
        capsys.readouterr().out
    )
    assert _tokens_of(engine) == before


def _tokens_of(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT reason FROM waitlist_entries ORDER BY id")).scalars())


def test_rotation_goes_batch_by_batch(harbor: Practice, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    k1, k2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setattr(get_settings(), "encryption_keys", k1)
    for days in range(1, 8):
        appointment = add_appointment(harbor, future(days=days))
        call(harbor.doctor, booking.cancel_appointment, appointment.id, reason=f"{CANCEL} {days}")
    monkeypatch.setattr(get_settings(), "encryption_keys", f"{k2},{k1}")
    report = {r.column: r for r in rotation.rotate(batch=3)}["appointments.cancel_reason"]
    assert (report.current, report.older, report.unreadable) == (0, 7, 0)
    monkeypatch.setattr(get_settings(), "encryption_keys", k2)
    with UnitOfWork(harbor.admin) as uow:
        reasons = sorted(a.cancel_reason for a in uow.session.exec(select(Appointment)))
    assert reasons == sorted(f"{CANCEL} {days}" for days in range(1, 8))
