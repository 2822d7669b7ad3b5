"""Live updates: one path for every page, whatever the role, targeted at the audiences an event concerns.

How it works
------------
* Audiences are `rx.SharedState` classes holding two display-safe vars: `revision` (a counter) and
  `last_event` (the name of the last domain event, e.g. "waitlist.changed" - never ids or PHI). A client links
  its copy of each class to at most one shared instance (token):

  - `LiveTenant`   `tenant-<tenant id>`: the practice's staff (admin pages); every event of the practice.
  - `LiveProvider` `provider-<provider id>`: one provider's appointments, slots, availability and waitlist -
    the doctor's own pages, and patients looking at that provider's booking grid.
  - `LivePatient`  `patient-<patient id>`: one patient's appointments, waitlist entries, offers and messages.

* A page links, in its on_load after the guard, only the audiences it shows (`LiveProvider.link`, ...). Every
  `link` resolves the session again on the server (and checks a provider id taken from the URL against the
  viewer's practice), so a client can only ever link to what it may see.
* `portal.live_bridge` (a lifespan task) maps each domain event the backend publishes after commit to the
  tokens it concerns (`audience_tokens`: the ids the event carries) and bumps only those, coalesced per token.
  Reflex then pushes the new revision to every client linked to it, on whichever worker its socket lives.
* Each page re-queries its own role-scoped data when a revision it listens to changes: `live_refresh(handler,
  *audiences)` renders a hidden marker whose React effect calls `handler(revision)` whenever the combined
  revision changes (never on first mount: on_load has just loaded). The mixin's `live_update` first checks
  `_live_changed(revision)` (False when this client's data already reflects it), then resolves the session
  and runs `_live_reload` in a worker thread, never on the event loop, with SQLite reads deferred
  (`backend.db.reads_only`): one slow query stalls no other socket.
* No client event but `link` loads a shared state: in Reflex 0.10 a client event that loads a linked shared
  state sends it to every other client linked to the same token, so a page's own handlers compare the revision
  the browser reports with the one `link` noted on the session (`SessionState._live_linked`).
* A socket that dropped and came back runs the page's on_load again (Reflex's hydrate_and_load), which
  re-reads; when the relay's Redis subscription comes back after a drop, it bumps every token any client linked
  (`known_tokens()`), so every page re-reads what it may have missed.

Using it on a page
------------------
    class MyPageState(LiveRefreshMixin, SessionState):
        def _live_audiences(self):
            return (LivePatient,)                 # what this page shows; the default is (LiveTenant,)

        @rx.event
        async def load(self):
            actor = self._actor(Role.PATIENT)
            if actor is None:
                return
            await self._mark_live_seen()          # this load covers the current revisions
            self._refresh(actor)

        def _live_actor(self):                    # re-resolved, as in every handler (runs in a thread)
            return self._actor(Role.PATIENT)

        def _live_reload(self, actor):            # the mixin's live_update calls this in a worker thread
            self._refresh(actor)

    @rx.page(route=..., on_load=[SessionState.guard("patient"), LivePatient.link, MyPageState.load])
    def page():
        return shell("patient", live_refresh(MyPageState.live_update, LivePatient), ...)

A revision says only "something you may be shown changed": every page decides for itself, through the
service layer and the viewer's own scope, what it may show.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import reflex as rx
from reflex_base.event import passthrough_event_spec

from backend.db import UnitOfWork, reads_only
from backend.identity import service as identity
from backend.identity.models import Provider
from backend.settings import get_settings
from backend.tenancy.context import Actor, Role
from portal.state.session import SESSION_ENDED, SessionState, session_token

logger = logging.getLogger(__name__)

# Only tokens of tabs that are gone accumulate in an audience's linked set; past this size they are pruned.
MAX_LINKED_CLIENTS = 2000


def tenant_token(tenant_id: uuid.UUID | str) -> str:
    """The shared-state token of one practice's staff (Reflex forbids underscores in it; a UUID has none)."""
    return f"tenant-{tenant_id}"


def provider_token(provider_id: uuid.UUID | str) -> str:
    """The shared-state token of one provider's schedule, slots and waitlist."""
    return f"provider-{provider_id}"


def patient_token(patient_id: uuid.UUID | str) -> str:
    """The shared-state token of one patient's own appointments, waitlist entries, offers and messages."""
    return f"patient-{patient_id}"


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError):
        return None


def _viewer(state: rx.State) -> Actor | None:
    return identity.actor_from_session(session_token(state))


