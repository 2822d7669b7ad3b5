"""TOTP codes for the demo admins in end-to-end tests (they are enrolled with backend.seed.DEMO_ADMIN_TOTP_SECRET).

The server refuses a code whose time step is at or before the last one it accepted for the account, so each sign-in
takes the next unused step: the current one or the next (valid_window=1), else it waits for the step to turn.
"""

from __future__ import annotations

import threading
import time

import pyotp

from backend.seed import DEMO_ADMIN_TOTP_SECRET, DEMO_LOGINS

STEP_SECONDS = 30
DEMO_ADMINS = frozenset(email for _, role, email in DEMO_LOGINS if role == "admin")
_last_step: dict[str, int] = {}
_lock = threading.Lock()


def needs_code(email: str) -> bool:
    return email in DEMO_ADMINS


def next_code(email: str, secret: str = DEMO_ADMIN_TOTP_SECRET) -> str:
    """A code for `email` the server has not seen yet (this process tracks which steps it used)."""
    with _lock:
        while True:
            now = time.time()
            current = int(now // STEP_SECONDS)
            last = _last_step.get(email, current - 2)
            # Not the previous step: it could fall out of the window before the server checks it.
            step = max(current, last + 1)
            if step <= current + 1 and not (step == current + 1 and now % STEP_SECONDS < 2):
                _last_step[email] = step
                return str(pyotp.TOTP(secret).at(step * STEP_SECONDS))
            time.sleep(STEP_SECONDS - now % STEP_SECONDS + 0.2)
