"""Domain errors. The API maps each to its HTTP status; pages show the message.

Every error carries a stable, machine-readable `code` next to its message: the class default (e.g. "not_found")
or a specific code given where it is raised (e.g. "waitlist.max_entries_per_patient"). Clients and pages branch
on the code, never on the message text; `params` holds the values a page needs to word the case itself.
"""

from __future__ import annotations

from collections.abc import Mapping


class DomainError(Exception):
    """A refusal with a message that is safe to show to the user."""

    status_code = 400
    code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        params: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code or type(self).code
        self.params: dict[str, object] = dict(params or {})


class AuthenticationFailed(DomainError):
    status_code = 401
    code = "authentication_failed"


class PracticeRequired(AuthenticationFailed):
    """The email has accounts in several practices: the login must name one."""

    code = "practice_required"


class PermissionDenied(DomainError):
    status_code = 403
    code = "permission_denied"


class NotFound(DomainError):
    """Also raised for another tenant's object: it must look exactly like a missing one."""

    status_code = 404
    code = "not_found"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class ValidationFailed(DomainError):
    status_code = 422
    code = "validation_failed"


class RateLimited(DomainError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Code:
    """Specific codes, given where the error is raised, for the cases a page (or an API client) words on its own."""

    WAITLIST_MAX_ENTRIES_PER_PATIENT = "waitlist.max_entries_per_patient"
    WAITLIST_MAX_ACTIVE_PER_PROVIDER = "waitlist.max_active_per_provider"
    WAITLIST_MAX_ACTIVE_PER_CLINIC = "waitlist.max_active_per_clinic"
    WAITLIST_LATEST_DATE_PAST = "waitlist.latest_date_past"
    WAITLIST_DATES_REVERSED = "waitlist.dates_reversed"
    WAITLIST_WINDOW_INVALID = "waitlist.window_invalid"
    WAITLIST_REASON_TOO_LONG = "waitlist.reason_too_long"
    WAITLIST_ALREADY_ON = "waitlist.already_on"
    SLOT_TAKEN = "slot_taken"
    HOLD_EXPIRED = "hold_expired"
    OFFER_CLOSED = "offer_closed"
    CLINIC_ARCHIVE_CHOICE_REQUIRED = "clinic.archive_waitlist_choice_required"
    CLINIC_ARCHIVE_TARGET_INVALID = "clinic.archive_target_invalid"
    CLINIC_ALREADY_ARCHIVED = "clinic.already_archived"
    TIME_OFF_OVERLAPS_SESSIONS = "time_off.overlaps_sessions"
    RESCHEDULE_CHANGE_UNCONFIRMED = "reschedule.change_unconfirmed"


SPECIFIC_CODES = frozenset(value for name, value in vars(Code).items() if name.isupper())


def all_codes() -> frozenset[str]:
    """Every code a domain error can carry: each class's default and the specific codes above."""
    classes: list[type[DomainError]] = [DomainError]
    seen: set[str] = set()
    while classes:
        cls = classes.pop()
        seen.add(cls.code)
        classes.extend(cls.__subclasses__())
    return frozenset(seen) | SPECIFIC_CODES


class TenantScopeError(RuntimeError):
    """A query tried to run without a tenant scope: a programming error, never a user error."""
