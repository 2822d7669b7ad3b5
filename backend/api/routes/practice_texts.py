"""The practice's Terms of use and Privacy notice: read by anyone (public, per practice), set by the admin."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from backend.api.deps import ActorDep, UowDep
from backend.tenancy.texts import (
    MAX_CHARS,
    PracticeTextView,
    get_practice_text,
    public_practice_text,
    update_practice_text,
)

router = APIRouter(prefix="/api/v1", tags=["practice"])

Kind = Literal["terms", "privacy"]


class PracticeTextPublic(BaseModel):
    """A practice's text. `body` is plain text (paragraphs separated by blank lines): render it as text, never
    as HTML."""

    kind: Kind
    title: str
    practice: str
    body: str
    paragraphs: list[str]
    source: Literal["practice", "default"] = Field(description="'default': the practice has not set its own")
    updated_at: datetime | None

    @classmethod
    def of(cls, view: PracticeTextView) -> PracticeTextPublic:
        return cls(
            kind=view.kind,  # type: ignore[arg-type]
            title=view.title,
            practice=view.practice,
            body=view.body,
            paragraphs=view.paragraphs,
            source=view.source,  # type: ignore[arg-type]
            updated_at=view.updated_at,
        )


class PracticeTextBody(BaseModel):
    """PUT /practice-texts/{terms|privacy}: the whole text; null restores the default."""

    model_config = ConfigDict(extra="forbid")

    body: StrictStr | None = Field(
        max_length=MAX_CHARS + 1000,  # the exact limit (after trimming) is the service's, with its message
        description=f"Plain text, paragraphs separated by blank lines, up to {MAX_CHARS} characters. "
        "null: show the default text again.",
    )


@router.get(
    "/practices/{practice}/texts/{kind}",
    response_model=PracticeTextPublic,
    responses={404: {"description": "No practice has this short name"}},
)
def get_public_text_route(
    practice: Annotated[str, Path(max_length=60, description="The practice's short name, e.g. 'harbor'")],
    kind: Kind,
) -> PracticeTextPublic:
    """A practice's Terms of use or Privacy notice (public: no sign-in needed)."""
    return PracticeTextPublic.of(public_practice_text(practice, kind))


def _get_own(kind: Kind) -> Callable[..., PracticeTextPublic]:
    def route(actor: ActorDep, uow: UowDep) -> PracticeTextPublic:
        return PracticeTextPublic.of(get_practice_text(actor, uow, kind))

    route.__doc__ = f"The signed-in person's practice's {kind} text (the default until the admin sets one)."
    return route


def _put_own(kind: Kind) -> Callable[..., PracticeTextPublic]:
    def route(payload: PracticeTextBody, actor: ActorDep, uow: UowDep) -> PracticeTextPublic:
        view = update_practice_text(actor, uow, kind, body=payload.body)
        uow.commit()
        return PracticeTextPublic.of(view)

    route.__doc__ = f"Set the practice's {kind} text (admin, audited); body null restores the default."
    return route


# One fixed path per kind (no path parameter): the texts belong to the caller's practice, named by the token.
_KINDS: tuple[Kind, ...] = ("terms", "privacy")
for _kind in _KINDS:
    router.add_api_route(
        f"/practice-texts/{_kind}",
        _get_own(_kind),
        methods=["GET"],
        response_model=PracticeTextPublic,
        name=f"get_practice_{_kind}",
        summary=f"Get the practice's {_kind} text",
    )
    router.add_api_route(
        f"/practice-texts/{_kind}",
        _put_own(_kind),
        methods=["PUT"],
        response_model=PracticeTextPublic,
        name=f"put_practice_{_kind}",
        summary=f"Set the practice's {_kind} text",
    )
