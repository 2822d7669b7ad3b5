"""The Terms and Privacy pages (anyone) and their editor (admin)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import reflex as rx

from backend.db import UnitOfWork
from backend.errors import DomainError
from backend.identity import service as identity
from backend.tenancy import service as tenancy
from backend.tenancy.context import Role
from backend.tenancy.models import PRACTICE_TEXT_KINDS
from backend.tenancy.texts import (
    TITLES,
    PracticeTextView,
    default_text,
    get_practice_text,
    paragraphs,
    public_practice_text,
    update_practice_text,
)
from portal.state.session import HOME_BY_ROLE, SESSION_ENDED, SessionState, session_token

GENERIC_PRACTICE = "your practice"


def _updated(view: PracticeTextView) -> str:
    return f"{view.updated_at:%d %b %Y}" if view.updated_at else ""


class PracticeTextPageState(rx.State):
    """What /terms and /privacy show: the practice named by `?practice=<short name>`, else the signed-in person's
    own practice, else the default text for any practice. Plain text only: rendered as paragraphs of text."""

    kind: str = "terms"
    title: str = ""
    practice: str = ""
    paragraphs: list[str] = []
    updated: str = ""
    notice: str = ""
    # "?practice=<short name>" when the page was opened with one: the link to the other text keeps it.
    practice_query: str = ""
    back_href: str = "/login"
    back_label: str = "Sign in"
    loaded: bool = False

    def _show(self, view: PracticeTextView) -> None:
        self.title, self.practice, self.paragraphs, self.updated = view.title, view.practice, view.paragraphs, ""
        if view.source == "practice":
            self.updated = _updated(view)

    @rx.event
    def load(self):
        path = (self.router.url.path or "").rstrip("/")
        kind = "privacy" if path.endswith("/privacy") else "terms"
        self.kind, self.notice, self.loaded = kind, "", False
        actor = identity.actor_from_session(session_token(self))
        self.back_href = HOME_BY_ROLE.get(str(actor.role), "/") if actor is not None else "/login"
        self.back_label = "Back to your home" if actor is not None else "Sign in"
        slug = str(self.router.url.query_parameters.get("practice", ""))[:60]
        self.practice_query = ""
        try:
            if slug:
                self._show(public_practice_text(slug, kind))
                self.practice_query = "?" + urlencode({"practice": slug})
            elif actor is not None:
                with UnitOfWork(actor) as uow:
                    self._show(get_practice_text(actor, uow, kind))
            else:
                self._generic(kind)
        except DomainError:
            self._generic(kind)
            self.notice = "We could not find that practice. This is the general text; ask your practice for theirs."
        self.loaded = True

    def _generic(self, kind: str) -> None:
        self.title, self.practice, self.updated = TITLES[kind], "", ""
        self.paragraphs = paragraphs(default_text(kind, GENERIC_PRACTICE))
        if not self.notice:
            self.notice = (
                "Each practice sets its own text. Sign in, or open the link your practice sent, to read theirs."
            )


class PracticeTextsAdminState(SessionState):
    """The admin's editor of the practice's Terms and Privacy texts; every save is audited by the service."""

    texts: dict[str, str] = {}
    sources: dict[str, str] = {}
    updated: dict[str, str] = {}
    errors: dict[str, str] = {}
    saved: dict[str, str] = {}
    loaded: bool = False
    # The practice's short name: its public pages are /terms?practice=<slug> for visitors not signed in.
    slug: str = ""
    # Bumped on each load so the uncontrolled text areas take the loaded text again.
    form_key: int = 0

    def _apply(self, view: PracticeTextView) -> None:
        self.texts = {**self.texts, view.kind: view.body}
        self.sources = {**self.sources, view.kind: view.source}
        self.updated = {**self.updated, view.kind: _updated(view)}

    @rx.event
    def load(self):
        actor = self._actor(Role.ADMIN)
        if actor is None:
            return None  # the guard has said why (sign-in, or a page for another role)
        with UnitOfWork(actor) as uow:
            for kind in PRACTICE_TEXT_KINDS:
                self._apply(get_practice_text(actor, uow, kind))
            self.slug = tenancy.get_tenant(actor, uow).slug
        self.errors, self.saved = {}, {}
        self.form_key += 1
        self.loaded = True
        return None

    def _store(self, kind: str, body: str | None):
        actor = self._actor(Role.ADMIN)
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        if kind not in PRACTICE_TEXT_KINDS:
            return None
        try:
            with UnitOfWork(actor) as uow:
                view = update_practice_text(actor, uow, kind, body=body)
                uow.commit()
        except DomainError as exc:
            self.errors = {**self.errors, kind: exc.message}
            self.saved = {**self.saved, kind: ""}
            return None
        self._apply(view)
        self.errors = {**self.errors, kind: ""}
        self.saved = {**self.saved, kind: "Saved." if body is not None else "The default text is back."}
        if body is None:
            self.form_key += 1  # show the default in the text area
        return None

    @rx.event
    def save(self, form: dict[str, Any]):
        kind = str(form.get("kind") or "")
        return self._store(kind, str(form.get("body") or ""))

    @rx.event
    def restore_default(self, kind: str):
        return self._store(kind, None)
