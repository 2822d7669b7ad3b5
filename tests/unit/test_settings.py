"""Settings validators (no database)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from backend.settings import Settings

SECRET = "s" * 40


def _settings(**values: Any) -> Settings:
    values.setdefault("secret_key", SECRET)
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/clinic", "postgresql+psycopg://u:p@db:5432/clinic"),
        ("postgresql://u@127.0.0.1/clinic", "postgresql+psycopg://u@127.0.0.1/clinic"),
        ("postgresql+psycopg://u@h/clinic", "postgresql+psycopg://u@h/clinic"),
        ("sqlite:///data/clinic.db", "sqlite:///data/clinic.db"),
    ],
)
def test_database_url_uses_psycopg3(given: str, expected: str) -> None:
    settings = _settings(database_url=given)
    assert settings.database_url == expected
    assert settings.is_sqlite is expected.startswith("sqlite")


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_algorithms_accepted(alg: str) -> None:
    assert _settings(jwt_algorithm=alg).jwt_algorithm == alg


@pytest.mark.parametrize("alg", ["none", "None", "RS256", "ES256", "hs256", ""])
def test_other_jwt_algorithms_refused(alg: str) -> None:
    with pytest.raises(ValidationError, match="jwt_algorithm must be one of"):
        _settings(jwt_algorithm=alg)


def test_short_secret_refused() -> None:
    with pytest.raises(ValidationError):
        _settings(secret_key="too-short")


@pytest.mark.parametrize(("field", "value"), [("access_token_minutes", 0), ("session_hours", 0)])
def test_lifetimes_must_be_positive(field: str, value: int) -> None:
    with pytest.raises(ValidationError):
        _settings(**{field: value})


def test_broker_falls_back_to_redis() -> None:
    assert _settings(redis_url="redis://r:6379/0").broker_url == "redis://r:6379/0"
    assert _settings(redis_url="redis://r/0", celery_broker_url="amqp://b//").broker_url == "amqp://b//"
    assert _settings(redis_url=None, celery_broker_url=None).broker_url is None
