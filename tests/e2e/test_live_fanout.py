"""One tab's own events reach no other tab, even when they watch the same audience (issue 10, item 10).

With Reflex's `rx.SharedState`, any event of a tab whose state tree held a linked shared state re-sent that state
to every other tab linked to the same token: the 50 tabs of one doctor cost 50 x 49 state updates per change, and
500 open sessions took 5 s to show a change. The live audiences are now each tab's own state, set by the relay
only when the audience changes (portal/state/live.py), so a tab's own event is answered to that tab alone.

Three headless tabs (Reflex's socket protocol, bench/_reflex_client.py) of one doctor on the waitlist console each
run the page's live re-read in turn. Every tab must receive exactly one frame, its own answer (the console's rows),
after its own request: a frame set off by another tab's event would arrive ahead of the tab's own answer, since a
tab's events queue on its state's lock behind updates started earlier.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import httpx

from backend.seed import DEMO_PASSWORD
from bench._reflex_client import Frame, ReflexTab, root_state_name
from portal.state.waitlist_console import WaitlistConsoleState

PAGE = "/doctor/waitlist"
DOCTOR = "dr.rivera@harbor.example"


def _sign_in(base: str) -> str:
    """The session cookie ("name=value") the login form sets for the doctor."""
    response = httpx.post(
        f"{base}/auth/login",
        data={"email": DOCTOR, "password": DEMO_PASSWORD},
        headers={"Origin": base},  # the sign-in form's own origin, as a browser sends it
        follow_redirects=False,
        timeout=15,
    )
    assert response.status_code == 303, response.text
    [cookie] = [f"{name}={value}" for name, value in response.cookies.items()]
    return cookie


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _states(frame: Frame) -> set[str]:
    """The states a frame carries changes of."""
    return set((frame.update.get("delta") or {}).keys())


def test_a_tabs_own_event_is_answered_to_that_tab_alone(app_url: str) -> None:
    cookie = _sign_in(app_url)
    console = WaitlistConsoleState.get_full_name()
    live_update = f"{console}.live_update"

    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            tabs = [ReflexTab(app_url, PAGE, cookie, label=f"tab-{i}", root_state=root_state_name()) for i in range(3)]
            try:
                for tab in tabs:
                    await tab.open(http)
                    await tab.wait_connected(30)
                await _until(lambda: all(tab.loaded_at for tab in tabs), 60, "the pages to load")
                # Loaded and quiet: no frame for a second at any tab (the on_load chain has finished everywhere).
                await _until(lambda: time.perf_counter() - max(t.frames[-1].at for t in tabs) > 1.0, 30, "quiet")
                marks = [len(tab.frames) for tab in tabs]
                sent_at: list[float] = []
                for n, tab in enumerate(tabs):
                    sent_at.append(time.perf_counter())
                    # A revision the page has not seen: the console re-reads its rows, as after a live change.
                    await tab.send(live_update, {"revision": f"test-{n}"})
                    await _until(
                        lambda tab=tab, n=n: any(console in _states(f) for f in tab.frames[marks[n] :]),
                        30,
                        f"{tab.label}'s answer",
                    )
                # The last tab's answer is in. A frame set off by an earlier tab's event would have come first.
                for n, tab in enumerate(tabs):
                    since = tab.frames[marks[n] :]
                    assert all(f.at >= sent_at[n] for f in since), f"{tab.label} received frames before its event"
                    assert [_states(f) for f in since] == [{console}], [f.raw[:300] for f in since]
            finally:
                for tab in tabs:
                    await tab.close()

    # Its own event loop, in a thread: the Playwright tests of the same session keep one running in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, go()).result()
