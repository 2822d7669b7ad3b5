"""The notifications package listens to the domain: which domain event becomes which notice for the patient.

Scheduling, waitlist and tenancy only record domain events (backend.events.emit); they never import this
package. `register()` (called once by the composition point, backend.composition) subscribes the handlers
below; each runs inside the transaction of the change that emitted the event and writes the outbox rows through
backend.notifications.outbox.notify, with the actor of that unit of work: a rolled-back change leaves no
notice, a committed one has exactly its rows (invariant 5), and delivery is enqueued after commit.

Events carry ids only; a notice's payload is the ids its template needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

from backend import events
from backend.db import UnitOfWork
from backend.events import DomainEvent
from backend.notifications import outbox

Handler = Callable[[UnitOfWork, DomainEvent], None]


def _write(uow: UnitOfWork, event: DomainEvent, event_type: str, payload: dict[str, str]) -> None:
    patient_id = event.data.get("patient_id")
    if not patient_id:
        return  # a hold or appointment with no patient: nobody to tell
    if uow.actor is None:  # emit refuses a unit of work without a tenant; kept for the type checker
        raise ValueError("a notice is written by the actor of its unit of work")
    outbox.notify(uow.actor, uow, patient_id=uuid.UUID(str(patient_id)), event_type=event_type, payload=payload)


def _ids(event: DomainEvent, entity_key: str, keys: Iterable[str]) -> dict[str, str]:
    """The notice's payload: the event's entity id under `entity_key`, then the named ids of its data."""
    return {entity_key: str(event.entity_id), **{key: str(event.data[key]) for key in keys}}


def _appointment_notice(event_type: str, *, unless: tuple[str, ...] = ()) -> Handler:
    """A notice naming the appointment, its clinic and provider; none when the event carries an id in `unless`."""

    def handle(uow: UnitOfWork, event: DomainEvent) -> None:
        if any(event.data.get(key) for key in unless):
            return
        _write(uow, event, event_type, _ids(event, "appointment_id", ("clinic_id", "provider_id")))

    return handle


def _entry_notice(event_type: str) -> Handler:
    """A notice naming the waitlist entry and the clinic it concerns."""

    def handle(uow: UnitOfWork, event: DomainEvent) -> None:
        _write(uow, event, event_type, _ids(event, "entry_id", ("clinic_id",)))

    return handle


def _offer_made(uow: UnitOfWork, event: DomainEvent) -> None:
    _write(uow, event, "waitlist_offer",
           _ids(event, "offer_id", ("entry_id", "appointment_id", "clinic_id", "provider_id")))  # fmt: skip


def _offer_expired(uow: UnitOfWork, event: DomainEvent) -> None:
    _write(uow, event, "waitlist_offer_expired", _ids(event, "offer_id", ("entry_id", "clinic_id", "provider_id")))


# domain event -> its notice. A rescheduled appointment emits appointment.cancelled (old) and appointment.booked
# (new) for the pages, but its patient gets ONE notice, from appointment.rescheduled; an accepted offer books
# without a notice (the patient answered in the app).
HANDLERS: dict[str, tuple[Handler, ...]] = {
    "appointment.booked": (_appointment_notice("appointment_booked", unless=("rescheduled_from", "offer_id")),),
    "appointment.cancelled": (_appointment_notice("appointment_cancelled", unless=("rescheduled_to",)),),
    "appointment.rescheduled": (_appointment_notice("appointment_rescheduled"),),
    "waitlist.offer_created": (_offer_made,),
    "waitlist.offer_expired": (_offer_expired,),
    "waitlist.entry_lapsed": (_entry_notice("waitlist_entry_expired"),),
    "waitlist.reconfirm_requested": (_entry_notice("waitlist_reconfirm"),),
    "waitlist.entry_closed": (_entry_notice("waitlist_entry_closed"),),
    "waitlist.entry_moved": (_entry_notice("waitlist_entry_moved"),),
}

_removers: list[Callable[[], None]] = []


def register() -> None:
    """Subscribe every handler (idempotent)."""
    if _removers:
        return
    for name, handlers in HANDLERS.items():
        for handler in handlers:
            _removers.append(events.subscribe(name, handler))


def unregister() -> None:
    """Remove every handler (tests: a domain change with nobody subscribed writes no notice)."""
    while _removers:
        _removers.pop()()


def registered() -> bool:
    return bool(_removers)
