"""Health and readiness."""

from __future__ import annotations

import httpx

from sensor_billing.settings import load_settings
from tests.support.app import running_app


async def test_healthz_and_readyz_answer_200_when_postgresql_and_redis_do(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgresql": "ok", "redis": "ok"}


async def test_readyz_answers_503_naming_what_does_not_answer(database_url: str) -> None:
    settings = load_settings(database_url=database_url, redis_url="redis://127.0.0.1:1/0")
    async with running_app(settings) as (_, client):
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["postgresql"] == "ok"
    assert response.json()["checks"]["redis"].startswith("unavailable")
