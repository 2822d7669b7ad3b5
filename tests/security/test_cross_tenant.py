"""Cross-tenant isolation over HTTP, generated from the OpenAPI document (invariants 2 and 7).

For every operation of /api/v1/openapi.json, every role (patient, doctor, admin) of one practice and both
directions (A against B, B against A):

- path ids: each path parameter gets the id of the *other* practice's object of that kind (clinic, provider,
  appointment, waitlist entry, offer, ...), with a schema-valid body carrying the other practice's ids. The answer
  must be 403 or 404, the same as for an id that does not exist, mention none of the other practice's ids, and
  leave every row of the other practice exactly as it was.
- body ids: a write without path parameters whose body names objects (POST /appointments, /waitlists, /holds,
  series) with the other practice's ids is refused exactly like random ids, and changes nothing there.
- listings: every GET without path parameters, plain and with each id filter set to the other practice's ids
  (?patient_id=, ?clinic_id=, ?entry_id=, ...), returns none of the other practice's ids.

A path parameter whose kind is not mapped fails (add it to the mapping in conftest.py), and the public
allow-list (PUBLIC_OPERATIONS in conftest.py) is checked for staleness. Service-level isolation is
tests/integration/test_tenant_isolation.py; this file checks the HTTP layer on top of it.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.security.conftest import (
    KIND_BY_PARAM,
    PUBLIC_OPERATIONS,
    ROLES,
    Operation,
    World,
    call,
    describe,
    fill_path,
    id_lookup,
    leaked,
    operations,
    param_kind,
    sample_body,
    sample_query,
    snapshot_diff,
    tenant_snapshot,
    unmapped_message,
)

DIRECTIONS = [("A", "B"), ("B", "A")]
DIRECTION_IDS = ["A-to-B", "B-to-A"]
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)

PROTECTED = [op for op in operations() if not op.public]
PATH_OPS = [op for op in PROTECTED if op.path_params]
BODY_ID_OPS = [op for op in PROTECTED if not op.path_params and op.method != "GET" and op.body_schema is not None]
LIST_OPS = [op for op in PROTECTED if not op.path_params and op.method == "GET"]


def _normalise(response: Any) -> tuple[int, str]:
    """Status and body with every UUID blanked, to compare a foreign id's answer with a missing id's."""
    return response.status_code, _UUID.sub("<id>", response.text)


# --- the document and the allow-list --------------------------------------------------------------------------


def test_public_allow_list_is_current() -> None:
    """Every allow-listed route exists and is really public; every route without security is allow-listed."""
    by_key = {(op.method, op.path): op for op in operations()}
    stale = [f"{m} {p}" for (m, p) in PUBLIC_OPERATIONS if (m, p) not in by_key]
    assert not stale, f"PUBLIC_OPERATIONS names routes that are not in the OpenAPI document: {stale}"
    secured = [f"{m} {p}" for (m, p) in PUBLIC_OPERATIONS if by_key[(m, p)].secured]
    assert not secured, f"PUBLIC_OPERATIONS names routes that require a bearer token: {secured}"
    unlisted = [str(op) for op in operations() if not op.secured and not op.public]
    assert not unlisted, (
        f"routes without bearer security that are not on the public allow-list: {unlisted}. Secure them, or add "
        "them with a reason to PUBLIC_OPERATIONS in tests/security/conftest.py."
    )


def test_every_path_parameter_is_mapped() -> None:
    """A new route with an id parameter of a new kind fails here until the mapping knows it."""
    problems = [
        unmapped_message(op, name) for op in PATH_OPS for name in op.path_params if param_kind(op.path, name) is None
    ]
    assert not problems, "\n".join(problems)


# --- path ids -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", PATH_OPS, ids=str)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("side", "other"), DIRECTIONS, ids=DIRECTION_IDS)
def test_foreign_path_ids(security_world: World, api_client: Any, side: str, other: str, role: str,
                          op: Operation) -> None:  # fmt: skip
    """The other practice's object in the path: 403/404 like a missing one, nothing changes there."""
    me, them = security_world[side], security_world[other]
    kinds = {}
    for name in op.path_params:
        kind = param_kind(op.path, name)
        if kind is None:
            pytest.fail(unmapped_message(op, name))
        if kind not in them.objects:
            pytest.fail(f"{op}: the world has no object of kind {kind!r}; add one in build_practice (conftest.py)")
        kinds[name] = kind
    token = me.tokens[role]
    body = sample_body(op, them.ids)
    query = sample_query(op, them.ids)
    sent_ids = {str(them.objects[k]) for k in kinds.values()}
    sent_ids |= set(_UUID.findall(repr(body)) + _UUID.findall(repr(query)))
    foreign = security_world.uuids_of(other)

    before = tenant_snapshot(security_world.engine, them.tenant_id)
    response = call(api_client, op, fill_path(op, lambda n: them.objects[kinds[n]]), token=token, query=query,
                    body=body)  # fmt: skip
    after = tenant_snapshot(security_world.engine, them.tenant_id)
    shown = describe(response, body)

    changed = snapshot_diff(before, after)
    assert not changed, f"practice {other}'s rows changed ({changed}) after {role} of {side}: {shown}"
    if response.status_code == 422 and isinstance(_json(response).get("detail"), list):
        pytest.fail(f"request validation failed: fix the body/query generator in conftest.py: {shown}")
    assert response.status_code in (403, 404), f"{role} of {side} on {other}'s ids: expected 403/404: {shown}"
    leaks = leaked(response.text, foreign, sent=sent_ids)
    assert not leaks, f"response names {other}'s ids {sorted(leaks)}: {shown}"

    # Indistinguishable from an id that does not exist (same status, same message).
    missing = call(api_client, op, fill_path(op, lambda n: uuid.uuid4()), token=token, query=query, body=body)
    assert _normalise(response) == _normalise(missing), (
        f"{other}'s object answers differently from a missing one:\n  foreign: {shown}\n  missing: "
        f"{describe(missing, body)}"
    )