def _route_provider(state: rx.State) -> uuid.UUID | None:
    """The provider a patient's page is about: the [provider_id] route segment."""
    value = state.router.url.query_parameters.get("provider_id", "") or ""
    if not value:
        parts = [p for p in (state.router.url.path or "").split("/") if p]
        value = parts[2] if len(parts) >= 3 and parts[1] == "provider" else ""
    return _uuid(value)


def _provider_in_practice(actor: Actor, provider_id: uuid.UUID) -> bool:
    with reads_only(), UnitOfWork(actor) as uow:
        provider = uow.session.get(Provider, provider_id)
        return provider is not None and provider.tenant_id == actor.tenant_id


# Every audience token a client of this process linked to: after a relay gap, these are bumped (see
# portal.live_bridge). Tokens name a practice, a provider or a patient, so the set stays small.
_known_tokens: set[str] = set()


def known_tokens() -> set[str]:
    """The audience tokens linked in this process (and, with Redis, by every worker)."""
    tokens = set(_known_tokens)
    if get_settings().redis_url:
        try:
            from backend.redis_client import get_redis

            tokens.update(t.decode() if isinstance(t, bytes) else str(t) for t in get_redis().smembers(_tokens_key()))
        except Exception:
            logger.warning("live: cannot read the linked tokens from Redis", exc_info=True)
    return tokens


def _tokens_key() -> str:
    return f"{get_settings().redis_key_prefix}:live:tokens"


def _remember(token: str) -> None:
    if token in _known_tokens:
        return
    _known_tokens.add(token)
    if get_settings().redis_url:
        try:
            from backend.redis_client import get_redis

            get_redis().sadd(_tokens_key(), token)
        except Exception:
            logger.warning("live: cannot record a linked token in Redis", exc_info=True)


async def _attach(state: Any, token: str, rebound: bool) -> Any:
    if rebound and state._linked_to == token:
        # The reset dropped this client's link to the very token `_link_to` would find it still linked to.
        links = dict(state._reflex_internal_links or {})
        links[state.get_full_name()] = token
        state._reflex_internal_links = links
    return await state._link_to(token)


async def _link(state: Any, token: str | None) -> None:
    """Link `state` (a live audience) to `token` after binding the client to its session (state filled under
    another session is reset, and its old links dropped, first); None links nothing.

    The revision the link delivers is noted on the session (`_live_linked`), so a page's load records what its
    data covers without reading the shared state again: in Reflex 0.10 a client event that loads a linked
    shared state sends it to every other client linked to it (tabs x tabs frames), so only `link` ever does."""
    session = await state.get_state(SessionState)
    rebound = session._bind_to_session()
    if token is None:
        session._live_linked = {**session._live_linked, state.get_full_name(): -1}
        return
    linked = await _attach(state, token, rebound)
    session._live_linked = {**session._live_linked, state.get_full_name(): int(linked.revision)}
    if token not in _known_tokens:
        await asyncio.to_thread(_remember, token)


class LiveTenant(rx.SharedState):
    """The practice's staff: a change counter and the last event's name, bumped by every event of the practice."""

    revision: int = 0
    last_event: str = ""

    @rx.event
    async def link(self):
        """Link a staff member's client to their own practice's counter (resolved from the session)."""
        actor = await asyncio.to_thread(_viewer, self)
        if actor is None or actor.role not in (Role.ADMIN, Role.DOCTOR):
            return await _link(self, None)
        return await _link(self, tenant_token(actor.tenant_id))


class LiveProvider(rx.SharedState):
    """One provider's schedule, slots and waitlist: their own pages, and patients looking at their grid."""

    revision: int = 0
    last_event: str = ""

    @rx.event
    async def link(self):
        """A doctor links their own provider; anyone else the route's provider, if it is in their practice."""
        actor = await asyncio.to_thread(_viewer, self)
        if actor is None:
            return await _link(self, None)
        if actor.role == Role.DOCTOR:
            provider_id = actor.provider_id
        else:
            provider_id = _route_provider(self)
            if provider_id is not None and not await asyncio.to_thread(_provider_in_practice, actor, provider_id):
                provider_id = None
        return await _link(self, provider_token(provider_id) if provider_id is not None else None)


class LivePatient(rx.SharedState):
    """One patient's own appointments, waitlist entries, offers and messages."""

    revision: int = 0
    last_event: str = ""

    @rx.event
    async def link(self):
        """Link a patient's client to their own counter (resolved from the session, never the client)."""
        actor = await asyncio.to_thread(_viewer, self)
        patient_id = actor.patient_id if actor is not None and actor.role == Role.PATIENT else None
        return await _link(self, patient_token(patient_id) if patient_id is not None else None)


