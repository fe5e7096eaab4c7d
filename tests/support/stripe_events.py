"""Recorded Stripe events (tests/fixtures/stripe, see its MANIFEST.md) and signed delivery."""

from __future__ import annotations

import copy
import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx

from sensor_billing.webhooks.signature import sign

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "stripe"


def fixture_event_files() -> list[Path]:
    return sorted((FIXTURES / "events").glob("*.json"))


def load_event(path: Path) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(path.read_text())
    return event


def with_fresh_id(event: dict[str, Any]) -> dict[str, Any]:
    """A copy under a new event id: several fixture sources normalised their ids (MANIFEST)."""
    fresh = copy.deepcopy(event)
    fresh["id"] = f"evt_test_{secrets.token_hex(12)}"
    return fresh


def make_event(
    event_type: str, obj: dict[str, Any], *, created: int, api_version: str = "2025-03-31.basil"
) -> dict[str, Any]:
    """An event in Stripe's envelope, for shapes no recorded fixture has (docs: STRIPE.md)."""
    return {
        "id": f"evt_test_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def encode(event: dict[str, Any]) -> bytes:
    # Stripe sends pretty-printed JSON; the signature covers the exact bytes.
    return json.dumps(event, indent=2).encode()


async def deliver(
    client: httpx.AsyncClient,
    event: dict[str, Any] | bytes,
    *,
    secret: str | list[str],
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST the event signed like Stripe signs it (one v1 per secret during a roll)."""
    body = event if isinstance(event, bytes) else encode(event)
    signed_at = int(time.time()) if timestamp is None else timestamp
    secret_list = [secret] if isinstance(secret, str) else secret
    signature = ",".join(
        [f"t={signed_at}"] + [sign(s, signed_at, body).split(",", 1)[1] for s in secret_list]
    )
    all_headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": signature,
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        **(headers or {}),
    }
    return await client.post("/webhooks/stripe", content=body, headers=all_headers)
