"""The practice's Terms and Privacy texts: defaults, the admin's edit (audited), plain text only, the public read
per practice, role scopes and bad input, through the service and the REST routes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.audit.models import AuditEvent
from backend.errors import PermissionDenied, ValidationFailed
from backend.tenancy.models import PracticeText
from backend.tenancy.texts import MAX_CHARS, default_text, get_practice_text, paragraphs, update_practice_text
from tests.factories import Practice, bearer, call, make_practice, rows

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


@pytest.fixture
def summit(db: sa.Engine) -> Practice:
    return make_practice("Summit Counseling", "summit")


def test_the_default_names_the_practice_until_the_admin_sets_a_text(harbor: Practice) -> None:
    for actor in harbor.actors.values():
        view = call(actor, get_practice_text, "terms")
        assert view.source == "default" and view.updated_at is None
        assert view.body == default_text("terms", "Harbor Mental Health")
        assert "Harbor Mental Health" in view.body and "24 hours" in view.body
    assert call(harbor.patient_actor, get_practice_text, "privacy").title == "Privacy notice"

    saved = call(harbor.admin, update_practice_text, "terms", body="  First rule.\r\n\r\nSecond\r\nrule.  ")
    assert saved.source == "practice" and saved.body == "First rule.\n\nSecond\nrule."
    assert saved.paragraphs == ["First rule.", "Second\nrule."]
    assert call(harbor.patient_actor, get_practice_text, "terms").body == saved.body
    # The other text is still the default.
    assert call(harbor.patient_actor, get_practice_text, "privacy").source == "default"

    (event,) = rows(harbor, AuditEvent, action="practice.text_changed")
    assert event.data == {"kind": "terms", "chars_before": None, "chars": len(saved.body)}
    assert event.actor_user_id == harbor.admin.user_id


def test_restoring_the_default_removes_the_row_and_an_unchanged_save_writes_nothing(harbor: Practice) -> None:
    call(harbor.admin, update_practice_text, "privacy", body="Ours.")
    assert call(harbor.admin, update_practice_text, "privacy", body="Ours.").source == "practice"
    assert len(rows(harbor, AuditEvent, action="practice.text_changed")) == 1  # the same text again: no change
    # Saving the default word for word keeps following the default (no copy that would go stale).
    again = call(harbor.admin, update_practice_text, "privacy", body=default_text("privacy", "Harbor Mental Health"))
    assert again.source == "default" and rows(harbor, PracticeText) == []
    call(harbor.admin, update_practice_text, "privacy", body="Ours again.")
    assert call(harbor.admin, update_practice_text, "privacy", body=None).source == "default"
    assert rows(harbor, PracticeText) == []
    assert len(rows(harbor, AuditEvent, action="practice.text_changed")) == 4


def test_only_the_admin_sets_a_text(harbor: Practice) -> None:
    for actor in (harbor.doctor, harbor.patient_actor):
        with pytest.raises(PermissionDenied):
            call(actor, update_practice_text, "terms", body="Mine now.")
    assert rows(harbor, PracticeText) == []


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("cookies", "Text.", "kind"),
        ("terms", "", "body"),
        ("terms", " \n\n\t ", "body"),
        ("terms", "a\x00b", "body"),
        ("terms", "bell\x07", "body"),
        ("terms", "lone \ud800 surrogate", "body"),
        ("terms", "x" * (MAX_CHARS + 1), "body"),
        ("terms", "p\n\n" * 201, "body"),
    ],
    ids=["kind", "empty", "blank", "nul", "control", "surrogate", "too-long", "too-many-paragraphs"],
)
def test_bad_input_is_refused_and_changes_nothing(harbor: Practice, kind: str, body: str, field: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        call(harbor.admin, update_practice_text, kind, body=body)
    assert refused.value.field == field and refused.value.message
    assert rows(harbor, PracticeText) == []
    assert rows(harbor, AuditEvent, action="practice.text_changed") == []


def test_markup_is_kept_as_text_never_interpreted(harbor: Practice) -> None:
    view = call(harbor.admin, update_practice_text, "terms", body=f"Intro.\n\n{XSS}")
    # Stored and returned as written; the pages render it with text nodes (React escapes it), never as HTML.
    assert view.paragraphs == ["Intro.", XSS]


def test_paragraphs_split_on_blank_lines_only() -> None:
    assert paragraphs("a\nb\n\n\n  c  \n \nd") == ["a\nb", "c", "d"]
    assert paragraphs("  \n ") == []


# -- the REST routes -----------------------------------------------------------------------------------------


def test_public_read_per_practice_needs_no_sign_in(client: TestClient, harbor: Practice, summit: Practice) -> None:
    call(harbor.admin, update_practice_text, "terms", body="Harbor's own terms.")
    theirs = client.get("/api/v1/practices/harbor/texts/terms")
    assert theirs.status_code == 200, theirs.text
    assert theirs.json()["body"] == "Harbor's own terms." and theirs.json()["source"] == "practice"
    assert theirs.json()["practice"] == "Harbor Mental Health"
    assert theirs.headers["cache-control"] == "no-store"
    other = client.get("/api/v1/practices/summit/texts/terms").json()
    assert other["source"] == "default" and "Summit Counseling" in other["body"] and "Harbor" not in other["body"]
    for path in ("/api/v1/practices/nowhere/texts/terms", "/api/v1/practices/HARBOR%20x/texts/terms"):
        missing = client.get(path)
        assert missing.status_code == 404 and missing.json()["detail"] == "practice not found"
    assert client.get("/api/v1/practices/harbor/texts/cookies").status_code == 422
    assert client.get("/api/v1/practices/" + "a" * 61 + "/texts/terms").status_code == 422


def test_admin_puts_others_may_not_and_each_practice_reads_its_own(
    client: TestClient, harbor: Practice, summit: Practice
) -> None:
    admin = bearer(client, harbor.emails["admin"])
    saved = client.put("/api/v1/practice-texts/privacy", json={"body": "Our privacy."}, headers=admin)
    assert saved.status_code == 200, saved.text
    assert saved.json()["paragraphs"] == ["Our privacy."] and saved.json()["source"] == "practice"
    for role in ("doctor", "patient"):
        headers = bearer(client, harbor.emails[role])
        refused = client.put("/api/v1/practice-texts/privacy", json={"body": "No."}, headers=headers)
        assert refused.status_code == 403
        assert client.get("/api/v1/practice-texts/privacy", headers=headers).json()["body"] == "Our privacy."
    # The other practice's admin reads and writes only their own.
    summit_admin = bearer(client, summit.emails["admin"])
    assert client.get("/api/v1/practice-texts/privacy", headers=summit_admin).json()["source"] == "default"
    client.put("/api/v1/practice-texts/privacy", json={"body": "Summit's."}, headers=summit_admin)
    assert client.get("/api/v1/practice-texts/privacy", headers=admin).json()["body"] == "Our privacy."
    assert client.get("/api/v1/practices/harbor/texts/privacy").json()["body"] == "Our privacy."
    # Without a token: 401.
    assert client.get("/api/v1/practice-texts/privacy").status_code == 401
    assert client.put("/api/v1/practice-texts/privacy", json={"body": "x"}).status_code == 401


@pytest.mark.parametrize(
    "payload",
    [{}, {"body": 5}, {"body": ""}, {"body": "ok", "extra": 1}, {"body": ["a"]}, {"body": "x" * (MAX_CHARS + 2000)}],
    ids=["missing", "number", "empty", "extra-field", "list", "huge"],
)
def test_put_refuses_bad_bodies_with_422(client: TestClient, harbor: Practice, payload: dict) -> None:
    admin = bearer(client, harbor.emails["admin"])
    response = client.put("/api/v1/practice-texts/terms", json=payload, headers=admin)
    assert response.status_code == 422, response.text
    assert rows(harbor, PracticeText) == []


def test_put_null_restores_the_default(client: TestClient, harbor: Practice) -> None:
    admin = bearer(client, harbor.emails["admin"])
    client.put("/api/v1/practice-texts/terms", json={"body": "Ours."}, headers=admin)
    restored = client.put("/api/v1/practice-texts/terms", json={"body": None}, headers=admin)
    assert restored.status_code == 200 and restored.json()["source"] == "default"
    assert rows(harbor, PracticeText) == []