AUDIENCES: tuple[type[rx.State], ...] = (LiveTenant, LiveProvider, LivePatient)


class LiveRefreshMixin(rx.State, mixin=True):
    """For page states: remember which revisions of its audiences this client's data reflects."""

    _live_seen: str = ""

    def _live_audiences(self) -> tuple[type[rx.State], ...]:
        """The audiences this page listens to (as linked in its on_load). Pages override this."""
        return (LiveTenant,)

    async def _live_revision(self) -> str:
        """The revisions this client's links delivered (noted by `link`), in the marker's form ("3:1")."""
        session = await self.get_state(SessionState)
        linked = session._live_linked
        return ":".join(str(linked.get(audience.get_full_name(), -1)) for audience in self._live_audiences())

    async def _mark_live_seen(self) -> None:
        """Record that the data about to be loaded covers the revisions just linked."""
        self._live_seen = await self._live_revision()

    def _live_changed(self, revision: str) -> bool:
        """True (and recorded) when the revision the browser reports differs from what this client last read."""
        if revision and revision == self._live_seen:
            return False
        self._live_seen = revision
        return True

    def _live_actor(self) -> Any:
        """The viewer, re-resolved from the session (None when no longer allowed). Pages override this."""
        raise NotImplementedError

    def _live_reload(self, actor: Any) -> None:
        """Re-read the page's data in the viewer's own scope. Pages override this."""
        raise NotImplementedError

    def _live_read(self) -> bool:
        """Resolve the viewer and re-read, in a worker thread (SQLite: without the write lock). False: no viewer."""
        with reads_only():
            actor = self._live_actor()
            if actor is None:
                return False
            self._live_reload(actor)
        return True

    async def _reload_now(self):
        """Re-read the page's data now (a filter changed, an action finished)."""
        if not await asyncio.to_thread(self._live_read):
            return rx.toast.error(SESSION_ENDED)
        return None

    @rx.event
    async def live_mark(self):
        """For a page whose load is synchronous: put this before it in on_load (the load covers these revisions)."""
        await self._mark_live_seen()

    @rx.event
    async def live_update(self, revision: str = ""):
        """Something this page shows changed (the browser saw `revision`): re-read its data off the event loop,
        unless it already shows it. The shared states are not read here (see `_link`)."""
        session = await self.get_state(SessionState)
        if session._bind_to_session():
            # This client's state was another session's: it is reset; let the page's guard and on_load run again.
            return rx.redirect(self.router.url.path or "/")
        if not self._live_changed(str(revision)[:200]):
            return None
        # The state stays locked for this client meanwhile (its own events wait); every other socket runs on.
        await asyncio.to_thread(self._live_read)
        return None


_LIVE_REFRESH_JS = """
function WaitwellLiveRefresh({ revision, onChange, ...rest }) {
  // Call onChange whenever the revision changes after mount (the page's on_load covers the first).
  const seen = useRef(revision);
  useEffect(() => {
    if (seen.current === revision) return;
    seen.current = revision;
    if (onChange) onChange(String(revision));
  }, [revision]);
  return jsx("span", { hidden: true, "data-live-revision": String(revision), ...rest });
}
"""


class LiveRefresh(rx.Component):
    """A hidden marker that fires `on_change` each time the page's live revision changes."""

    library: str | None = None
    tag: str | None = "WaitwellLiveRefresh"

    revision: rx.Var[str]
    on_change: rx.EventHandler[passthrough_event_spec(str)]

    def add_imports(self) -> dict[str, Any]:
        return {
            "react": [rx.ImportVar(tag="useEffect"), rx.ImportVar(tag="useRef")],
            "@emotion/react": [rx.ImportVar(tag="jsx")],
        }

    def add_custom_code(self) -> list[str]:
        return [_LIVE_REFRESH_JS]


def live_revision(*audiences: type[rx.State]) -> rx.Var:
    """The combined revision of `audiences`, as a string var ("3:1")."""
    parts: list[Any] = []
    for audience in audiences or (LiveTenant,):
        if parts:
            parts.append(":")
        parts.append(audience.revision.to_string())  # type: ignore[attr-defined]
    combined: rx.Var = parts[0]
    for part in parts[1:]:
        combined = combined + part
    return combined


def live_refresh(handler: rx.EventHandler | rx.EventSpec, *audiences: type[rx.State]) -> rx.Component:
    """Call `handler` (a page state's live_update) whenever one of `audiences` (default: LiveTenant) changes."""
    return LiveRefresh.create(revision=live_revision(*audiences), on_change=handler, class_name="live-refresh")
