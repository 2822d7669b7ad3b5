"""Notification templates: every event, channel and locale; minimal PHI; SMS length; escaping; fallbacks."""

from __future__ import annotations

from typing import Any

import pytest

from backend.notifications.templates import (
    CHANNELS,
    EVENT_TYPES,
    LOCALES,
    SMS_MAX_CHARS,
    WHATSAPP_MAX_CHARS,
    TemplateContextError,
    normalise_locale,
    render,
)

LINK = "https://app.example.com/portal/appointments/7f3c2a10-1b2c-4d5e-8f90-0a1b2c3d4e5f"
SECRET_WORDS = ("Depression", "F32.1", "suicidal", "panic")


def _context(**overrides: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "practice_name": "Mindful Care",
        "patient_first_name": "Ana",
        "provider_name": "Dr. Lee",
        "clinic_name": "Downtown",
        "start_local": "Tue 24 Nov, 15:00 EST",
        "hold_until_local": "Mon 23 Nov, 18:00 EST",
        "respond_by_local": "Fri 27 Nov, 17:00 EST",
        "link": LINK,
        "unsubscribe_link": "https://app.example.com/unsubscribe/abc",
        # Never to be shown: callers may pass more than they should.
        "reason": "Depression follow-up",
        "diagnosis": "F32.1 major depressive disorder",
        "notes": "suicidal ideation last week; panic attacks",
    }
    context.update(overrides)
    return context


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_renders_on_every_channel(event_type: str, channel: str, locale: str) -> None:
    rendered = render(event_type, channel, _context(), locale)
    assert rendered.subject
    assert "\n" not in rendered.subject
    assert LINK in rendered.text
    assert "{{" not in rendered.text and "{%" not in rendered.text
    for word in SECRET_WORDS:
        assert word not in rendered.text
        assert word not in rendered.subject
        assert word not in (rendered.html or "")
    if channel in ("email", "console"):
        assert rendered.html is not None
        assert rendered.html.startswith("<!DOCTYPE html>")
        assert f'href="{LINK}"' in rendered.html
        assert "Ana" in rendered.text
        assert "https://app.example.com/unsubscribe/abc" in rendered.text
        assert 'href="https://app.example.com/unsubscribe/abc"' in rendered.html
    else:
        assert rendered.html is None
        limit = SMS_MAX_CHARS if channel == "sms" else WHATSAPP_MAX_CHARS
        assert len(rendered.text) <= limit


@pytest.mark.parametrize("event_type", EVENT_TYPES)
@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_short_channels_leave_out_reason_diagnosis_and_provider(event_type: str, channel: str) -> None:
    for locale in LOCALES:
        text = render(event_type, channel, _context(), locale).text
        for word in (*SECRET_WORDS, "Dr. Lee"):
            assert word not in text


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_english_sms_fits_one_segment_with_typical_values(event_type: str) -> None:
    text = render(event_type, "sms", _context(link="https://app.example.com/o/Ab3dE"), "en").text
    assert len(text) <= 160, text
    assert text.isascii()


@pytest.mark.parametrize("event_type", EVENT_TYPES)
@pytest.mark.parametrize("locale", LOCALES)
def test_sms_stays_within_the_limit_with_very_long_names(event_type: str, locale: str) -> None:
    context = _context(
        practice_name="The Extraordinarily Long-Named Center for Integrative Behavioural Health " * 3,
        clinic_name="North-East Satellite Office at the Old Municipal Library Building " * 3,
        patient_first_name="Maximiliana-Alejandra-Guadalupe " * 4,
        start_local="Wednesday 24 November 2027, 15:00 Eastern Standard Time",
        hold_until_local="Tuesday 23 November 2027, 18:00 Eastern Standard Time",
        respond_by_local="Friday 26 November 2027, 17:00 Eastern Standard Time",
    )
    for channel, limit in (("sms", SMS_MAX_CHARS), ("whatsapp", WHATSAPP_MAX_CHARS)):
        text = render(event_type, channel, context, locale).text
        assert len(text) <= limit
        assert LINK in text  # shortened names, never a cut link


def test_offer_shows_the_hold_deadline_everywhere() -> None:
    for channel in CHANNELS:
        for locale in LOCALES:
            rendered = render("waitlist_offer", channel, _context(), locale)
            assert "Mon 23 Nov, 18:00 EST" in rendered.text
            assert "Tue 24 Nov, 15:00 EST" in rendered.text
            if rendered.html is not None:
                assert "Mon 23 Nov, 18:00 EST" in rendered.html


@pytest.mark.parametrize(
    ("locale", "in_person", "telehealth"),
    [("en", "in person at Downtown", "telehealth (video)"), ("es", "presencial en Downtown", "telesalud (video)")],
)
def test_a_moved_appointment_says_where_and_how_it_now_takes_place(
    locale: str, in_person: str, telehealth: str
) -> None:
    # A reschedule can change the clinic or the modality (confirmed by the patient): the notice says which.
    visit = render("appointment_rescheduled", "email", _context(modality="in_person"), locale)
    assert in_person in visit.text
    assert visit.html is not None and "Downtown" in visit.html
    assert telehealth in render("appointment_rescheduled", "whatsapp", _context(modality="telehealth"), locale).text
    sms = render("appointment_rescheduled", "sms", _context(modality="telehealth"), locale).text
    assert telehealth.split(" ")[0] in sms
    assert "Downtown" not in sms  # the short channels name no place
    # Without a modality (an older row), the notice is as before: the time only.
    plain = render("appointment_rescheduled", "email", _context(), locale).text
    assert in_person not in plain and telehealth not in plain


