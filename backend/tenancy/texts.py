"""The texts a practice publishes: its Terms of use and Privacy notice.

Each practice sets its own (admin); until it does, a sensible default naming the practice is shown. The text is
plain: paragraphs separated by blank lines. It is stored and returned as written and rendered as text, never as
HTML, so nothing in it can run in a reader's browser.

Anyone may read a practice's texts (the pages are public, like a clinic's paper notice): a signed-in person their
own practice's, a visitor by the practice's short name (`public_practice_text`, the system scope finds the
practice; the read itself runs in that practice's scope, under row-level security).
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlmodel import col, select

from backend.audit.service import record
from backend.db import UnitOfWork
from backend.errors import NotFound, ValidationFailed
from backend.service import require_role, service_function
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import PRACTICE_TEXT_KINDS, PracticeText, Tenant
from backend.types import utcnow

MAX_CHARS = 20_000
MAX_PARAGRAPHS = 200
TITLES = {"terms": "Terms of use", "privacy": "Privacy notice"}
# Control characters other than newline and tab have no place in a notice (NUL is refused at the edge too).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,59}$")

DEFAULT_TEXTS = {
    "terms": (
        "These terms apply when you use {practice}'s online booking and waitlist service.\n\n"
        "You may book, move and cancel your own appointments, and join waitlists, for yourself only. Keep your "
        "password to yourself, and sign out on shared devices.\n\n"
        "Appointments can be cancelled or moved online until the cut-off your clinic sets (usually 24 hours before "
        "the start). A later cancellation is recorded as late; to move an appointment after the cut-off, call the "
        "clinic.\n\n"
        "A waitlist offer holds a time for you for a limited time only. If you do not answer in time, it goes to "
        "the next person waiting.\n\n"
        "This service is not for emergencies. If you are in crisis or need urgent care, call your local emergency "
        "number.\n\n"
        "{practice} may update these terms; the version on this page is the one that applies."
    ),
    "privacy": (
        "{practice} uses this service to run its appointments and waitlists. This notice says what it keeps and "
        "why.\n\n"
        "What we keep: your name and contact details, your appointments and waitlist entries, the times that suit "
        "you, and the messages we send you. Free-text notes are encrypted at rest.\n\n"
        "Who sees it: only the staff of {practice} who need it for your care and scheduling. Other practices "
        "using the same service never see it. Every look at your records is logged.\n\n"
        "Messages: we contact you only on the channels you choose under Messages, and text messages never "
        "contain details of your care.\n\n"
        "Your rights: ask the practice for a copy of your data, to correct it, or to close your account.\n\n"
        "Questions: contact {practice} at any of its clinics."
    ),
}


@dataclass(frozen=True)
class PracticeTextView:
    """A practice's text as the pages and the API show it."""

    kind: str
    title: str
    practice: str
    body: str
    # 'practice' when the practice set it, 'default' otherwise.
    source: str
    updated_at: datetime | None

    @property
    def paragraphs(self) -> list[str]:
        return paragraphs(self.body)


def paragraphs(body: str) -> list[str]:
    """The text's paragraphs (blank-line separated; single newlines kept inside a paragraph)."""
    return [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]


def default_text(kind: str, practice: str) -> str:
    return DEFAULT_TEXTS[kind].format(practice=practice)


def _kind(kind: str) -> str:
    if kind not in PRACTICE_TEXT_KINDS:
        raise ValidationFailed("Choose 'terms' or 'privacy'.", field="kind")
    return kind


def _clean(body: str) -> str:
    """The text as it will be stored: normalised newlines, no control characters, within the limits."""
    if not isinstance(body, str):
        raise ValidationFailed("Give the text as plain text.", field="body")
    if _CONTROL.search(body.replace("\r\n", "\n").replace("\r", "\n")):
        raise ValidationFailed("The text contains control characters; paste it as plain text.", field="body")
    try:
        body.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationFailed("The text contains characters that cannot be stored.", field="body") from exc
    body = unicodedata.normalize("NFC", body.replace("\r\n", "\n").replace("\r", "\n")).strip()
    if not body:
        raise ValidationFailed("Enter the text, or restore the default.", field="body")
    if len(body) > MAX_CHARS:
        raise ValidationFailed(f"Keep the text under {MAX_CHARS:,} characters (it has {len(body):,}).", field="body")
    if len(paragraphs(body)) > MAX_PARAGRAPHS:
        raise ValidationFailed(f"Keep the text under {MAX_PARAGRAPHS} paragraphs.", field="body")
    return body


