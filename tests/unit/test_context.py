"""Actor, roles, require_role, the service registry wrapper, and small pure helpers (no database)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
import sqlalchemy as sa

from backend import service as service_module
from backend.api.routes.auth import HOME_BY_ROLE, _safe_next
from backend.db import UnitOfWork
from backend.errors import (
    AuthenticationFailed,
    Conflict,
    DomainError,
    NotFound,
    PermissionDenied,
    RateLimited,
    TenantScopeError,
    ValidationFailed,
)
from backend.service import require_role, service_function
from backend.tenancy.context import ROLE_PRIORITY, Actor, Role

TENANT = uuid.UUID("33333333-3333-4333-8333-333333333333")
OTHER_TENANT = uuid.UUID("44444444-4444-4444-8444-444444444444")
ENGINE = sa.create_engine("sqlite://")  # never connected: a unit of work only opens a session on enter


def test_system_actor() -> None:
    actor = Actor.system(TENANT)
    assert actor.tenant_id == TENANT
    assert actor.role is Role.SYSTEM
    assert actor.user_id is None and actor.patient_id is None and actor.provider_id is None
    assert actor.is_staff


@pytest.mark.parametrize(("role", "staff"), [(Role.PATIENT, False), (Role.DOCTOR, True), (Role.ADMIN, True)])
def test_is_staff(role: Role, staff: bool) -> None:
    assert Actor(tenant_id=TENANT, role=role).is_staff is staff


def test_actor_is_immutable_and_compares_by_value() -> None:
    user = uuid.uuid4()
    actor = Actor(tenant_id=TENANT, role=Role.ADMIN, user_id=user)
    with pytest.raises(dataclasses.FrozenInstanceError):
        actor.tenant_id = OTHER_TENANT  # type: ignore[misc]
    assert actor == Actor(tenant_id=TENANT, role=Role.ADMIN, user_id=user)
    assert hash(actor) == hash(Actor(tenant_id=TENANT, role=Role.ADMIN, user_id=user))
    assert actor != Actor(tenant_id=OTHER_TENANT, role=Role.ADMIN, user_id=user)
    assert not hasattr(actor, "__dict__")  # slots: no stray attributes can be attached


def test_roles_are_strings_and_login_picks_the_broadest() -> None:
    assert Role("doctor") is Role.DOCTOR and str(Role.ADMIN) == "admin"
    assert sorted([Role.PATIENT, Role.ADMIN, Role.DOCTOR], key=ROLE_PRIORITY.__getitem__) == [
        Role.ADMIN,
        Role.DOCTOR,
        Role.PATIENT,
    ]
    assert Role.SYSTEM not in ROLE_PRIORITY  # never issued to a person


def test_require_role() -> None:
    admin, doctor, patient, system = (
        Actor(tenant_id=TENANT, role=r) for r in (Role.ADMIN, Role.DOCTOR, Role.PATIENT, Role.SYSTEM)
    )
    require_role(admin, Role.ADMIN)
    require_role(doctor, Role.DOCTOR, Role.ADMIN)
    require_role(system, Role.ADMIN)  # the system may do what an admin may
    for actor, roles in [(patient, (Role.ADMIN,)), (doctor, (Role.ADMIN,)), (system, (Role.DOCTOR,))]:
        with pytest.raises(PermissionDenied, match="your role may not do this"):
            require_role(actor, *roles)


def test_unit_of_work_needs_an_actor() -> None:
    with pytest.raises(TenantScopeError, match="needs an actor"):
        UnitOfWork(engine=ENGINE)
    assert UnitOfWork(engine=ENGINE, system=True).tenant_id is None
    assert UnitOfWork(Actor.system(TENANT), engine=ENGINE).tenant_id == TENANT


def test_service_function_registers_and_checks_its_unit_of_work(monkeypatch: pytest.MonkeyPatch) -> None:
    registry: dict[str, object] = {}
    monkeypatch.setattr(service_module, "SERVICE_FUNCTIONS", registry)

    @service_function
    def sample(actor: Actor, uow: UnitOfWork, value: int) -> int:
        return value * 2

    assert list(registry) == [f"{__name__}.{sample.__qualname__}"]
    assert registry[f"{__name__}.{sample.__qualname__}"] is sample
    actor = Actor(tenant_id=TENANT, role=Role.ADMIN)
    assert sample(actor, UnitOfWork(actor, engine=ENGINE), 21) == 42
    with pytest.raises(TenantScopeError, match="another tenant"):
        sample(actor, UnitOfWork(Actor.system(OTHER_TENANT), engine=ENGINE), 1)
    with pytest.raises(TenantScopeError):
        sample(actor, UnitOfWork(engine=ENGINE, system=True), 1)
    with pytest.raises(TypeError, match=r"takes \(actor, uow"):
        sample("not an actor", UnitOfWork(actor, engine=ENGINE), 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sample(actor, object(), 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("target", ["/patient", "/admin/clinics?tab=2", "/"])
def test_safe_next_keeps_same_site_paths(target: str) -> None:
    assert _safe_next(target) == target


@pytest.mark.parametrize(
    "target", [None, "", "//evil.example", "//evil.example/admin", "https://evil.example", "/\\evil.example", "admin"]
)
def test_safe_next_drops_other_sites(target: str | None) -> None:
    assert _safe_next(target) is None


def test_every_person_role_has_a_home() -> None:
    assert HOME_BY_ROLE == {Role.PATIENT: "/patient", Role.DOCTOR: "/doctor", Role.ADMIN: "/admin"}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (DomainError("x"), 400),
        (AuthenticationFailed("x"), 401),
        (PermissionDenied("x"), 403),
        (NotFound("clinic"), 404),
        (Conflict("x"), 409),
        (ValidationFailed("x"), 422),
        (RateLimited("x", retry_after=7), 429),
    ],
)
def test_domain_error_statuses(error: DomainError, status: int) -> None:
    assert error.status_code == status
    assert error.message == str(error)


def test_not_found_message_names_only_the_kind() -> None:
    # The same text for a missing row and another tenant's row: nothing to tell them apart.
    assert NotFound("clinic").message == "clinic not found"
    assert RateLimited("slow down", retry_after=7).retry_after == 7
