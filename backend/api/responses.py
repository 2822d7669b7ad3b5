"""JSON responses that a hot route serializes itself.

A sync route's return value is validated by FastAPI against its response model a second time, in one more thread
hand-off, before it is serialized. The busiest routes (search, a provider's slots, booking) build their response
models themselves, so they return the bytes instead: the same pydantic serializer FastAPI uses (`dump_json`, by
alias), and the route still declares `response_model` for the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Response
from pydantic import TypeAdapter


class JsonOf:
    """The serializer of one response type, made once."""

    def __init__(self, response_type: Any) -> None:
        self._adapter: TypeAdapter[Any] = TypeAdapter(response_type)

    def response(self, value: Any, *, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        return Response(
            self._adapter.dump_json(value, by_alias=True),
            status_code=status_code,
            headers=headers,
            media_type="application/json",
        )