def _row(uow: UnitOfWork, kind: str) -> PracticeText | None:
    return uow.session.exec(select(PracticeText).where(col(PracticeText.kind) == kind)).first()


def _practice_name(uow: UnitOfWork, actor: Actor) -> str:
    tenant = uow.session.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("practice")
    return tenant.name


def _view(kind: str, practice: str, row: PracticeText | None) -> PracticeTextView:
    if row is None:
        return PracticeTextView(kind, TITLES[kind], practice, default_text(kind, practice), "default", None)
    return PracticeTextView(kind, TITLES[kind], practice, row.body, "practice", row.updated_at)


@service_function
def get_practice_text(actor: Actor, uow: UnitOfWork, kind: str) -> PracticeTextView:
    """Read the practice's Terms or Privacy text (anyone of the practice), or the default when it set none."""
    kind = _kind(kind)
    return _view(kind, _practice_name(uow, actor), _row(uow, kind))


@service_function
def update_practice_text(actor: Actor, uow: UnitOfWork, kind: str, *, body: str | None) -> PracticeTextView:
    """Set the practice's Terms or Privacy text (admin, audited); `body` None restores the default."""
    require_role(actor, Role.ADMIN)
    kind = _kind(kind)
    cleaned = None if body is None else _clean(body)
    if uow.session.get_bind().dialect.name == "postgresql":
        # Two admins saving at once: the second waits and updates the first one's row instead of colliding.
        uow.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"{uow.tenant_id}:practice-text:{kind}"},
        )
    practice = _practice_name(uow, actor)
    row = _row(uow, kind)
    before = len(row.body) if row is not None else None
    if cleaned is not None and cleaned == default_text(kind, practice):
        cleaned = None  # the default, word for word: keep following it
    if (row is None and cleaned is None) or (row is not None and row.body == cleaned):
        return _view(kind, practice, row)
    now = utcnow()
    entity_id: uuid.UUID
    if cleaned is None and row is not None:
        entity_id = row.id
        uow.session.delete(row)
        row = None
    elif cleaned is not None:
        if row is None:
            row = PracticeText(tenant_id=actor.tenant_id, kind=kind, body=cleaned, updated_at=now)
        else:
            row.body, row.updated_at = cleaned, now
        uow.session.add(row)
        entity_id = row.id
    uow.flush()
    # The text is public, but the audit keeps only its size: who changed which text when is what matters.
    record(
        actor,
        uow,
        action="practice.text_changed",
        entity_type="practice_text",
        entity_id=entity_id,
        data={"kind": kind, "chars_before": before, "chars": None if row is None else len(row.body)},
    )
    return _view(kind, practice, row)


def find_practice(slug: str) -> tuple[uuid.UUID, str] | None:
    """The practice with this short name (system scope: no one is signed in), or None."""
    slug = slug.strip().lower()
    if not _SLUG.match(slug):
        return None
    with UnitOfWork(system=True) as uow:
        tenant = uow.session.exec(select(Tenant).where(col(Tenant.slug) == slug)).first()
        return (tenant.id, tenant.name) if tenant is not None else None


def public_practice_text(slug: str, kind: str) -> PracticeTextView:
    """A practice's text for a visitor, by the practice's short name; NotFound for an unknown practice."""
    kind = _kind(kind)
    found = find_practice(slug)
    if found is None:
        raise NotFound("practice")
    actor = Actor.system(found[0])
    with UnitOfWork(actor) as uow:
        return get_practice_text(actor, uow, kind)
