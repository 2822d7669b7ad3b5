"""Reflex configuration: the portal app, telemetry off, npm instead of bun (set in the Makefile)."""

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
)
