"""Forged and missing bearer tokens get 401 on every authenticated route of the OpenAPI document.

Each forgery starts from a real token of practice A (POST /api/v1/auth/token), copies ALL its claims (so claims
added later, such as `sid`, are carried along) and changes exactly one thing: the algorithm (none, RS256, HS512),
the key, the expiry, the tenant, the role, the subject, one missing claim, or the encoding. The requests target
practice A's own objects with schema-valid bodies, so a forgery that were accepted would reach the handler.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.security.conftest import (
    PracticeWorld,
    World,
    call,
    describe,
    fill_path,
    login,
    operations,
    param_kind,
    sample_body,
    sample_query,
)

AUTHENTICATED = [op for op in operations() if op.secured and not op.public]


# --- building tokens by hand ----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified."""
    return dict(json.loads(_unb64(token.split(".")[1])))


def header_of(token: str) -> dict[str, Any]:
    return dict(json.loads(_unb64(token.split(".")[0])))


def encode(header: dict[str, Any], claims: dict[str, Any], *, key: bytes | None, digest: Any = hashlib.sha256) -> str:
    """A compact JWS; signed with HMAC(`digest`) under `key`, or with an empty signature when key is None."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


def secret() -> bytes:
    return os.environ["SECRET_KEY"].encode()


def hs256(claims: dict[str, Any], **header: Any) -> str:
    """Signed correctly (right key, right algorithm): only the claims can make it fail."""
    return encode({"alg": "HS256", "typ": "JWT", **header}, claims, key=secret())


def _changed(claims: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**claims, **changes}


def _without(claims: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k != name}


_RSA_KEY = RSAKey.generate_key(2048)


def forgeries(world: World) -> dict[str, Callable[[], str]]:
    """Forgery name -> a function building it from a real token of practice A (admin unless said otherwise)."""
    a, b = world["A"], world["B"]
    admin = claims_of(a.tokens["admin"])
    patient = claims_of(a.tokens["patient"])
    doctor = claims_of(a.tokens["doctor"])
    now = int(time.time())
    signing_input = a.tokens["admin"].rsplit(".", 1)[0]
    return {
        "alg-none": lambda: encode({"alg": "none", "typ": "JWT"}, admin, key=None),
        "alg-None": lambda: encode({"alg": "None", "typ": "JWT"}, admin, key=None),
        "alg-none-with-signature": lambda: encode({"alg": "none"}, admin, key=secret()),
        "signature-stripped": lambda: signing_input + ".",
        "payload-tampered-signature-kept": lambda: (
            f"{_b64(json.dumps(header_of(a.tokens['patient'])).encode())}."
            f"{_b64(json.dumps(_changed(patient, role='admin')).encode())}.{a.tokens['patient'].rsplit('.', 1)[1]}"
        ),
        "wrong-key-hs256": lambda: encode({"alg": "HS256", "typ": "JWT"}, admin, key=secrets.token_bytes(48)),
        "empty-key-hs256": lambda: encode({"alg": "HS256", "typ": "JWT"}, admin, key=b""),
        "expired": lambda: hs256(_changed(admin, exp=now - 60, iat=now - 3600)),
        "exp-as-string": lambda: hs256(_changed(admin, exp="9999999999")),
        "tenant-swapped": lambda: hs256(_changed(admin, tenant=str(b.tenant_id))),
        "tenant-unknown": lambda: hs256(_changed(admin, tenant=str(uuid.uuid4()))),
        "role-swapped-patient-to-admin": lambda: hs256(_changed(patient, role="admin")),
        "role-swapped-patient-to-doctor": lambda: hs256(_changed(patient, role="doctor")),
        "role-swapped-doctor-to-admin": lambda: hs256(_changed(doctor, role="admin")),
        "role-system": lambda: hs256(_changed(admin, role="system")),
        "sub-swapped-other-practice": lambda: hs256(_changed(admin, sub=str(b.user_ids["admin"]))),
        "sub-swapped-same-practice": lambda: hs256(_changed(patient, sub=str(a.user_ids["admin"]))),
        "sub-unknown": lambda: hs256(_changed(admin, sub=str(uuid.uuid4()))),
        "tenant-and-sub-of-other-practice": lambda: hs256(
            _changed(admin, tenant=str(b.tenant_id), sub=str(b.user_ids["admin"]))
        ),
        "garbage": lambda: "not-a-token",
        "garbage-three-parts": lambda: "abc.def.ghi",
        "empty-claims": lambda: hs256({}),
        "hs512-confusion": lambda: encode({"alg": "HS512", "typ": "JWT"}, admin, key=secret(), digest=hashlib.sha512),
        "rs256-hmac-confusion": lambda: encode({"alg": "RS256", "typ": "JWT"}, admin, key=secret()),
        "rs256-attacker-key": lambda: jwt.encode({"alg": "RS256", "typ": "JWT"}, admin, _RSA_KEY, algorithms=["RS256"]),
    }


FORGERY_NAMES = [
    "alg-none",
    "alg-None",
    "alg-none-with-signature",
    "signature-stripped",
    "payload-tampered-signature-kept",
    "wrong-key-hs256",
    "empty-key-hs256",
    "expired",
    "exp-as-string",
    "tenant-swapped",
    "tenant-unknown",
    "role-swapped-patient-to-admin",
    "role-swapped-patient-to-doctor",
    "role-swapped-doctor-to-admin",
    "role-system",
    "sub-swapped-other-practice",
    "sub-swapped-same-practice",
    "sub-unknown",
    "tenant-and-sub-of-other-practice",
    "garbage",
    "garbage-three-parts",
    "empty-claims",
    "hs512-confusion",
    "rs256-hmac-confusion",
    "rs256-attacker-key",
]


# --- requests -------------------------------------------------------------------------------------------------


def _request_parts(op: Any, own: PracticeWorld) -> tuple[str, dict[str, str], Any]:
    """Path, query and body aimed at the token's own practice (so an accepted forgery would really act)."""
    kinds = {name: param_kind(op.path, name) for name in op.path_params}
    missing = [name for name, kind in kinds.items() if kind is None or kind not in own.objects]
    assert not missing, f"{op}: unmapped path parameters {missing}; see KIND_BY_PARAM in tests/security/conftest.py"
    path = fill_path(op, lambda name: own.objects[kinds[name]])  # type: ignore[index]
    return path, sample_query(op, own.ids), sample_body(op, own.ids)


