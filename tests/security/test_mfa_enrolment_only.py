"""A token limited to MFA enrolment, on every route of the OpenAPI document (issue 11).

An admin who has not set up MFA gets, from a password alone, a token that may only set it up. This sends that
token to every operation of the document with a schema-valid request naming the practice's own objects: each answers
403 `mfa_enrolment_required` (before looking at the request), and nothing of the practice changes. Only the routes on
ENROLMENT_OPERATIONS answer it, and that list is checked for staleness. A new route is covered without anyone
remembering to add it: it is refused unless it takes the enrolment dependency of backend/api/deps.py.
"""

from __future__ import annotations

from typing import Any

import pyotp
import pytest

from tests.security.conftest import (
    API_PREFIX,
    Operation,
    World,
    call,
    describe,
    fill_path,
    operations,
    param_kind,
    sample_body,
    sample_query,
    snapshot_diff,
    tenant_snapshot,
)

# The routes a token limited to MFA enrolment may use, with the reason.
ENROLMENT_OPERATIONS: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/me"): "who the token belongs to",
    ("GET", "/api/v1/me/mfa"): "the MFA status: required, not yet set up",
    ("POST", "/api/v1/me/mfa/enrol"): "start setting MFA up",
    ("POST", "/api/v1/me/mfa/confirm"): "finish setting MFA up (lifts the limit)",
    ("POST", "/api/v1/auth/logout"): "sign out",
}
REFUSED = [op for op in operations() if not op.public and (op.method, op.path) not in ENROLMENT_OPERATIONS]
# The session's own idle clock may move (user_sessions.last_seen_at): that is the token being used, not a change
# the route made.
OWN_SESSION = "user_sessions"


def _limited_token(world: World, client: Any, name: str) -> str:
    """A password-only token of a new admin of practice A who has not set up MFA."""
    from backend.db import UnitOfWork
    from backend.identity.models import Membership, User
    from backend.tenancy.context import Actor, Role
    from tests.factories import PASSWORD_HASH, TEST_PASSWORD

    a = world["A"]
    email = f"{name}.{a.tenant_id.hex[:6]}@example.test"
    with UnitOfWork(Actor.system(a.tenant_id)) as uow:
        user = User(tenant_id=a.tenant_id, email=email, full_name="Unenrolled Admin", password_hash=PASSWORD_HASH)
        uow.session.add(user)
        uow.flush()
        uow.session.add(Membership(tenant_id=a.tenant_id, user_id=user.id, role=Role.ADMIN))
        uow.commit()
    response = client.post(f"{API_PREFIX}/auth/token", json={"email": email, "password": TEST_PASSWORD})
    assert response.status_code == 200, response.text
    assert response.json()["mfa_enrolment_required"] is True
    return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def limited(security_world: World, api_client: Any) -> str:
    return _limited_token(security_world, api_client, "unenrolled.admin")


def test_the_enrolment_allow_list_is_current() -> None:
    by_key = {(op.method, op.path): op for op in operations()}
    stale = [f"{m} {p}" for (m, p) in ENROLMENT_OPERATIONS if (m, p) not in by_key]
    assert not stale, f"ENROLMENT_OPERATIONS names routes that are not in the OpenAPI document: {stale}"
    public = [f"{m} {p}" for (m, p) in ENROLMENT_OPERATIONS if by_key[(m, p)].public]
    assert not public, f"ENROLMENT_OPERATIONS names public routes: {public}"


@pytest.mark.parametrize("op", REFUSED, ids=str)
def test_every_other_route_refuses_a_token_limited_to_enrolment(
    security_world: World, api_client: Any, limited: str, op: Operation
) -> None:
    a = security_world["A"]

    def own(name: str) -> Any:
        kind = param_kind(op.path, name)
        assert kind in a.objects, f"{op}: no object for {{{name}}} (see test_cross_tenant.py)"
        return a.objects[kind]

    body = sample_body(op, a.ids)
    before = tenant_snapshot(security_world.engine, a.tenant_id)
    response = call(api_client, op, fill_path(op, own), token=limited, query=sample_query(op, a.ids), body=body)
    after = tenant_snapshot(security_world.engine, a.tenant_id)
    shown = describe(response, body)
    assert response.status_code == 403, shown
    assert response.json()["code"] == "mfa_enrolment_required", shown
    assert "POST /api/v1/me/mfa/enrol" in response.json()["detail"], shown
    changed = [table for table in snapshot_diff(before, after) if table != OWN_SESSION]
    assert not changed, f"rows changed ({changed}): {shown}"


def test_the_enrolment_routes_answer_it_and_confirming_lifts_the_limit(security_world: World, api_client: Any) -> None:
    # An admin of its own: confirming lifts the limit, and the other tests' token must stay limited.
    headers = {"Authorization": f"Bearer {_limited_token(security_world, api_client, 'enrolling.admin')}"}
    assert api_client.get(f"{API_PREFIX}/me", headers=headers).status_code == 200
    status = api_client.get(f"{API_PREFIX}/me/mfa", headers=headers)
    assert status.status_code == 200 and status.json()["required"] is True and status.json()["enrolled"] is False
    started = api_client.post(f"{API_PREFIX}/me/mfa/enrol", headers=headers)
    assert started.status_code == 200, started.text
    code = pyotp.TOTP(started.json()["secret"]).now()
    assert api_client.post(f"{API_PREFIX}/me/mfa/confirm", json={"code": code}, headers=headers).status_code == 200
    assert api_client.get(f"{API_PREFIX}/audit-events", headers=headers).status_code == 200
    assert api_client.post(f"{API_PREFIX}/auth/logout", headers=headers).status_code == 204
    assert api_client.get(f"{API_PREFIX}/me", headers=headers).status_code == 401
