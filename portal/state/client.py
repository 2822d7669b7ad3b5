"""A browser tab's Reflex client: ending its state when the person behind the tab changes.

Reflex keeps a tab's page state on the server (in Redis with the real services) under a client token that the
browser holds in sessionStorage, so it outlives a sign-out: without care, the next person to sign in on that tab
would be served the state, and the health data, the previous one left there. Two things prevent it:

* The browser forgets the token when someone signs out or opens the login page (`FORGET_CLIENT_TOKEN_JS`), so the
  next page load starts a new client with empty state; the sign-out also resets the old client's state on the
  server (`reset_client_tree`, through `SessionState.end_client_state`).
* The server binds every client's state to the session that filled it (`owner_key` of the session cookie), and
  resets it all when another session, or none, shows up on it (`SessionState._bind_to_session`). That runs first
  in each websocket's hydrate, before the state snapshot is taken, so not even the first delta a new person's
  tab receives carries anything of the previous one.
"""

from __future__ import annotations

import hashlib
import json

import reflex as rx

# The sessionStorage key under which Reflex's frontend keeps the client token (TOKEN_KEY in
# reflex_base/.templates/web/utils/state.js).
REFLEX_TOKEN_KEY = "token"  # noqa: S105 - a storage key's name, not a secret
FORGET_CLIENT_TOKEN_JS = f"window.sessionStorage.removeItem({json.dumps(REFLEX_TOKEN_KEY)})"

_OWNER_DOMAIN = b"waitwell:client-state-owner:"


def owner_key(session_token: str | None) -> str:
    """Who a client's state belongs to: a digest of the session cookie ("" without a session).

    Only the digest is kept with the state, never the token itself.
    """
    if not session_token:
        return ""
    return hashlib.sha256(_OWNER_DOMAIN + session_token.encode()).hexdigest()


def reset_client_tree(state: rx.State) -> None:
    """Reset every loaded state of this client to its defaults, its live audiences too (portal.state.live): the
    relay skips a tab whose copy no longer names the audience it bumps, so the next page links again for
    whoever is signed in now."""
    root = state._get_root_state()
    for substate in root.substates.values():
        substate.reset()
