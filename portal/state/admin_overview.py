"""The admin overview, live: its counts (upcoming appointments, waiting entries) follow every change in the practice."""

from __future__ import annotations

import reflex as rx

from backend.tenancy.context import Actor
from portal.state.admin import AdminState
from portal.state.live import LiveRefreshMixin, LiveTenant


class AdminOverviewState(LiveRefreshMixin, AdminState):
    """Re-reads the overview (through AdminState._refresh) when the practice's staff audience moves on."""

    def _live_audiences(self) -> tuple[type[rx.State], ...]:
        return (LiveTenant,)

    def _live_actor(self) -> Actor | None:
        return self._admin()

    def _live_reload(self, actor: Actor) -> None:
        self._refresh(actor)
