"""The password policy (NIST SP 800-63B 5.1.1.2): a minimum and a maximum length, not the person's own e-mail or name,
and not a commonly used or breached password (a local list shipped with the app: common_passwords.txt). No
composition rules (no "one digit, one symbol"), no forced periodic change. Pure logic, no I/O beyond the list."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

from backend.errors import ValidationFailed

MAX_LENGTH = 1024
COMMON_PASSWORDS_FILE = Path(__file__).resolve().parent / "common_passwords.txt"
# Words of this app any password list attack would try first (context-specific words, 800-63B 5.1.1.2).
CONTEXT_WORDS = ("waitwell",)
# The error code of each refusal: the pages word them (portal/state/onboarding.py), API clients branch on them.
TOO_SHORT = "password_too_short"
TOO_LONG = "password_too_long"
IS_EMAIL = "password_is_email"
IS_NAME = "password_is_name"
COMMON = "password_common"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list, lowercased (read once per process)."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def _normal(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip().lower()


def is_common(password: str) -> bool:
    """Whether the password is on the list, ignoring case, surrounding blanks and a trailing run of digits or
    punctuation added to a listed word ("Sunshine2026!" is "sunshine" with a suffix)."""
    words = common_passwords()
    normal = _normal(password)
    if normal in words:
        return True
    stem = re.sub(r"[\d\W_]+$", "", normal)
    if len(stem) >= 4 and stem in words:
        return True
    # A short run repeated ("aaaaaaaaaa", "abcabcabcabc", "12121212").
    return re.fullmatch(r"(.{1,4}?)\1+", normal) is not None


def check(
    password: str, *, minimum: int, email: str = "", names: tuple[str, ...] = (), field: str = "password"
) -> None:
    """Refuse a new password that breaks the policy (422 with a sentence the page shows beside the field)."""
    if len(password) < minimum or not password.strip():
        raise ValidationFailed(
            f"Choose a password of at least {minimum} characters.",
            field=field,
            code=TOO_SHORT,
            params={"limit": minimum},
        )
    if len(password) > MAX_LENGTH:
        raise ValidationFailed(
            f"Choose a password of at most {MAX_LENGTH} characters.",
            field=field,
            code=TOO_LONG,
            params={"limit": MAX_LENGTH},
        )
    normal = _normal(password)
    email = _normal(email)
    if email and (normal == email or normal == email.split("@", 1)[0]):
        raise ValidationFailed("Choose a password that is not your email address.", field=field, code=IS_EMAIL)
    personal = {_normal(n) for n in names if len(n.strip()) >= 3} | {_normal(n).replace(" ", "") for n in names}
    if normal in personal or normal.replace(" ", "") in personal:
        raise ValidationFailed("Choose a password that is not your name.", field=field, code=IS_NAME)
    if is_common(password) or any(normal.startswith(word) and len(normal) < len(word) + 6 for word in CONTEXT_WORDS):
        raise ValidationFailed(
            "This password is too common: it appears in lists of passwords that attackers try first. "
            "Choose another, for example a few unrelated words.",
            field=field,
            code=COMMON,
        )
