"""The benchmarks' admin signs in as every admin must: with a TOTP code (admins must use MFA, backend/identity/mfa.py).

A password alone would get a token limited to setting MFA up (403 `mfa_enrolment_required` everywhere else), so the
bench's admin is enrolled when its data is made, with a secret of this run, and each sign-in sends the current code.
Each bench signs its admin in once per run, so a code is never needed twice within a step (the server refuses that).
"""

from __future__ import annotations

from typing import Any

import pyotp

EMAIL = "bench-admin@bench.example"
_SECRET = pyotp.random_base32(length=32)  # this run's own: the data is made and signed in to by this process


def enrol(user: Any) -> None:
    """Enrol the bench admin's User row (before its unit of work commits)."""
    from backend.crypto import encrypt_text
    from backend.types import utcnow

    user.mfa_secret_encrypted = encrypt_text(_SECRET)
    user.mfa_enabled_at = utcnow()


def token_request(password: str) -> dict[str, str]:
    """The JSON body of POST /api/v1/auth/token for the bench admin, with the current code."""
    return {"email": EMAIL, "password": password, "totp": pyotp.TOTP(_SECRET).now()}
