"""The registry of service functions: each takes (actor, uow, ...) and runs inside the actor's tenant."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from backend.db import UnitOfWork
from backend.errors import PermissionDenied, TenantScopeError
from backend.tenancy.context import Actor, Role

P = ParamSpec("P")
R = TypeVar("R")

# Every public service function, by dotted name. The tenant-isolation test walks this registry,
# so a new service function cannot land without a cross-tenant case.
SERVICE_FUNCTIONS: dict[str, Callable[..., Any]] = {}


def service_function(fn: Callable[P, R]) -> Callable[P, R]:
    """Register a service function and check that its unit of work is scoped to its actor's tenant."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        actor, uow = args[0], args[1]
        if not isinstance(actor, Actor) or not isinstance(uow, UnitOfWork):
            raise TypeError(f"{fn.__name__} takes (actor, uow, ...)")
        if uow.tenant_id != actor.tenant_id:
            raise TenantScopeError("the unit of work belongs to another tenant than the actor")
        return fn(*args, **kwargs)

    SERVICE_FUNCTIONS[f"{fn.__module__}.{fn.__qualname__}"] = wrapper
    return wrapper


def require_role(actor: Actor, *roles: Role) -> None:
    """Refuse unless the actor holds one of `roles` (the system actor may do anything staff may)."""
    if actor.role in roles or (actor.role == Role.SYSTEM and Role.ADMIN in roles):
        return
    raise PermissionDenied("your role may not do this")
