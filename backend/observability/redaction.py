"""What may be kept of a text that could carry health data: the marker for a removed message, and a URL without its
query string or free-text path segments. No imports from the rest of backend/: logging (backend.logging_config),
request logs (logs.py) and error tracking (sentry.py) all use it."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "<message redacted>"

_PLAIN_SEGMENT = re.compile(r"^(?:[a-z][a-z0-9-]{0,39}|[0-9a-fA-F-]{32,36}|[0-9]{1,6})$")


def redact_url(url: Any) -> Any:
    """A URL or path as logged: no query string, and no path segment that could be free text or a token
    (route words, ids and small numbers stay, e.g. /api/v1/unsubscribe/<redacted>)."""
    text = str(url)
    path, has_query, _query = text.partition("?")
    scheme, sep, rest = path.rpartition("://")
    host, slash, tail = rest.partition("/") if sep else ("", "", rest)
    segments = [s if not s or _PLAIN_SEGMENT.match(s) else "<redacted>" for s in tail.split("/")]
    cleaned = (f"{scheme}{sep}{host}{slash}" if sep else "") + "/".join(segments)
    if cleaned == text:
        return url
    return cleaned + ("?<query redacted>" if has_query else "")
