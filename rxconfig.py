"""Reflex configuration: the portal app, telemetry off, npm instead of bun (set in the Makefile)."""

import os

import reflex as rx

from backend.settings import get_settings

config = rx.Config(
    app_name="portal",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    plugins=[
        rx.plugins.RadixThemesPlugin(
            theme=rx.theme(appearance="light", accent_color="teal", gray_color="slate", radius="medium")
        )
    ],
    disable_plugins=[rx.plugins.SitemapPlugin],
    # Never "*" (Reflex's default, which with credentials reflects any Origin): only PUBLIC_URL's origin and
    # ALLOWED_ORIGINS. The edge middleware (backend/api/edge.py) applies the same rule outermost.
    cors_allowed_origins=list(get_settings().trusted_origins),
    # One server process keeps the pages' state in memory; with REFLEX_REDIS_URL (several workers) Reflex keeps
    # it in Redis. Not on disk (Reflex's default): that manager lists and stats every state file of every open
    # tab every two seconds and pickles each touched state to a file, which cost more CPU than the pages' own work
    # with a few hundred tabs open (bench.live). Nothing is lost with it: who is signed in comes from the cookie
    # on every event, and a tab whose state is gone after a restart re-hydrates and re-reads its page.
    **({} if os.environ.get("REFLEX_REDIS_URL") else {"state_manager_mode": rx.constants.StateManagerMode.MEMORY}),
)
