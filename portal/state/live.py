"""Live updates: one path for every page, whatever the role.

How it works
------------
* `LiveTenant` is an `rx.SharedState` holding two display-safe vars: `revision` (a counter) and
  `last_event` (the name of the last domain event, e.g. "waitlist.changed" - never ids or PHI).
* A page links the visitor's copy to their tenant's shared instance (token `tenant-<tenant uuid>`) in its
  on_load, after the guard: `LiveTenant.link` resolves the session again on the server, so a client can
  only ever link to its own tenant.
* `portal.live_bridge` (a lifespan task on the app) listens to the domain events the backend publishes
  after commit - Redis channel `clinic:events:<tenant>` or in-process listeners in embedded mode - and
  bumps that tenant's `revision` with `app.modify_state`. Reflex then pushes the new revision to every
  client linked to the tenant, on whichever worker its socket lives.
* Each page re-queries its own role-scoped data when the revision changes: `live_refresh(handler)` renders
  a hidden marker whose React effect calls `handler` whenever the revision it receives changes (never on
  first mount: on_load has just loaded). The handler calls `await self._live_changed()` (from
  `LiveRefreshMixin`) first, which is False when this client's data already reflects that revision (e.g.
  the revision arriving with the link itself), so nothing is queried twice.

Using it on a page
------------------
    class MyPageState(LiveRefreshMixin, SessionState):
        @rx.event
        async def load(self):
            actor = self._actor(Role.PATIENT)
            if actor is None:
                return
            await self._mark_live_seen()          # this load covers the current revision
            self._refresh(actor)

        def _live_actor(self):                    # re-resolved, as in every handler
            return self._actor(Role.PATIENT)

        def _live_reload(self, actor):            # the mixin's live_update calls this on each new revision
            self._refresh(actor)

    @rx.page(route=..., on_load=[SessionState.guard("patient"), LiveTenant.link, MyPageState.load])
    def page():
        return shell("patient", live_refresh(MyPageState.live_update), ...)

The revision says only "something in your practice changed": every page decides for itself, through the
service layer and the viewer's own scope, what it may show.
"""

from __future__ import annotations

import uuid
from typing import Any

import reflex as rx
from reflex_base.event import no_args_event_spec

from backend.identity import service as identity
from portal.state.session import SESSION_ENDED, SessionState, session_token

# Only tokens of tabs that are gone accumulate in a tenant's linked set; past this size they are pruned.
MAX_LINKED_CLIENTS = 2000


def tenant_token(tenant_id: uuid.UUID | str) -> str:
    """The shared-state token of one tenant (Reflex forbids underscores in it; a UUID has none)."""
    return f"tenant-{tenant_id}"


class LiveTenant(rx.SharedState):
    """What every client of one tenant shares: a change counter and the last event's name."""

    revision: int = 0
    last_event: str = ""

    @rx.event
    async def link(self):
        """Link this client to its own tenant's live counter (resolved from the session, never the client)."""
        # State filled under another session is reset (and its old link dropped) before anything is linked.
        session = await self.get_state(SessionState)
        rebound = session._bind_to_session()
        actor = identity.actor_from_session(session_token(self))
        if actor is None:
            return None
        token = tenant_token(actor.tenant_id)
        if rebound and self._linked_to == token:
            # The reset dropped this client's link to the very tenant `_link_to` would find it still linked to.
            self._reflex_internal_links = {self.get_full_name(): token}
        await self._link_to(token)
        return None


class LiveRefreshMixin(rx.State, mixin=True):
    """For page states: remember which tenant revision this client's data reflects."""

    _live_seen: int = -1

    async def _live_revision(self) -> int:
        live = await self.get_state(LiveTenant)
        return int(live.revision)

    async def _mark_live_seen(self) -> None:
        """Record that the data about to be loaded covers the current revision."""
        self._live_seen = await self._live_revision()

    async def _live_changed(self) -> bool:
        """True (and recorded) when the tenant moved on since this client last loaded its data."""
        revision = await self._live_revision()
        if revision == self._live_seen:
            return False
        self._live_seen = revision
        return True

    def _live_actor(self) -> Any:
        """The viewer, re-resolved from the session (None when no longer allowed). Pages override this."""
        raise NotImplementedError

    def _live_reload(self, actor: Any) -> None:
        """Re-read the page's data in the viewer's own scope. Pages override this."""
        raise NotImplementedError

    async def _reload_now(self):
        """Re-read the page's data now (a filter changed, an action finished), as of the current revision."""
        actor = self._live_actor()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        await self._mark_live_seen()
        self._live_reload(actor)
        return None

    @rx.event
    async def live_update(self):
        """Something changed in the practice: re-read this page's data, unless it already shows it."""
        session = await self.get_state(SessionState)
        if session._bind_to_session():
            # This client's state was another session's: it is reset; let the page's guard and on_load run again.
            return rx.redirect(self.router.url.path or "/")
        if not await self._live_changed():
            return None
        actor = self._live_actor()
        if actor is not None:
            self._live_reload(actor)
        return None


_LIVE_REFRESH_JS = """
function WaitwellLiveRefresh({ revision, onChange, ...rest }) {
  // Call onChange whenever the tenant's revision changes after mount (the page's on_load covers the first).
  const seen = useRef(revision);
  useEffect(() => {
    if (seen.current === revision) return;
    seen.current = revision;
    if (onChange) onChange();
  }, [revision]);
  return jsx("span", { hidden: true, "data-live-revision": String(revision), ...rest });
}
"""


class LiveRefresh(rx.Component):
    """A hidden marker that fires `on_change` each time the tenant's live revision changes."""

    library: str | None = None
    tag: str | None = "WaitwellLiveRefresh"

    revision: rx.Var[int]
    on_change: rx.EventHandler[no_args_event_spec]

    def add_imports(self) -> dict[str, Any]:
        return {
            "react": [rx.ImportVar(tag="useEffect"), rx.ImportVar(tag="useRef")],
            "@emotion/react": [rx.ImportVar(tag="jsx")],
        }

    def add_custom_code(self) -> list[str]:
        return [_LIVE_REFRESH_JS]


def live_refresh(handler: rx.EventHandler | rx.EventSpec) -> rx.Component:
    """Call `handler` (a page state's live_update) whenever the visitor's tenant changes something."""
    return LiveRefresh.create(revision=LiveTenant.revision, on_change=handler, class_name="live-refresh")