# --- body ids -----------------------------------------------------------------------------------------------


def _id_fields(op: Operation) -> list[str]:
    names: list[str] = []

    def record(name: str) -> uuid.UUID | None:
        if name in KIND_BY_PARAM and name not in names:
            names.append(name)
        return None

    sample_body(op, record)
    return names


def _random_body(op: Operation, fields: list[str]) -> Any:
    chosen = {name: uuid.uuid4() for name in fields}
    return sample_body(op, chosen.get)


def _mixed(own: Any, name: str, value: uuid.UUID | None) -> Any:
    """Own ids everywhere except `name`."""
    return lambda field: value if field == name else own(field)


BODY_ID_OPS_WITH_IDS = [op for op in BODY_ID_OPS if _id_fields(op)]


@pytest.mark.parametrize("op", BODY_ID_OPS_WITH_IDS, ids=str)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("side", "other"), DIRECTIONS, ids=DIRECTION_IDS)
def test_foreign_body_ids(security_world: World, api_client: Any, side: str, other: str, role: str,
                          op: Operation) -> None:  # fmt: skip
    """A body naming the other practice's objects (all of them, then one id field at a time, the others the
    caller's own) is refused exactly like one naming missing objects, and changes nothing there."""
    me, them = security_world[side], security_world[other]
    token = me.tokens[role]
    foreign = security_world.uuids_of(other)
    fields = _id_fields(op)
    variants: list[tuple[str, Any, Any]] = [("all ids foreign", sample_body(op, them.ids), _random_body(op, fields))]
    for name in fields:
        variants.append((
            f"{name} foreign",
            sample_body(op, _mixed(me.ids, name, them.ids(name))),
            sample_body(op, _mixed(me.ids, name, uuid.uuid4())),
        ))  # fmt: skip
    for label, body, missing_body in variants:
        sent_ids = set(_UUID.findall(repr(body)))
        before = tenant_snapshot(security_world.engine, them.tenant_id)
        response = call(api_client, op, op.path, token=token, body=body)
        after = tenant_snapshot(security_world.engine, them.tenant_id)
        shown = f"[{label}] {describe(response, body)}"

        changed = snapshot_diff(before, after)
        assert not changed, f"practice {other}'s rows changed ({changed}) after {role} of {side}: {shown}"
        if response.status_code == 422 and isinstance(_json(response).get("detail"), list):
            pytest.fail(f"request validation failed: fix the body generator in conftest.py: {shown}")
        assert 400 <= response.status_code < 500 and response.status_code not in (401, 405), (
            f"{role} of {side} with {other}'s ids in the body: expected a refusal: {shown}"
        )
        leaks = leaked(response.text, foreign, sent=sent_ids)
        assert not leaks, f"response names {other}'s ids {sorted(leaks)}: {shown}"
        missing = call(api_client, op, op.path, token=token, body=missing_body)
        assert _normalise(response) == _normalise(missing), (
            f"{other}'s ids answer differently from missing ones:\n  foreign: {shown}\n  missing: "
            f"{describe(missing, missing_body)}"
        )


# --- listings and id filters --------------------------------------------------------------------------------


@pytest.mark.parametrize("op", LIST_OPS, ids=str)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("side", "other"), DIRECTIONS, ids=DIRECTION_IDS)
def test_listings_show_no_foreign_data(security_world: World, api_client: Any, side: str, other: str, role: str,
                                       op: Operation) -> None:  # fmt: skip
    """Plain, and with every id filter set to the other practice's ids: none of its ids in the answer."""
    me, them = security_world[side], security_world[other]
    token = me.tokens[role]
    foreign = security_world.uuids_of(other)
    before = tenant_snapshot(security_world.engine, them.tenant_id)
    plain = call(api_client, op, op.path, token=token, query=sample_query(op, id_lookup({})))
    filter_query = sample_query(op, them.ids)
    filtered = call(api_client, op, op.path, token=token, query=filter_query)
    after = tenant_snapshot(security_world.engine, them.tenant_id)

    changed = snapshot_diff(before, after)
    assert not changed, f"practice {other}'s rows changed ({changed}) after {op} by {role} of {side}"
    for response, sent in ((plain, set()), (filtered, set(filter_query.values()))):
        shown = describe(response)
        assert response.status_code < 500, f"server error: {shown}"
        assert response.status_code not in (401, 405, 429), f"unexpected status: {shown}"
        if response.status_code == 422 and isinstance(_json(response).get("detail"), list):
            pytest.fail(f"request validation failed: fix the query generator in conftest.py: {shown}")
        leaks = leaked(response.text, foreign, sent=sent)
        assert not leaks, f"{role} of {side} sees {other}'s ids {sorted(leaks)}: {shown}"


def _json(response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
