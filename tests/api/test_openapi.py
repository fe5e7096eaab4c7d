"""The OpenAPI document: committed in docs/openapi.json, served at /openapi.json, the two the
same; every /v1 operation declares the service key, the Idempotency-Key and its errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from sensor_billing.api.openapi import openapi_text
from sensor_billing.app import create_app
from sensor_billing.settings import load_settings

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
REGENERATE = "run `sensor-billing openapi > docs/openapi.json` and commit it"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(openapi_text(create_app(load_settings())))
    return spec


def v1_operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in item.items()
    ]


def test_the_committed_document_is_the_one_the_app_makes() -> None:
    made = openapi_text(create_app(load_settings()))

    assert COMMITTED.read_text() == made, f"docs/openapi.json is out of date: {REGENERATE}"


async def test_the_api_serves_the_committed_document(api: httpx.AsyncClient) -> None:
    answer = await api.get("/openapi.json", headers={"Authorization": ""})

    assert answer.status_code == 200
    assert answer.json() == json.loads(COMMITTED.read_text())


def test_every_v1_operation_needs_the_service_key(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["ServiceKey"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == (
        "http",
        "bearer",
        "sbk_...",
    )
    operations = v1_operations(document)
    assert operations
    for path, method, operation in operations:
        assert operation["security"] == [{"ServiceKey": []}], (method, path)


def test_every_v1_post_takes_an_idempotency_key_and_json(document: dict[str, Any]) -> None:
    posts = [op for _, method, op in v1_operations(document) if method == "post"]
    assert posts
    for operation in posts:
        (header,) = [p for p in operation["parameters"] if p["in"] == "header"]
        assert header["name"] == "Idempotency-Key"
        assert header["required"] is False
        assert header["schema"]["anyOf"][0]["maxLength"] == 255
        assert list(operation["requestBody"]["content"]) == ["application/json"]


def test_every_v1_error_answer_has_the_error_schema(document: dict[str, Any]) -> None:
    error_schema = {"$ref": "#/components/schemas/ErrorAnswer"}
    for path, method, operation in v1_operations(document):
        statuses = {int(status) for status in operation["responses"]}
        assert {401, 422}.issubset(statuses), (method, path)
        if method == "post":
            assert {400, 409, 413, 502}.issubset(statuses), (method, path)
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == error_schema
    detail = document["components"]["schemas"]["ErrorDetail"]
    assert {"code", "message"} == set(detail["required"])
