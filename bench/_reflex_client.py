"""A headless Reflex tab: the browser's side of Reflex 0.10's event protocol, enough to watch a page live.

One `ReflexTab` is one browser tab on one page, signed in with a session cookie. It speaks socket.io
(engine.io v4) over a websocket at /_event, as reflex_base/.templates/web/utils/state.js does:

* connect to ``ws://host/_event/?EIO=4&transport=websocket&token=<client token>`` carrying the session cookie;
* send the namespace CONNECT packet with the boot event in its auth payload (``{"event": hydrate_and_load}``):
  the server hydrates and then runs the page's on_load chain (guard, live link, page load) by itself;
* answer the server's engine.io pings;
* receive every ``event`` message (a state update: ``{"delta": {state: {var: value}}, "events": [...]}``),
  timestamped on arrival;
* behave like the page's live marker (portal.state.live.live_refresh, a React effect): when a delta changes
  one of the vars the marker watches, send the marker's ``on_change`` event back, exactly as the browser would.
  Which vars and which event is found from the page's own component tree (`live_markers`), so the bench
  follows the portal's live mechanism whatever it becomes; a page without a marker gets no reaction.

Many tabs share one aiohttp session and one event loop: 500 tabs are 500 sockets, not 500 threads.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

# Reflex's root state and its hydrate-plus-on_load event (reflex_base.constants.CompileVars.HYDRATE_AND_LOAD).
HYDRATE_AND_LOAD = "hydrate_and_load"
# The socket.io namespace is the endpoint's path too: the browser connects io("ws://host/_event", {path: "/_event"}).
NAMESPACE = "/_event"
MARKER_TAG = "WaitwellLiveRefresh"


@dataclass(frozen=True)
class LiveMarker:
    """What a page's live marker watches (state full name, var key in the delta) and the event it fires."""

    watches: tuple[tuple[str, str], ...]  # in the order the marker joins them into its revision ("3:1")
    fires: tuple[str, ...]


@dataclass
class Frame:
    """One state update as received: arrival time (perf_counter) and the decoded payload."""

    at: float
    update: dict[str, Any]
    raw: str


def _walk(component: Any) -> Iterator[Any]:
    yield component
    for child in getattr(component, "children", None) or []:
        yield from _walk(child)
    # rx.cond / rx.foreach keep their branches outside `children`.
    for attr in ("comp1", "comp2", "render_fn"):
        branch = getattr(component, attr, None)
        if branch is not None and hasattr(branch, "children"):
            yield from _walk(branch)


def live_markers(route: str) -> list[LiveMarker]:
    """The live markers of one page of the portal app, read from its component tree (imports the app)."""
    from reflex_base.registry import RegistrationContext
    from reflex_base.utils import format as rx_format

    import portal.portal  # noqa: F401 - importing the app registers its pages

    pages = {kw.get("route"): fn for fn, kw in RegistrationContext.ensure_context().decorated_pages}
    render = pages.get(route)
    if render is None:
        raise KeyError(f"no page at {route!r}")
    markers = []
    for comp in _walk(render()):
        if getattr(comp, "tag", None) != MARKER_TAG:
            continue
        watches: list[tuple[str, str]] = []
        for var in comp._get_vars(include_children=False):
            data = var._get_all_var_data()
            if data is not None and data.state and data.field_name and (data.state, data.field_name) not in watches:
                watches.append((data.state, data.field_name))
        fires: list[str] = []
        for chain in comp.event_triggers.values():
            for spec in getattr(chain, "events", None) or []:
                handler = getattr(spec, "handler", None)
                if handler is not None and handler.state is not None:
                    fires.append(rx_format.format_event_handler(handler))
        markers.append(LiveMarker(tuple(watches), tuple(fires)))
    return markers


def root_state_name() -> str:
    import reflex as rx

    return str(rx.State.get_full_name())


def find_dicts(value: Any, **wanted: Any) -> Iterator[dict[str, Any]]:
    """Every dict nested in `value` that holds all the `wanted` key/value pairs."""
    if isinstance(value, dict):
        if all(value.get(k) == v for k, v in wanted.items()):
            yield value
        for item in value.values():
            yield from find_dicts(item, **wanted)
    elif isinstance(value, list):
        for item in value:
            yield from find_dicts(item, **wanted)


