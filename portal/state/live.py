"""Live updates: one path for every page, whatever the role, targeted at the audiences an event concerns.

How it works
------------
* Audiences are tokens; each has a per-tab state class holding two display-safe vars: `revision` (a counter)
  and `last_event` (the name of the last domain event, e.g. "waitlist.changed" - never ids or PHI). A tab
  watches at most one audience per class:

  - `LiveTenant`   `tenant-<tenant id>`: the practice's staff (admin pages); every event of the practice.
  - `LiveProvider` `provider-<provider id>`: one provider's appointments, slots, availability and waitlist -
    the doctor's own pages, and patients looking at that provider's booking grid.
  - `LivePatient`  `patient-<patient id>`: one patient's appointments, waitlist entries, offers and messages.

* A page links, in its on_load after the guard, only the audiences it shows (`LiveProvider.link`, ...). Every
  `link` resolves the session again on the server (and checks a provider id taken from the URL against the
  viewer's practice), so a tab can only ever watch what it may see; the tab joins that audience's watchers
  (`watchers()`: in this process, or in Redis when Reflex shares its state between workers).
* `portal.live_bridge` (a lifespan task) maps each domain event the backend publishes after commit to the
  tokens it concerns (`audience_tokens`: the ids the event carries), coalesced per token, and for each advances
  the revision and sets it on every watching tab's own copy (`app.modify_state`): one frame per watching tab,
  none anywhere else. (Reflex's own `rx.SharedState` is not used: in 0.10 any client event of a linked tab
  re-sends the shared state to every other linked tab, tabs x tabs work per change.)
* Each page re-queries its own role-scoped data when a revision it listens to changes: `live_refresh(handler,
  *audiences)` renders a hidden marker whose React effect calls `handler(revision)` whenever the combined
  revision changes (never on first mount: on_load has just loaded). The mixin's `live_update` first checks
  `_live_changed(revision)` (False when this client's data already reflects it), then resolves the session
  and runs `_live_reload` in a worker thread, never on the event loop, with SQLite reads deferred
  (`backend.db.reads_only`): one slow query stalls no other socket.
* A re-read covers the revisions the relay had reached when it began (`_live_read_covering`: the relay advances a
  revision only after its change committed), so the frame of a bump the read already shows costs no query. A page
  may name the event topics it shows (`_live_topics`, e.g. "waitlist."): each tab notes the names of the events
  bumped to it, and a bump made only of other events (the provider's appointment moved) is noted as seen unread.
* A page's load notes which revisions its data covers (`_mark_live_seen`, from what `link` noted on the session,
  `SessionState._live_linked`), so the marker's first report after a load re-reads nothing.
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
import concurrent.futures
import contextvars
import functools
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


# -- who watches what ----------------------------------------------------------------------------------------
#
# Each audience (a token: a practice's staff, a provider, a patient) has a revision counter and a set of watching
# clients (Reflex client tokens, one per tab). A page's `link` puts its tab among the watchers of one audience per
# class (replacing the tab's previous one); the relay (portal.live_bridge) advances the counter and sets the new
# revision on each watcher's own copy of the class, so only those tabs get a frame. Tabs watching nothing of an
# event are never touched, and no tab's own events ever reach another tab.
#
# Where: in this process when Reflex keeps its state here (the default: one worker holds every socket and state);
# in Redis when Reflex shares its state through Redis (several workers; the relay leader bumps every watcher).


class _LocalWatchers:
    """The registry in this process."""

    def __init__(self) -> None:
        self.watchers: dict[str, set[str]] = {}
        self.watching: dict[tuple[str, str], str] = {}
        self.revisions: dict[str, int] = {}

    def watch(self, kind: str, client: str, audience: str | None) -> int:
        old = self.watching.pop((kind, client), None)
        if old is not None and old != audience:
            self.watchers.get(old, set()).discard(client)
            if not self.watchers.get(old):
                self.watchers.pop(old, None)
        if audience is None:
            return 0
        self.watching[(kind, client)] = audience
        self.watchers.setdefault(audience, set()).add(client)
        return self.revisions.get(audience, 0)

    def forget(self, kind: str, client: str, audience: str) -> None:
        if self.watching.get((kind, client)) == audience:
            self.watching.pop((kind, client), None)
        self.watchers.get(audience, set()).discard(client)

    def advance(self, audience: str) -> tuple[int, set[str]]:
        self.revisions[audience] = revision = self.revisions.get(audience, 0) + 1
        return revision, set(self.watchers.get(audience, ()))

    async def advance_from_loop(self, audience: str) -> tuple[int, set[str]]:
        """`advance`, called on the event loop: a dict, so right there, not behind page re-reads queued in the
        worker threads (a re-read that starts after this covers the new revision, see
        LiveRefreshMixin._live_read_covering)."""
        return self.advance(audience)

    def current(self, audiences: list[str]) -> list[int]:
        return [self.revisions.get(audience, 0) for audience in audiences]

    def audiences(self) -> set[str]:
        return {audience for audience, clients in self.watchers.items() if clients}


class _RedisWatchers:
    """The registry in Redis (Reflex state shared by several workers): `<prefix>:live:w:<audience>` (the set of
    watching clients), `<prefix>:live:c:<client>` (hash: class -> audience), `<prefix>:live:r:<audience>` (the
    revision), `<prefix>:live:tokens` (every audience ever watched, for the resync). Keys of a client expire a day
    after its last link."""

    TTL = 24 * 3600

    def __init__(self, client: Any, prefix: str) -> None:
        self.r = client
        self.prefix = prefix

    def _key(self, kind: str, value: str) -> str:
        return f"{self.prefix}:live:{kind}:{value}"

    def watch(self, kind: str, client: str, audience: str | None) -> int:
        mine = self._key("c", client)
        old = self.r.hget(mine, kind)
        old = old.decode() if isinstance(old, bytes) else old
        pipe = self.r.pipeline()
        if old is not None and old != audience:
            pipe.srem(self._key("w", old), client)
        if audience is None:
            pipe.hdel(mine, kind)
            pipe.execute()
            return 0
        pipe.hset(mine, kind, audience)
        pipe.expire(mine, self.TTL)
        pipe.sadd(self._key("w", audience), client)
        pipe.expire(self._key("w", audience), self.TTL)
        pipe.sadd(f"{self.prefix}:live:tokens", audience)
        pipe.get(self._key("r", audience))
        revision = pipe.execute()[-1]
        return int(revision or 0)

    def forget(self, kind: str, client: str, audience: str) -> None:
        self.r.srem(self._key("w", audience), client)

    def advance(self, audience: str) -> tuple[int, set[str]]:
        pipe = self.r.pipeline()
        pipe.incr(self._key("r", audience))
        pipe.smembers(self._key("w", audience))
        revision, clients = pipe.execute()
        return int(revision), {c.decode() if isinstance(c, bytes) else str(c) for c in clients}

    async def advance_from_loop(self, audience: str) -> tuple[int, set[str]]:
        """`advance`, called on the event loop: a blocking Redis round trip, so in a worker thread."""
        return await asyncio.to_thread(self.advance, audience)

    def current(self, audiences: list[str]) -> list[int]:
        if not audiences:
            return []
        return [int(value or 0) for value in self.r.mget([self._key("r", audience) for audience in audiences])]

    def audiences(self) -> set[str]:
        members = self.r.smembers(f"{self.prefix}:live:tokens")
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}


_local = _LocalWatchers()


def _reflex_state_is_shared() -> bool:
    """Whether Reflex keeps client states in Redis (several workers), so watchers must be kept there too."""
    try:
        from reflex.istate.manager import get_state_manager
        from reflex.istate.manager.redis import StateManagerRedis

        return isinstance(get_state_manager(), StateManagerRedis)
    except (ImportError, AttributeError, RuntimeError, ValueError):
        return False


def watchers() -> _LocalWatchers | _RedisWatchers:
    """The registry of this deployment (see above)."""
    settings = get_settings()
    if settings.redis_url and _reflex_state_is_shared():
        from backend.redis_client import get_redis

        return _RedisWatchers(get_redis(), settings.redis_key_prefix)
    return _local


def known_tokens() -> set[str]:
    """The audiences some client watches (every worker's, when the state is shared): the resync bumps these."""
    return watchers().audiences()


RESYNC_NAME = "live.resync"  # the relay's bump after its subscription came back: every page reads again


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def _client_token(state: rx.State) -> str:
    return state.router.session.client_token


async def _link(state: Any, token: str | None) -> None:
    """Make this tab a watcher of `token` (None: of nothing) for `state`'s class, after binding the client to its
    session (state filled under another session is reset first), and take the audience's current revision.

    The revision is noted on the session (`_live_linked`) too, so a page's load records what its data covers."""
    session = await state.get_state(SessionState)
    session._bind_to_session()
    kind = state.get_full_name()
    revision = await asyncio.to_thread(watchers().watch, kind, _client_token(state), token)
    state._audience = token or ""
    state.revision = revision
    session._live_linked = {**session._live_linked, kind: revision if token else -1}


class _Audience(rx.State, mixin=True):
    """One audience's counter, as this tab sees it: `revision` and the last event's name (never ids or PHI)."""

    revision: int = 0
    last_event: str = ""
    # Server-only: the audience token this tab watches for this class ("" for none).
    _audience: str = ""
    # Server-only: the names of the events bumped since the page last looked (LiveRefreshMixin._live_topics).
    _unread: list[str] = []


class LiveTenant(_Audience, rx.State):
    """The practice's staff: a change counter and the last event's name, bumped by every event of the practice."""

    @rx.event
    async def link(self):
        """Watch a staff member's own practice (resolved from the session)."""
        actor = await asyncio.to_thread(_viewer, self)
        if actor is None or actor.role not in (Role.ADMIN, Role.DOCTOR):
            return await _link(self, None)
        return await _link(self, tenant_token(actor.tenant_id))


class LiveProvider(_Audience, rx.State):
    """One provider's schedule, slots and waitlist: their own pages, and patients looking at their grid."""

    @rx.event
    async def link(self):
        """A doctor watches their own provider; anyone else the route's provider, if it is in their practice."""
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


class LivePatient(_Audience, rx.State):
    """One patient's own appointments, waitlist entries, offers and messages."""

    @rx.event
    async def link(self):
        """Watch a patient's own counter (resolved from the session, never the client)."""
        actor = await asyncio.to_thread(_viewer, self)
        patient_id = actor.patient_id if actor is not None and actor.role == Role.PATIENT else None
        return await _link(self, patient_token(patient_id) if patient_id is not None else None)


AUDIENCES: tuple[type[rx.State], ...] = (LiveTenant, LiveProvider, LivePatient)


_LIVE_POOL: concurrent.futures.ThreadPoolExecutor | None = None


async def _in_live_pool(fn: Any, *args: Any) -> Any:
    """Run a live re-read in the live pool (LIVE_READ_THREADS), with this context as asyncio.to_thread would. The
    default pool stays free for what people do: fifty tabs re-reading after one event never delay a click."""
    global _LIVE_POOL
    if _LIVE_POOL is None:
        _LIVE_POOL = concurrent.futures.ThreadPoolExecutor(
            max_workers=get_settings().live_read_threads, thread_name_prefix="live-read"
        )
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(_LIVE_POOL, functools.partial(context.run, fn, *args))


class LiveRefreshMixin(rx.State, mixin=True):
    """For page states: remember which revisions of its audiences this client's data reflects."""

    _live_seen: str = ""

    def _live_audiences(self) -> tuple[type[rx.State], ...]:
        """The audiences this page listens to (as linked in its on_load). Pages override this."""
        return (LiveTenant,)

    def _live_topics(self) -> tuple[str, ...]:
        """Prefixes of the event names that can change what this page shows ("waitlist."); empty: every event.
        A bump made only of other events costs the page no query."""
        return ()

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

    async def _live_watched(self) -> tuple[list[tuple[int, str]], bool]:
        """Per audience of this page: the revision this tab was last sent and the token it watches ("" if none);
        and whether an event bumped since the page last looked is one of its topics (the names are consumed)."""
        topics = self._live_topics()
        watched, unread = [], []
        for audience in self._live_audiences():
            live = await self.get_state(audience)
            watched.append((int(live.revision), str(live._audience)))  # type: ignore[attr-defined]
            unread += live._unread  # type: ignore[attr-defined]
            live._unread = []  # type: ignore[attr-defined]
        # No names noted (a resync, a tab whose copy was reset): read, to be safe.
        relevant = not topics or not unread or any(n.startswith(topics) or n == RESYNC_NAME for n in unread)
        return watched, relevant

    def _live_read_covering(self, watched: list[tuple[int, str]], reported: str = "") -> str | None:
        """`_live_read`, returning the revisions (in the marker's form) its data covers: those the relay had reached
        when it began. The relay advances a revision only after the change committed, so a read that starts later
        sees it; when that revision's frame arrives, the tab has nothing to re-read (a cancellation and the offer
        that follows it arrive as two bumps: the second costs no query). None: no viewer."""
        tokens = [token for _, token in watched if token]
        try:
            current = dict(zip(tokens, watchers().current(tokens), strict=True))
        except Exception:  # the registry is unreachable: cover only what the browser reported
            logger.warning("live: cannot read the current revisions", exc_info=True)
            current = {}
        if not self._live_read():
            return None
        parts = reported.split(":")
        return ":".join(
            str(max(sent, current.get(token, 0), _int(parts[i]) if i < len(parts) else 0))
            for i, (sent, token) in enumerate(watched)
        )

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
        watched, relevant = await self._live_watched()
        if not relevant:
            return None  # nothing this page shows changed: the revision is noted as seen (`_live_changed`)
        covered = await _in_live_pool(self._live_read_covering, watched, self._live_seen)
        if covered is not None:
            self._live_seen = covered
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