def test_html_is_autoescaped_and_text_is_not() -> None:
    rendered = render("appointment_booked", "email", _context(patient_first_name='<b>Ana</b> & "Bo"'), "en")
    assert rendered.html is not None
    assert "&lt;b&gt;Ana&lt;/b&gt; &amp; &#34;Bo&#34;" in rendered.html
    assert "<b>Ana</b>" not in rendered.html
    assert '<b>Ana</b> & "Bo"' in rendered.text


def test_email_names_the_provider_and_omits_missing_optionals() -> None:
    full = render("appointment_reminder", "email", _context(), "en")
    assert "Dr. Lee" in full.text and "Dr. Lee" in (full.html or "")
    bare = render(
        "appointment_reminder",
        "email",
        {
            "practice_name": "Mindful Care",
            "patient_first_name": "Ana",
            "start_local": "Tue 24 Nov, 15:00 EST",
            "link": LINK,
        },
    )
    assert " with " not in bare.text
    assert "unsubscribe" not in bare.text.lower() and "unsubscribe" not in (bare.html or "").lower()
    assert "None" not in bare.text


def test_spanish_templates_and_locale_fallback() -> None:
    es = render("appointment_booked", "sms", _context(), "es")
    assert "su cita" in es.text
    assert render("appointment_booked", "sms", _context(), "es-MX").text == es.text
    assert render("appointment_booked", "email", _context(), "es_ES").subject.startswith("Su cita")
    en = render("appointment_booked", "sms", _context(), "en")
    assert "your appointment" in en.text
    assert render("appointment_booked", "sms", _context(), "fr").text == en.text
    assert normalise_locale(None) == "en"
    assert normalise_locale("") == "en"
    assert normalise_locale("ES") == "es"
    assert normalise_locale("pt-BR") == "en"


def test_reconfirm_deadline_is_optional() -> None:
    with_deadline = render("waitlist_reconfirm", "sms", _context(), "en").text
    without = render("waitlist_reconfirm", "sms", _context(respond_by_local=None), "en").text
    assert "Fri 27 Nov, 17:00 EST" in with_deadline
    assert " by " not in without


def test_missing_context_and_unknown_names_are_refused() -> None:
    with pytest.raises(TemplateContextError, match="hold_until_local"):
        render("waitlist_offer", "sms", _context(hold_until_local=None))
    with pytest.raises(TemplateContextError, match="link"):
        render("appointment_booked", "email", _context(link=""))
    with pytest.raises(TemplateContextError, match="unknown event"):
        render("appointment_teleported", "email", _context())
    with pytest.raises(TemplateContextError, match="unknown channel"):
        render("appointment_booked", "fax", _context())
    # Events without a time need none.
    assert render("waitlist_entry_expired", "sms", _context(start_local=None)).text


# Regression (issue 10, item 6): the offer did not say whether the held slot was telehealth or in person.
OFFER_MODALITY_WORDS = {
    ("en", "telehealth"): "telehealth",
    ("en", "in_person"): "in-person",
    ("es", "telehealth"): "por telesalud",
    ("es", "in_person"): "presencial",
}


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize(("locale", "modality"), list(OFFER_MODALITY_WORDS))
def test_waitlist_offer_says_how_the_slot_is_held(channel: str, locale: str, modality: str) -> None:
    rendered = render("waitlist_offer", channel, _context(modality=modality), locale)
    word = OFFER_MODALITY_WORDS[(locale, modality)]
    assert word in rendered.text.lower()
    other = OFFER_MODALITY_WORDS[(locale, "in_person" if modality == "telehealth" else "telehealth")]
    assert other not in rendered.text.lower()
    if rendered.html is not None:
        assert word in rendered.html.lower()
    if channel in ("sms", "whatsapp"):  # the modality, still never the provider, reason or diagnosis
        for secret in (*SECRET_WORDS, "Dr. Lee"):
            assert secret not in rendered.text
        assert len(rendered.text) <= (SMS_MAX_CHARS if channel == "sms" else WHATSAPP_MAX_CHARS)
    if channel == "sms" and locale == "en":  # still one segment with typical values
        short = render("waitlist_offer", "sms", _context(modality=modality, link="https://app.example.com/o/Ab3dE"))
        assert len(short.text) <= 160 and short.text.isascii(), short.text


@pytest.mark.parametrize("locale", LOCALES)
def test_waitlist_offer_without_a_known_modality_names_none(locale: str) -> None:
    for modality in ("", "<b>odd</b>"):
        text = render("waitlist_offer", "sms", _context(modality=modality), locale).text.lower()
        assert not any(word in text for word in OFFER_MODALITY_WORDS.values())
        assert "odd" not in text