@dataclass
class ReflexTab:
    """One headless browser tab on `path`, signed in by `cookie` ("name=value")."""

    base_url: str
    path: str
    cookie: str
    label: str = ""
    markers: list[LiveMarker] = field(default_factory=list)
    root_state: str = "reflex___state____state"
    token: str = field(default_factory=lambda: str(uuid.uuid4()))
    frames: list[Frame] = field(default_factory=list)
    live_events_sent: int = 0
    on_frame: Callable[[ReflexTab, Frame], None] | None = None
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _reader: asyncio.Task[None] | None = None
    _connected: asyncio.Event = field(default_factory=asyncio.Event)
    _values: dict[tuple[str, str], Any] = field(default_factory=dict)
    error: str = ""
    # When the page had loaded: Reflex sets is_hydrated once the page's on_load chain has finished.
    loaded_at: float | None = None

    def _router_data(self) -> dict[str, Any]:
        return {"pathname": self.path, "asPath": self.path}

    def _event(self, name: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"name": name, "payload": payload or {}, "router_data": self._router_data()}

    async def open(self, session: aiohttp.ClientSession) -> None:
        """Connect, hydrate and load the page (the server runs its on_load chain)."""
        ws_url = self.base_url.replace("http://", "ws://").replace("https://", "wss://")
        url = f"{ws_url}/_event/?EIO=4&transport=websocket&token={self.token}"
        self._ws = await session.ws_connect(url, headers={"Cookie": self.cookie}, max_msg_size=0, autoping=False)
        opened = await self._ws.receive_str()
        if not opened.startswith("0"):
            raise RuntimeError(f"not an engine.io open packet: {opened[:80]!r}")
        auth = {"event": self._event(f"{self.root_state}.{HYDRATE_AND_LOAD}")}
        await self._ws.send_str(f"40{NAMESPACE}," + json.dumps(auth))
        self._reader = asyncio.create_task(self._read(), name=f"tab-{self.label}")

    async def wait_connected(self, timeout: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def send(self, name: str, payload: dict[str, Any] | None = None) -> None:
        """Send one event, as the browser's applyEvent does."""
        assert self._ws is not None
        await self._ws.send_str(f"42{NAMESPACE}," + json.dumps(["event", self._event(name, payload)]))

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data: str = msg.data
                if data == "2":  # engine.io ping: answer at once, or the server drops the socket
                    await self._ws.send_str("3")
                    continue
                kind, body = data[:2], data[2:].removeprefix(f"{NAMESPACE},")
                if kind == "40":
                    self._connected.set()
                elif kind == "44":  # the namespace refused the connection
                    self.error = body[:200]
                    self._connected.set()
                elif kind == "42":
                    arrived = time.perf_counter()
                    name, *args = json.loads(body)
                    if name != "event" or not args:
                        continue
                    frame = Frame(arrived, args[0], data)
                    self.frames.append(frame)
                    if self.loaded_at is None:
                        root = (frame.update.get("delta") or {}).get(self.root_state) or {}
                        if root.get("is_hydrated_rx_state_") is True:
                            self.loaded_at = arrived
                    if self.on_frame is not None:
                        self.on_frame(self, frame)
                    await self._react(frame)
        except (aiohttp.ClientError, asyncio.CancelledError, ConnectionResetError):
            pass

    async def _react(self, frame: Frame) -> None:
        """Do what the page's live marker does in the browser: a watched var changed -> fire its event."""
        delta = frame.update.get("delta") or {}
        for marker in self.markers:
            changed = False
            for state, var in marker.watches:
                values = delta.get(state)
                if not isinstance(values, dict):
                    continue
                key = next((k for k in (var, f"{var}_rx_state_") if k in values), None)
                if key is None:
                    continue
                seen = self._values.get((state, var), _UNSET)
                self._values[(state, var)] = values[key]
                # The marker remembers the value it mounted with and fires on later changes only.
                if seen is not _UNSET and seen != values[key]:
                    changed = True
            if changed:
                # The marker passes the combined revision it now shows, as the browser does.
                revision = ":".join(str(self._values.get(w, 0)) for w in marker.watches)
                for name in marker.fires:
                    self.live_events_sent += 1
                    await self.send(name, {"revision": revision})

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass


_UNSET = object()
