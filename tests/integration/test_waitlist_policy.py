"""The waitlist policy: built-in defaults, the practice default, clinic overrides; bounds, roles and audit."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.errors import NotFound, PermissionDenied, ValidationFailed
from backend.tenancy.context import Actor
from backend.waitlist import service as waitlist
from backend.waitlist.models import WaitlistPolicy
from backend.waitlist.policy import POLICY_BOUNDS, effective_policy
from backend.waitlist.service import JoinRequest, PolicyView
from tests.factories import Practice, make_practice, rows


@pytest.fixture
def p(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


def run(actor: Actor, fn: Any, *args: Any, **kwargs: Any) -> Any:
    with UnitOfWork(actor) as uow:
        result = fn(actor, uow, *args, **kwargs)
        uow.commit()
        return result


def get(p: Practice, clinic_id: uuid.UUID | None = None) -> PolicyView:
    return run(p.admin, waitlist.get_waitlist_policy, clinic_id)  # type: ignore[no-any-return]


def put(p: Practice, clinic_id: uuid.UUID | None, **changes: Any) -> PolicyView:
    return run(p.admin, waitlist.put_waitlist_policy, clinic_id, changes)  # type: ignore[no-any-return]


def test_built_in_defaults(p: Practice) -> None:
    view = get(p)
    assert view.source == "default" and view.clinic_id is None
    assert (view.max_active_per_provider, view.max_entries_per_patient, view.entry_ttl_days) == (50, 3, 90)
    assert (view.quiet_hours_start, view.quiet_hours_end) == ("21:00", "08:00")
    assert get(p, p.clinic.id).source == "default"
    assert rows(p, WaitlistPolicy) == []  # reading writes nothing


def test_practice_default_then_clinic_override_then_fallback(p: Practice) -> None:
    practice = put(p, None, max_active_per_provider=10, quiet_hours_start="22:30", auto_offer=False)
    assert practice.source == "practice" and practice.max_active_per_provider == 10
    assert practice.quiet_hours_start == "22:30" and practice.auto_offer is False
    assert get(p, p.clinic.id).source == "practice"

    clinic = put(p, p.clinic.id, offer_hold_minutes=15, quiet_hours_end=None)
    assert clinic.source == "clinic" and clinic.clinic_id == p.clinic.id
    # The override starts from the practice default: only the fields sent differ.
    assert (clinic.max_active_per_provider, clinic.auto_offer, clinic.quiet_hours_start) == (10, False, "22:30")
    assert (clinic.offer_hold_minutes, clinic.quiet_hours_end) == (15, None)
    assert get(p, p.clinic2.id).source == "practice"
    with UnitOfWork(p.system) as uow:
        assert effective_policy(uow, p.clinic.id).offer_hold.total_seconds() == 15 * 60

    put(p, None, max_active_per_provider=20)  # the practice changes; the override keeps its own value
    assert get(p, p.clinic.id).max_active_per_provider == 10

    run(p.admin, waitlist.delete_clinic_waitlist_policy, p.clinic.id)
    fallback = get(p, p.clinic.id)
    assert fallback.source == "practice" and fallback.max_active_per_provider == 20
    run(p.admin, waitlist.delete_clinic_waitlist_policy, p.clinic.id)  # nothing left to delete: no-op

    audit = [(e.action, e.data) for e in sorted(rows(p, AuditEvent), key=lambda e: e.occurred_at)]
    assert [a for a, _ in audit] == [
        "waitlist_policy.updated",
        "waitlist_policy.updated",
        "waitlist_policy.updated",
        "waitlist_policy.deleted",
    ]
    assert audit[0][1] == {
        "clinic_id": None,
        "fields": ["auto_offer", "max_active_per_provider", "quiet_hours_start"],
        "created": True,
    }
    assert audit[1][1] == {
        "clinic_id": str(p.clinic.id),
        "fields": ["offer_hold_minutes", "quiet_hours_end"],
        "created": True,
    }
    assert audit[2][1]["fields"] == ["max_active_per_provider"] and audit[2][1]["created"] is False


def test_unchanged_values_write_no_audit(p: Practice) -> None:
    put(p, None, offers_per_batch=2)
    put(p, None, offers_per_batch=2)
    assert len(rows(p, AuditEvent)) == 1


def test_clinic_override_limits_apply_to_joins(p: Practice) -> None:
    put(p, p.clinic.id, max_entries_per_patient=1)
    run(p.patient_actor, waitlist.join_waitlist, JoinRequest(clinic_id=p.clinic.id, provider_id=p.provider.id))
    with pytest.raises(ValidationFailed, match=r"max_entries_per_patient \(1\) reached"):
        run(p.patient_actor, waitlist.join_waitlist, JoinRequest(clinic_id=p.clinic.id))


BAD: list[tuple[dict[str, Any], str]] = [
    ({"max_active_per_provider": 0}, "max_active_per_provider"),
    ({"max_entries_per_patient": 21}, "max_entries_per_patient"),
    ({"offer_hold_minutes": 4}, "offer_hold_minutes"),
    ({"entry_ttl_days": 1.5}, "entry_ttl_days"),
    ({"urgency_weight": 101}, "urgency_weight"),
    ({"fit_weight": "heavy"}, "fit_weight"),
    ({"reconfirm_interval_days": float("nan")}, "reconfirm_interval_days"),  # not a 500: NaN has no int()
    ({"wait_weight": float("inf")}, "wait_weight"),
    ({"offers_per_batch": None}, "offers_per_batch"),
    ({"auto_offer": "yes"}, "auto_offer"),
    ({"quiet_hours_start": "25:00"}, "quiet_hours_start"),
    ({"quiet_hours_start": "08:00", "quiet_hours_end": "08:00"}, "quiet_hours_end"),
    ({"tenant_id": str(uuid.uuid4())}, "tenant_id"),
]


@pytest.mark.parametrize(("changes", "field"), BAD, ids=[f for _, f in BAD])
def test_out_of_bounds_changes_are_refused_naming_the_field(p: Practice, changes: dict[str, Any], field: str) -> None:
    for clinic_id in (None, p.clinic.id):
        with pytest.raises(ValidationFailed) as refused:
            run(p.admin, waitlist.put_waitlist_policy, clinic_id, changes)
        assert refused.value.field == field and field in refused.value.message
    assert rows(p, WaitlistPolicy) == [] and rows(p, AuditEvent) == []


def test_every_bounded_field_accepts_its_bounds(p: Practice) -> None:
    for name, (low, high) in POLICY_BOUNDS.items():
        assert getattr(put(p, None, **{name: low}), name) == low
        assert getattr(put(p, None, **{name: high}), name) == high


def test_only_admins_write_or_read_policy(p: Practice) -> None:
    for actor in (p.doctor, p.patient_actor):
        for call, args in (
            (waitlist.get_waitlist_policy, (None,)),
            (waitlist.put_waitlist_policy, (None, {"offers_per_batch": 2})),
            (waitlist.put_waitlist_policy, (p.clinic.id, {"offers_per_batch": 2})),
            (waitlist.delete_clinic_waitlist_policy, (p.clinic.id,)),
        ):
            with pytest.raises(PermissionDenied):
                run(actor, call, *args)
    assert rows(p, WaitlistPolicy) == []
    assert put(p, None, offers_per_batch=2).offers_per_batch == 2  # the system actor may, too
    assert run(p.system, waitlist.get_waitlist_policy).offers_per_batch == 2


def test_unknown_clinic_is_not_found(p: Practice) -> None:
    for call, args in (
        (waitlist.get_waitlist_policy, (uuid.uuid4(),)),
        (waitlist.put_waitlist_policy, (uuid.uuid4(), {"offers_per_batch": 2})),
        (waitlist.delete_clinic_waitlist_policy, (uuid.uuid4(),)),
    ):
        with pytest.raises(NotFound, match="clinic not found"):
            run(p.admin, call, *args)
