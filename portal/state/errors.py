"""The words a page shows for a domain error, in one place: looked up by the error's code, never by its text.

A code missing here is shown as the error's own message (as a sentence). A template may name the error's
`params` (e.g. `{limit}`) and `{message}`, the error's own message.
"""

from __future__ import annotations

from backend.errors import Code, DomainError

WORDS: dict[str, str] = {
    Code.WAITLIST_MAX_ENTRIES_PER_PATIENT: (
        "You are already on {limit} waitlists, the most allowed at once. Leave one on My waitlist to join another."
    ),
    Code.WAITLIST_MAX_ACTIVE_PER_PROVIDER: (
        "This provider's waitlist is full right now. Try “Any provider at this clinic”, or call the clinic."
    ),
    Code.WAITLIST_MAX_ACTIVE_PER_CLINIC: "This clinic's waitlist is full right now. Please call the clinic.",
    Code.WAITLIST_LATEST_DATE_PAST: "The latest date has already passed.",
    Code.WAITLIST_DATES_REVERSED: "The latest date must be on or after the earliest date.",
    Code.WAITLIST_WINDOW_INVALID: "Check the times: {message}",
    Code.WAITLIST_REASON_TOO_LONG: "Keep the reason to {limit} characters or fewer.",
}
# What a template's placeholder says when the error did not carry the value.
DEFAULTS: dict[str, object] = {"limit": "the most"}


def sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


def words_for(exc: DomainError) -> str:
    """What to tell the person about `exc`: the mapped words for its code, else its own message."""
    message = exc.message or ""
    template = WORDS.get(exc.code)
    if template is None:
        return sentence(message)
    values = {**DEFAULTS, **{k: v for k, v in exc.params.items() if v not in (None, "")}, "message": message}
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError):
        return sentence(message)