def _probe(client: Any, world: World, token: str | None, headers: dict[str, str] | None = None) -> list[str]:
    """Send `token` to every authenticated route; return a line for each answer that is not 401."""
    failures = []
    for op in AUTHENTICATED:
        path, query, body = _request_parts(op, world["A"])
        response = call(client, op, path, token=token, query=query, body=body, headers=headers)
        if response.status_code != 401:
            failures.append(describe(response, body))
    return failures


def test_forgery_list_is_complete(security_world: World) -> None:
    assert sorted(forgeries(security_world)) == sorted(FORGERY_NAMES)


def test_hand_signed_token_is_accepted(security_world: World, api_client: Any) -> None:
    """Control: the real token, and a hand re-signed copy of its claims, are accepted (so a 401 for the
    correct-key forgeries below is due to the one claim changed, not to the signer)."""
    token = security_world["A"].tokens["admin"]
    assert header_of(token)["alg"] == "HS256"
    for candidate in (token, hs256(claims_of(token), **{k: v for k, v in header_of(token).items() if k != "alg"})):
        response = api_client.get("/api/v1/me", headers={"Authorization": f"Bearer {candidate}"})
        assert response.status_code == 200, describe(response)
        assert response.json()["role"] == "admin"


@pytest.mark.parametrize("forgery", FORGERY_NAMES)
def test_forged_token_is_rejected_everywhere(security_world: World, api_client: Any, forgery: str) -> None:
    token = forgeries(security_world)[forgery]()
    failures = _probe(api_client, security_world, token)
    assert not failures, f"{forgery} token not answered with 401 on {len(failures)} route(s):\n" + "\n".join(failures)


def test_token_without_each_claim_is_rejected_everywhere(security_world: World, api_client: Any) -> None:
    """Every claim of a real token is essential: drop any one (correct key) and it is 401."""
    real = claims_of(security_world["A"].tokens["admin"])
    failures = []
    for name in real:
        for line in _probe(api_client, security_world, hs256(_without(real, name))):
            failures.append(f"without {name!r}: {line}")
    assert not failures, "\n".join(failures)


def test_no_token_is_rejected_everywhere(security_world: World, api_client: Any) -> None:
    failures = _probe(api_client, security_world, None)
    assert not failures, "no token not answered with 401:\n" + "\n".join(failures)


@pytest.mark.parametrize("scheme", ["Basic", "Token", ""])
def test_wrong_auth_scheme_is_rejected_everywhere(security_world: World, api_client: Any, scheme: str) -> None:
    token = security_world["A"].tokens["admin"]
    header = f"{scheme} {token}".strip()
    failures = _probe(api_client, security_world, None, headers={"Authorization": header})
    assert not failures, f"Authorization: {scheme or '<no scheme>'} <real token> not 401:\n" + "\n".join(failures)


def test_real_token_reaches_every_route(security_world: World, api_client: Any) -> None:
    """Control, run last (it changes practice A's data): the same requests with a real token are not 401, so the
    401s above come from the token check. After a route that signed the session out, a fresh login retries once."""
    from tests.factories import TEST_PASSWORD

    own = security_world["A"]
    token = own.tokens["admin"]
    failures = []
    for op in AUTHENTICATED:
        path, query, body = _request_parts(op, own)
        if isinstance(body, dict) and "current_password" in body:
            body = {**body, "current_password": TEST_PASSWORD, "new_password": TEST_PASSWORD}
        response = call(api_client, op, path, token=token, query=query, body=body)
        if response.status_code == 401:
            token = login(api_client, own.emails["admin"], TEST_PASSWORD)
            response = call(api_client, op, path, token=token, query=query, body=body)
        if response.status_code == 401 or response.status_code >= 500:
            failures.append(describe(response, body))
    assert not failures, "a real token was refused (or crashed) on:\n" + "\n".join(failures)
