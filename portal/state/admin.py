"""Admin pages: the clinic selector every admin page shares, the overview and clinic management."""

from __future__ import annotations

import uuid
from zoneinfo import available_timezones

import reflex as rx
from pydantic import ValidationError

from backend.db import UnitOfWork
from backend.errors import Code, DomainError
from backend.tenancy import service as tenancy
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import ClinicCreate, ClinicUpdate
from portal.state.session import SessionState

ALL_CLINICS = "all"
TIMEZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/", "posix/")))


def _form_errors(exc: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "form"
        message = str(err["msg"]).removeprefix("Value error, ")
        errors.setdefault(field, message[:1].upper() + message[1:])
    return errors


class AdminState(SessionState):
    """Shared by every admin page: the practice's clinics and the selected one."""

    clinics: list[dict[str, str]] = []
    selected_clinic_id: str = ALL_CLINICS
    overview: list[dict[str, str]] = []
    # Distinct practice-wide counts, for "All clinics" (summing clinics would count shared providers twice).
    practice: dict[str, int] = {}

    def _admin(self) -> Actor | None:
        return self._actor(Role.ADMIN)

    def _refresh(self, actor: Actor) -> None:
        with UnitOfWork(actor) as uow:
            summaries = tenancy.clinic_overview(actor, uow, include_archived=True)
            totals = tenancy.practice_totals(actor, uow)
        self.practice = {
            "providers": totals.providers,
            "patients": totals.patients,
            "upcoming": totals.upcoming_appointments,
            "waiting": totals.waiting_entries,
        }
        self.clinics = [
            {"id": str(s.clinic_id), "name": s.name, "timezone": s.timezone, "archived": "1" if s.archived else ""}
            for s in summaries
        ]
        self.overview = [
            {
                "id": str(s.clinic_id),
                "name": s.name,
                "timezone": s.timezone,
                "archived": "1" if s.archived else "",
                "providers": str(s.providers),
                "patients": str(s.patients),
                "upcoming": str(s.upcoming_appointments),
                "waiting": str(s.waiting_entries),
            }
            for s in summaries
        ]
        if self.selected_clinic_id != ALL_CLINICS and self.selected_clinic_id not in {c["id"] for c in self.clinics}:
            self.selected_clinic_id = ALL_CLINICS

    @rx.event
    def load(self):
        actor = self._admin()
        if actor is not None:
            self._refresh(actor)

    @rx.event
    def select_clinic(self, clinic_id: str):
        self.selected_clinic_id = clinic_id

    @rx.var
    def clinic_options(self) -> list[dict[str, str]]:
        return [{"id": ALL_CLINICS, "name": "All clinics"}] + [
            {"id": c["id"], "name": c["name"] + (" (archived)" if c["archived"] else "")} for c in self.clinics
        ]

    @rx.var
    def visible_overview(self) -> list[dict[str, str]]:
        if self.selected_clinic_id == ALL_CLINICS:
            return [row for row in self.overview if not row["archived"]]
        return [row for row in self.overview if row["id"] == self.selected_clinic_id]

    @rx.var
    def visible_clinic_rows(self) -> list[dict[str, str]]:
        """The clinics page lists archived clinics too, so they can be restored."""
        if self.selected_clinic_id == ALL_CLINICS:
            return self.overview
        return [row for row in self.overview if row["id"] == self.selected_clinic_id]

    def _total(self, key: str) -> int:
        if self.selected_clinic_id == ALL_CLINICS:
            return self.practice.get(key, 0)
        return sum(int(row[key]) for row in self.visible_overview)

    @rx.var
    def total_providers(self) -> int:
        return self._total("providers")

    @rx.var
    def total_patients(self) -> int:
        return self._total("patients")

    @rx.var
    def total_upcoming(self) -> int:
        return self._total("upcoming")

    @rx.var
    def total_waiting(self) -> int:
        return self._total("waiting")


class ClinicFormState(AdminState):
    """Create, edit, archive and delete clinics."""

    dialog_open: bool = False
    editing_id: str = ""
    form_name: str = ""
    form_timezone: str = ""
    form_address: str = ""
    form_phone: str = ""
    form_errors: dict[str, str] = {}
    delete_id: str = ""
    delete_name: str = ""
    delete_error: str = ""
    # The archive dialog: what archiving affects, and the admin's choice for the clinic's waitlist.
    archive_id: str = ""
    archive_name: str = ""
    archive_upcoming: int = 0
    archive_active: int = 0
    archive_offered: int = 0
    archive_targets: list[dict[str, str]] = []
    archive_choice: str = "move"
    archive_target: str = ""
    archive_error: str = ""
    archive_busy: bool = False

    @rx.var
    def timezones(self) -> list[str]:
        return TIMEZONES

    @rx.event
    def open_create(self):
        self.editing_id = ""
        self.form_name = self.form_address = self.form_phone = ""
        self.form_timezone = "America/New_York"
        self.form_errors = {}
        self.dialog_open = True

    @rx.event
    def open_edit(self, clinic_id: str):
        actor = self._admin()
        if actor is None:
            return rx.toast.error("Your session has ended. Sign in again.")
        with UnitOfWork(actor) as uow:
            try:
                clinic = tenancy.get_clinic(actor, uow, uuid.UUID(clinic_id))
            except (DomainError, ValueError):
                return rx.toast.error("That clinic no longer exists.")
        self.editing_id = clinic_id
        self.form_name, self.form_timezone = clinic.name, clinic.timezone
        self.form_address, self.form_phone = clinic.address, clinic.phone
        self.form_errors = {}
        self.dialog_open = True
        return None

    @rx.event
    def set_dialog_open(self, value: bool):
        self.dialog_open = value

    @rx.event
    def save(self, form: dict[str, str]):
        """Validate and save the clinic form; show errors beside the fields and change nothing on failure."""
        actor = self._admin()
        if actor is None:
            return rx.toast.error("Your session has ended. Sign in again.")
        self.form_name = form.get("name", "")
        self.form_timezone = form.get("timezone", "")
        self.form_address = form.get("address", "")
        self.form_phone = form.get("phone", "")
        fields = {
            "name": self.form_name,
            "timezone": self.form_timezone.strip(),
            "address": self.form_address.strip(),
            "phone": self.form_phone.strip(),
        }
        try:
            data = ClinicUpdate(**fields) if self.editing_id else ClinicCreate(**fields)
        except ValidationError as exc:
            self.form_errors = _form_errors(exc)
            return None
        try:
            with UnitOfWork(actor) as uow:
                if self.editing_id:
                    tenancy.update_clinic(actor, uow, uuid.UUID(self.editing_id), data)  # type: ignore[arg-type]
                else:
                    tenancy.create_clinic(actor, uow, data)  # type: ignore[arg-type]
                uow.commit()
        except DomainError as exc:
            self.form_errors = {exc.field or "form": exc.message}
            return None
        self.form_errors = {}
        self.dialog_open = False
        self._refresh(actor)
        return rx.toast.success("Clinic saved.")

    def _set_archived(self, clinic_id: str, archived: bool):
        actor = self._admin()
        if actor is None:
            return rx.toast.error("Your session has ended. Sign in again.")
        try:
            with UnitOfWork(actor) as uow:
                tenancy.update_clinic(actor, uow, uuid.UUID(clinic_id), ClinicUpdate(archived=archived))
                uow.commit()
        except (DomainError, ValueError) as exc:
            return rx.toast.error(getattr(exc, "message", "That clinic no longer exists."))
        self._refresh(actor)
        return rx.toast.success("Clinic archived." if archived else "Clinic restored.")

    @rx.event
    def archive(self, clinic_id: str):
        """Open the archive dialog with what archiving this clinic affects (nothing changes yet)."""
        actor = self._admin()
        if actor is None:
            return rx.toast.error("Your session has ended. Sign in again.")
        return self._load_archive(actor, clinic_id)

    def _load_archive(self, actor: Actor, clinic_id: str):
        try:
            with UnitOfWork(actor) as uow:
                preview = tenancy.preview_archive(actor, uow, uuid.UUID(clinic_id))
        except (DomainError, ValueError):
            self.archive_id = ""
            self._refresh(actor)
            return rx.toast.error("That clinic no longer exists.")
        if preview.archived:
            self.archive_id = ""
            self._refresh(actor)
            return rx.toast.info(f"{preview.name} is already archived.")
        self.archive_id, self.archive_name = clinic_id, preview.name
        self.archive_upcoming = preview.upcoming_appointments
        self.archive_active = preview.active_entries
        self.archive_offered = preview.offered_entries
        self.archive_targets = [
            {"id": str(t.clinic_id), "name": t.name, "losing": str(t.entries_losing_provider)}
            for t in preview.move_targets
        ]
        self.archive_target = self.archive_targets[0]["id"] if self.archive_targets else ""
        self.archive_choice = "move" if self.archive_targets else "close"
        self.archive_error = ""
        self.archive_busy = False
        return None

    @rx.var
    def archive_losing_note(self) -> str:
        """Entries bound to a provider who does not work at the chosen destination."""
        target = next((t for t in self.archive_targets if t["id"] == self.archive_target), None)
        if self.archive_choice != "move" or target is None or target["losing"] in ("", "0"):
            return ""
        n = int(target["losing"])
        return (
            f"{n} of them wait{'s' if n == 1 else ''} for a provider who does not work at {target['name']}: "
            f"{'that entry' if n == 1 else 'those entries'} will wait for any provider there."
        )

    @rx.event
    def set_archive_choice(self, value: str):
        if value in tenancy.WAITLIST_CHOICES and (value != "move" or self.archive_targets):
            self.archive_choice = value
            self.archive_error = ""

    @rx.event
    def set_archive_target(self, value: str):
        if any(t["id"] == value for t in self.archive_targets):
            self.archive_target = value
            self.archive_error = ""

    @rx.event
    def cancel_archive(self):
        self.archive_id = self.archive_name = self.archive_error = ""
        self.archive_busy = False

    @rx.event
    def confirm_archive(self):
        actor = self._admin()
        if actor is None:
            return rx.toast.error("Your session has ended. Sign in again.")
        if not self.archive_id or self.archive_busy:
            return None
        choice: str | None = self.archive_choice if self.archive_active else None
        target = uuid.UUID(self.archive_target) if choice == "move" and self.archive_target else None
        self.archive_busy = True
        try:
            with UnitOfWork(actor) as uow:
                result = tenancy.archive_clinic(
                    actor, uow, uuid.UUID(self.archive_id), waitlist=choice, move_to_clinic_id=target
                )
                uow.commit()
        except (DomainError, ValueError) as exc:
            self.archive_busy = False
            if getattr(exc, "code", "") == Code.CLINIC_ARCHIVE_CHOICE_REQUIRED:
                # Patients joined its waitlist since the dialog opened: show the new figures and ask.
                self._load_archive(actor, self.archive_id)
                self.archive_error = "Patients joined this clinic's waitlist meanwhile: choose what happens to them."
                return None
            self.archive_error = getattr(exc, "message", "That clinic no longer exists.")
            return None
        name = self.archive_name
        self.archive_id = self.archive_name = ""
        self.archive_busy = False
        self._refresh(actor)
        parts = [f"{name} archived."]
        if result.entries_moved:
            parts.append(f"{result.entries_moved} waitlist entr{'y' if result.entries_moved == 1 else 'ies'} moved.")
        if result.entries_closed:
            n = result.entries_closed
            parts.append(f"{n} waitlist entr{'y' if n == 1 else 'ies'} closed; the patients are notified.")
        return rx.toast.success(" ".join(parts))

    @rx.event
    def restore(self, clinic_id: str):
        return self._set_archived(clinic_id, False)

    @rx.event
    def ask_delete(self, clinic_id: str, name: str):
        self.delete_id, self.delete_name, self.delete_error = clinic_id, name, ""

    @rx.event
    def cancel_delete(self):
        self.delete_id = self.delete_name = self.delete_error = ""

    @rx.event
    def confirm_delete(self):
        actor = self._admin()
        if actor is None:
            return rx.toast.error("Your session has ended. Sign in again.")
        try:
            with UnitOfWork(actor) as uow:
                tenancy.delete_clinic(actor, uow, uuid.UUID(self.delete_id))
                uow.commit()
        except (DomainError, ValueError) as exc:
            self.delete_error = getattr(exc, "message", "That clinic no longer exists.")
            return None
        name = self.delete_name
        self.delete_id = self.delete_name = ""
        self._refresh(actor)
        return rx.toast.success(f"{name} deleted.")
