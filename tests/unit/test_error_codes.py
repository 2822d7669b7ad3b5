"""Domain errors carry stable codes; pages word them from one mapping (portal/state/errors.py), never by parsing
the message; the REST error bodies carry the code next to the detail."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from backend.api.errors import install_error_handlers
from backend.errors import (
    SPECIFIC_CODES,
    AuthenticationFailed,
    Code,
    Conflict,
    DomainError,
    NotFound,
    PermissionDenied,
    PracticeRequired,
    RateLimited,
    ValidationFailed,
    all_codes,
)
from backend.tenancy.context import Actor, Role
from backend.types import utcnow
from backend.waitlist import counters
from backend.waitlist import service as wl
from portal.state.errors import WORDS, words_for

# The cases the patient's join page words on its own (it used to find them in the message text).
PAGE_BRANCHED = {
    Code.WAITLIST_MAX_ENTRIES_PER_PATIENT,
    Code.WAITLIST_MAX_ACTIVE_PER_PROVIDER,
    Code.WAITLIST_MAX_ACTIVE_PER_CLINIC,
    Code.WAITLIST_LATEST_DATE_PAST,
    Code.WAITLIST_DATES_REVERSED,
    Code.WAITLIST_WINDOW_INVALID,
    Code.WAITLIST_REASON_TOO_LONG,
}


def test_every_mapped_code_is_one_an_error_can_carry() -> None:
    assert set(WORDS) <= all_codes(), set(WORDS) - all_codes()


def test_every_page_branched_code_is_mapped() -> None:
    assert PAGE_BRANCHED <= set(WORDS), PAGE_BRANCHED - set(WORDS)
    assert PAGE_BRANCHED <= SPECIFIC_CODES


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (DomainError("x"), "invalid_request"),
        (AuthenticationFailed("x"), "authentication_failed"),
        (PracticeRequired("x"), "practice_required"),
        (PermissionDenied("x"), "permission_denied"),
        (NotFound("clinic"), "not_found"),
        (Conflict("x"), "conflict"),
        (ValidationFailed("x"), "validation_failed"),
        (RateLimited("x", retry_after=3), "rate_limited"),
        (Conflict("x", code=Code.SLOT_TAKEN), "slot_taken"),
    ],
)
def test_class_default_codes_are_stable_and_a_raise_may_name_its_own(error: DomainError, code: str) -> None:
    assert error.code == code
    assert code in all_codes()


def test_codes_are_distinct_across_classes() -> None:
    defaults = [cls.code for cls in (DomainError, *_subclasses(DomainError))]
    assert len(defaults) == len(set(defaults))


def _subclasses(cls: type[DomainError]) -> list[type[DomainError]]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


# -- each former message-text branch of the join page, from the error as the service raises it ---------------


def _refused(**fields: Any) -> DomainError:
    actor = Actor(tenant_id=uuid.uuid4(), role=Role.PATIENT, user_id=uuid.uuid4(), patient_id=uuid.uuid4())
    request = wl.JoinRequest(clinic_id=uuid.uuid4(), **fields)
    with pytest.raises(DomainError) as refused:
        wl._check_request(actor, request, SimpleNamespace(timezone="UTC"))  # type: ignore[arg-type]
    return refused.value


def test_max_entries_per_patient_names_the_limit() -> None:
    exc = ValidationFailed(
        "max_entries_per_patient (3) reached",
        field="patient_id",
        code=Code.WAITLIST_MAX_ENTRIES_PER_PATIENT,
        params={"limit": 3},
    )
    assert words_for(exc) == (
        "You are already on 3 waitlists, the most allowed at once. Leave one on My waitlist to join another."
    )
    # Without the limit the words still read.
    bare = ValidationFailed("limit reached", code=Code.WAITLIST_MAX_ENTRIES_PER_PATIENT)
    assert words_for(bare).startswith("You are already on the most waitlists")


def test_provider_waitlist_full() -> None:
    exc = counters._refusal(counters.PROVIDER, 50)
    assert exc.code == Code.WAITLIST_MAX_ACTIVE_PER_PROVIDER
    assert words_for(exc) == (
        "This provider's waitlist is full right now. Try “Any provider at this clinic”, or call the clinic."
    )


def test_clinic_waitlist_full() -> None:
    exc = counters._refusal(counters.CLINIC, 200)
    assert exc.code == Code.WAITLIST_MAX_ACTIVE_PER_CLINIC
    assert words_for(exc) == "This clinic's waitlist is full right now. Please call the clinic."


def test_latest_date_in_the_past() -> None:
    exc = _refused(latest_date=utcnow().date() - timedelta(days=2))
    assert exc.code == Code.WAITLIST_LATEST_DATE_PAST
    assert words_for(exc) == "The latest date has already passed."


def test_dates_reversed() -> None:
    today = utcnow().date()
    exc = _refused(earliest_date=today + timedelta(days=5), latest_date=today + timedelta(days=2))
    assert exc.code == Code.WAITLIST_DATES_REVERSED
    assert words_for(exc) == "The latest date must be on or after the earliest date."


@pytest.mark.parametrize(
    "window",
    [
        {"weekday": 1, "start": "12:00", "end": "11:00"},
        {"weekday": 1, "end": "10:00"},
        "not a window",
    ],
)
def test_invalid_window_quotes_the_service(window: Any) -> None:
    exc = _refused(windows=[window])
    assert exc.code == Code.WAITLIST_WINDOW_INVALID
    assert words_for(exc) == "Check the times: " + exc.message
    assert exc.message.startswith("window 1: ")


def test_reason_too_long() -> None:
    exc = _refused(reason="x" * (wl.MAX_REASON + 1))
    assert exc.code == Code.WAITLIST_REASON_TOO_LONG
    assert words_for(exc) == f"Keep the reason to {wl.MAX_REASON} characters or fewer."


def test_an_unmapped_code_shows_the_errors_own_message() -> None:
    assert words_for(ValidationFailed("urgency must be 1 (routine) to 4 (urgent)")) == (
        "Urgency must be 1 (routine) to 4 (urgent)"
    )
    assert words_for(NotFound("clinic")) == "Clinic not found"
    # The text no longer decides: a message that merely mentions a rule is shown as it is.
    assert words_for(ValidationFailed("max_active_per_clinic is out of range")) == (
        "Max_active_per_clinic is out of range"
    )


# -- REST error bodies -----------------------------------------------------------------------------------------


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/refuse/{kind}")
    def refuse(kind: str) -> None:
        errors: dict[str, DomainError] = {
            "missing": NotFound("clinic"),
            "invalid": ValidationFailed("bad", field="start"),
            "full": counters._refusal(counters.PROVIDER, 2),
            "throttled": RateLimited("slow down", retry_after=7),
        }
        raise errors[kind]

    @app.get("/number/{n}")
    def number(n: int) -> int:
        return n

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("kind", "status", "body"),
    [
        ("missing", 404, {"detail": "clinic not found", "code": "not_found"}),
        ("invalid", 422, {"detail": "bad", "field": "start", "code": "validation_failed"}),
        (
            "full",
            422,
            {
                "detail": "max_active_per_provider (2) reached for this provider",
                "field": "provider_id",
                "code": "waitlist.max_active_per_provider",
            },
        ),
        ("throttled", 429, {"detail": "slow down", "code": "rate_limited"}),
    ],
)
def test_error_bodies_carry_the_code_next_to_the_detail(
    client: TestClient, kind: str, status: int, body: dict[str, str]
) -> None:
    response = client.get(f"/refuse/{kind}")
    assert response.status_code == status
    assert response.json() == body


def test_request_validation_errors_carry_a_code_too(client: TestClient) -> None:
    response = client.get("/number/nine")
    assert response.status_code == 422
    assert response.json()["code"] == "request_invalid"
    assert isinstance(response.json()["detail"], list)


# -- the join page's state: the mapped words land where the page shows them ------------------------------------


class _NoUnitOfWork:
    def __init__(self, *_a: Any) -> None:
        pass

    def __enter__(self) -> _NoUnitOfWork:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None


def _join_page_after(monkeypatch: pytest.MonkeyPatch, error: DomainError) -> Any:
    from portal.state import waitlist_patient as page_module

    def refuse(*_a: Any, **_k: Any) -> None:
        raise error

    monkeypatch.setattr(page_module, "UnitOfWork", _NoUnitOfWork)
    monkeypatch.setattr(page_module, "limited", lambda *_a: False)
    monkeypatch.setattr(wl, "join_waitlist", refuse)
    actor = Actor(tenant_id=uuid.uuid4(), role=Role.PATIENT, user_id=uuid.uuid4(), patient_id=uuid.uuid4())
    page = SimpleNamespace(
        busy=False, form_error="", duplicate=False, field_errors={}, lang="en", j_clinic=str(uuid.uuid4()),
        j_provider=str(uuid.uuid4()), j_specialty="any", j_modality="any", j_urgency="2", days=[],
        _actor=lambda *_r: actor, _local_checks=lambda *_a: {},
    )  # fmt: skip
    list(page_module.PatientWaitlistJoinState.submit.fn(page, {}))
    return page


@pytest.mark.parametrize(
    ("error", "where", "words"),
    [
        (
            ValidationFailed("max_entries_per_patient (4) reached", field="patient_id",
                             code=Code.WAITLIST_MAX_ENTRIES_PER_PATIENT, params={"limit": 4}),
            "form",
            "You are already on 4 waitlists, the most allowed at once. Leave one on My waitlist to join another.",
        ),
        (
            counters._refusal(counters.PROVIDER, 2),
            "provider",
            "This provider's waitlist is full right now. Try “Any provider at this clinic”, or call the clinic.",
        ),
        (
            counters._refusal(counters.CLINIC, 3),
            "clinic",
            "This clinic's waitlist is full right now. Please call the clinic.",
        ),
        (
            ValidationFailed("latest_date is in the past", field="latest_date", code=Code.WAITLIST_LATEST_DATE_PAST),
            "dates",
            "The latest date has already passed.",
        ),
        (
            ValidationFailed("earliest_date must not be after latest_date", field="latest_date",
                             code=Code.WAITLIST_DATES_REVERSED),
            "dates",
            "The latest date must be on or after the earliest date.",
        ),
        (
            ValidationFailed("window 1: missing start", field="windows", code=Code.WAITLIST_WINDOW_INVALID),
            "windows",
            "Check the times: window 1: missing start",
        ),
        (
            ValidationFailed("reason must have at most 500 characters", field="reason",
                             code=Code.WAITLIST_REASON_TOO_LONG, params={"limit": 500}),
            "reason",
            "Keep the reason to 500 characters or fewer.",
        ),
        (ValidationFailed("provider does not work at this clinic", field="provider_id"), "provider",
         "Provider does not work at this clinic"),
    ],
    ids=lambda v: v.code if isinstance(v, DomainError) else None,
)  # fmt: skip
def test_join_page_shows_the_mapped_words(
    monkeypatch: pytest.MonkeyPatch, error: DomainError, where: str, words: str
) -> None:
    page = _join_page_after(monkeypatch, error)
    assert page.busy is False
    if where == "form":
        assert (page.form_error, page.field_errors) == (words, {})
    else:
        assert (page.form_error, page.field_errors) == ("", {where: words})


def test_join_page_duplicate_keeps_its_alert(monkeypatch: pytest.MonkeyPatch) -> None:
    page = _join_page_after(monkeypatch, Conflict("You are already on this waitlist", code=Code.WAITLIST_ALREADY_ON))
    assert page.duplicate is True and page.form_error == "You are already on this waitlist"
