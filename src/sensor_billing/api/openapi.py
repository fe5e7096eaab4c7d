"""The OpenAPI document as committed in `docs/openapi.json` (`sensor-billing openapi` writes
it; a test fails when the app's document and the committed one differ)."""

from __future__ import annotations

import json

from fastapi import FastAPI


def openapi_text(app: FastAPI) -> str:
    """The app's OpenAPI document, as the committed file holds it (2-space indent, newline)."""
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n"
