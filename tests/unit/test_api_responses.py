"""The hot routes serialize their own responses (backend/api/responses.py): the same bytes FastAPI makes from a
response model, and the routes still declare their models in the OpenAPI document."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from fastapi import FastAPI, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from backend.api.app import api
from backend.api.responses import JsonOf


class Inner(BaseModel):
    zone: str
    at: datetime


class Sample(BaseModel):
    id: uuid.UUID
    name: str = Field(serialization_alias="fullName")
    kind: Literal["a", "b"]
    start: datetime | None
    tags: list[str]
    inner: list[Inner]
    ratio: float


SAMPLES = [
    Sample(
        id=uuid.UUID(int=7),
        name='Zoë "Z" Ünal\u2028',
        kind="a",
        start=datetime(2030, 3, 10, 7, 30, 0, 125000, tzinfo=UTC),
        tags=["Anxiety", "日本語"],
        inner=[Inner(zone="America/New_York", at=datetime(2030, 1, 1, tzinfo=UTC))],
        ratio=0.1,
    ),
    Sample(id=uuid.UUID(int=8), name="", kind="b", start=None, tags=[], inner=[], ratio=1e-7),
]


def test_the_bytes_are_those_fastapi_makes_from_the_response_model() -> None:
    app = FastAPI()
    serializer = JsonOf(list[Sample])

    @app.get("/model", response_model=list[Sample])
    def by_model() -> list[Sample]:
        return SAMPLES

    @app.get("/own", response_model=list[Sample])
    def by_hand() -> Response:
        return serializer.response(SAMPLES, status_code=201, headers={"X-Extra": "1"})

    with TestClient(app) as client:
        model, own = client.get("/model"), client.get("/own")
    assert own.content == model.content
    assert b'"fullName"' in own.content
    assert own.headers["content-type"] == model.headers["content-type"] == "application/json"
    assert (own.status_code, own.headers["X-Extra"]) == (201, "1")


def test_the_hot_routes_still_declare_their_response_models() -> None:
    paths = api.openapi()["paths"]
    declared = {
        ("/api/v1/providers", "get", "200"): "ProviderCardOut",
        ("/api/v1/providers/{provider_id}/slots", "get", "200"): "SlotOut",
        ("/api/v1/appointments", "post", "201"): "AppointmentOut",
    }
    for (path, method, status), model in declared.items():
        schema = paths[path][method]["responses"][status]["content"]["application/json"]["schema"]
        assert model in str(schema), (path, schema)
