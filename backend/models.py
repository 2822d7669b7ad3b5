"""Import every table so SQLModel.metadata is complete (alembic and tests read it from here)."""

from sqlmodel import SQLModel

from backend.audit.models import AccessEvent, AuditEvent
from backend.identity.models import (
    Membership,
    OnboardingLink,
    Patient,
    PracticeSSO,
    Provider,
    ProviderClinic,
    Registration,
    User,
    UserSession,
)
from backend.notifications.models import (
    AppointmentReminder,
    Notification,
    NotificationDelivery,
    NotificationPreference,
    NotificationSettings,
)
from backend.payments.models import FeePolicy, Payment, PaymentMethod, PolicyAcceptance
from backend.scheduling.models import Appointment, AvailabilityRule, BookingPolicy, ProviderNextFree, TimeOff
from backend.tenancy.models import Clinic, PracticeText, Tenant, TenantMixin
from backend.waitlist.models import WaitlistEntry, WaitlistOffer, WaitlistPolicy

metadata = SQLModel.metadata

__all__ = [
    "AccessEvent",
    "Appointment",
    "AppointmentReminder",
    "AuditEvent",
    "AvailabilityRule",
    "BookingPolicy",
    "Clinic",
    "FeePolicy",
    "Membership",
    "Notification",
    "NotificationDelivery",
    "NotificationPreference",
    "NotificationSettings",
    "OnboardingLink",
    "Patient",
    "Payment",
    "PaymentMethod",
    "PolicyAcceptance",
    "PracticeSSO",
    "PracticeText",
    "Provider",
    "ProviderClinic",
    "ProviderNextFree",
    "Registration",
    "Tenant",
    "TenantMixin",
    "TimeOff",
    "User",
    "UserSession",
    "WaitlistEntry",
    "WaitlistOffer",
    "WaitlistPolicy",
    "metadata",
]
