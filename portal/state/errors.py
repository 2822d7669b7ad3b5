"""The words a page shows for a domain error, in one place: looked up by the error's code, never by its text.

A code missing here is shown as the error's own message (as a sentence). A template may name the error's
`params` (e.g. `{limit}`) and `{message}`, the error's own message.

In another language than English (the patient's pages, portal/i18n.py) the templates are translated, and so are
the patient-facing errors of `IN_OTHER_LANGUAGES`; any other message stays as the service worded it.
"""

from __future__ import annotations

from backend.errors import Code, DomainError
from portal.i18n import N_, tr

WORDS: dict[str, str] = {
    Code.WAITLIST_MAX_ENTRIES_PER_PATIENT: N_(
        "You are already on {limit} waitlists, the most allowed at once. Leave one on My waitlist to join another."
    ),
    Code.WAITLIST_MAX_ACTIVE_PER_PROVIDER: N_(
        "This provider's waitlist is full right now. Try “Any provider at this clinic”, or call the clinic."
    ),
    Code.WAITLIST_MAX_ACTIVE_PER_CLINIC: N_("This clinic's waitlist is full right now. Please call the clinic."),
    Code.WAITLIST_LATEST_DATE_PAST: N_("The latest date has already passed."),
    Code.WAITLIST_DATES_REVERSED: N_("The latest date must be on or after the earliest date."),
    Code.WAITLIST_WINDOW_INVALID: N_("Check the times: {message}"),
    Code.WAITLIST_REASON_TOO_LONG: N_("Keep the reason to {limit} characters or fewer."),
}
# What a template's placeholder says when the error did not carry the value.
DEFAULTS: dict[str, object] = {"limit": N_("the most")}
# The errors a patient meets most, worded for the other languages (English shows the service's own message).
IN_OTHER_LANGUAGES: dict[str, str] = {
    Code.SLOT_TAKEN: N_("That time was just taken. Please choose another slot."),
    Code.HOLD_EXPIRED: N_("Your hold on this time has expired. Please choose the slot again."),
    Code.OFFER_CLOSED: N_("This offer is no longer open."),
    Code.WAITLIST_ALREADY_ON: N_("You are already on this waitlist."),
    Code.RESCHEDULE_CHANGE_UNCONFIRMED: N_(
        "This move changes your visit as listed above: tick the box to confirm the change."
    ),
}


def sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


def words_for(exc: DomainError, lang: str = "en") -> str:
    """What to tell the person about `exc` in `lang`: the mapped words for its code, else its own message."""
    message = exc.message or ""
    template = WORDS.get(exc.code)
    if template is None:
        other = IN_OTHER_LANGUAGES.get(exc.code) if lang != "en" else None
        return tr(lang, other) if other else sentence(message)
    defaults = {name: tr(lang, value) if isinstance(value, str) else value for name, value in DEFAULTS.items()}
    values = {**defaults, **{k: v for k, v in exc.params.items() if v not in (None, "")}, "message": message}
    try:
        return tr(lang, template).format_map(values)
    except (KeyError, IndexError, ValueError):
        return sentence(message)
