"""The acting context every service function receives."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    PATIENT = "patient"
    DOCTOR = "doctor"
    ADMIN = "admin"
    # Celery tasks and the seed act as the system inside one tenant; never issued to a person.
    SYSTEM = "system"


# When one user holds several roles the login picks the broadest.
ROLE_PRIORITY = {Role.ADMIN: 0, Role.DOCTOR: 1, Role.PATIENT: 2}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting, in which tenant, with which role."""

    tenant_id: uuid.UUID
    role: Role
    user_id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None
    provider_id: uuid.UUID | None = None

    @classmethod
    def system(cls, tenant_id: uuid.UUID) -> Actor:
        """Return the context for background work inside one tenant."""
        return cls(tenant_id=tenant_id, role=Role.SYSTEM)

    @property
    def is_staff(self) -> bool:
        return self.role in {Role.DOCTOR, Role.ADMIN, Role.SYSTEM}
