"""`dev --demo`'s door to the /v1 API: a service key for the session, the demo organizations
subscribed the way the product subscribes them (a Checkout Session through the API, paid in
the stand-in, the webhooks it sends), and the curl lines that read what the product reads."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import httpx

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.dev_banner import Banner
from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.service_keys import issue_service_key
from sensor_billing.settings import Settings
from sensor_billing.stripe_api.client import create_http_client, create_stripe_client
from sensor_billing.stripe_api.setup import SetupOptions, set_up_stripe

logger = logging.getLogger("sensor_billing.demo")

DEMO_KEY_NAME = "dev --demo"
DEMO_RETURN_URL = "https://app.example.com/billing"


@dataclass(frozen=True, slots=True)
class DemoApi:
    key: str
    organization_id: uuid.UUID
    subscribed: int


async def _subscribe(
    api: httpx.AsyncClient, control: httpx.AsyncClient, organization_id: uuid.UUID
) -> bool:
    made = await api.post(
        f"/v1/organizations/{organization_id}/checkout-sessions",
        json={"success_url": DEMO_RETURN_URL, "cancel_url": DEMO_RETURN_URL},
        # A key of this start's own: an earlier start's answer, kept 24 h, names a session
        # the fresh stand-in does not have.
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    if made.status_code == 409:
        # A data folder from an earlier run: its subscription is recorded already (the
        # stand-in forgot it, so that organization's invoice preview is unavailable).
        return False
    made.raise_for_status()
    paid = await control.post(
        f"/_standin/checkout_sessions/{made.json()['id']}/complete", json={"deliver": True}
    )
    paid.raise_for_status()
    return True


async def open_demo_api(
    sessions: SessionFactory,
    settings: Settings,
    *,
    api_url: str,
    standin: RunningStandin | None,
    organization_ids: list[uuid.UUID],
) -> DemoApi:
    """A fresh service key and, with the stand-in, `stripe setup` and a subscription for each
    demo organization. Call once the API serves and the stand-in delivers to it."""
    key = await issue_service_key(sessions, DEMO_KEY_NAME)
    subscribed = 0
    if standin is not None:
        http = create_http_client(timeout=10.0)
        try:
            await set_up_stripe(create_stripe_client(settings, http_client=http), SetupOptions())
        finally:
            await http.close_async()  # type: ignore[no-untyped-call]  # unannotated in the SDK
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as api,
            httpx.AsyncClient(base_url=standin.url, timeout=30) as control,
        ):
            for organization_id in organization_ids:
                subscribed += await _subscribe(api, control, organization_id)
    return DemoApi(key, organization_ids[0], subscribed)


def add_demo_api_lines(banner: Banner, api_url: str, demo: DemoApi) -> None:
    """The banner's lines: the key and the calls that read what the product reads."""
    auth = f'-H "Authorization: Bearer {demo.key}"'
    base = f"{api_url}/v1/organizations/{demo.organization_id}"
    banner.add("service key", f"{demo.key}  (named {DEMO_KEY_NAME!r}; a new one at every start)")
    banner.add("subscribed", f"{demo.subscribed} demo organization(s), through checkout")
    banner.add("curl", f"curl {auth} {base}/billing")
    banner.add("", f"curl {auth} {base}/usage")
    banner.add("", f"curl {auth} '{base}/usage?from=2026-01-01T00:00:00Z&to=2026-12-31T00:00:00Z'")
