"""Domain errors. The API maps each to its HTTP status; pages show the message."""

from __future__ import annotations


class DomainError(Exception):
    """A refusal with a message that is safe to show to the user."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class AuthenticationFailed(DomainError):
    status_code = 401


class PracticeRequired(AuthenticationFailed):
    """The email has accounts in several practices: the login must name one."""


class PermissionDenied(DomainError):
    status_code = 403


class NotFound(DomainError):
    """Also raised for another tenant's object: it must look exactly like a missing one."""

    status_code = 404

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")


class Conflict(DomainError):
    status_code = 409


class ValidationFailed(DomainError):
    status_code = 422


class RateLimited(DomainError):
    status_code = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TenantScopeError(RuntimeError):
    """A query tried to run without a tenant scope: a programming error, never a user error."""
