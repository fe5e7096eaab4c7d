"""An organization's /ops page names, in red, every live subscription with metered prices when
its customer has two or more (each bills the same usage), and says nothing while it has one."""

from __future__ import annotations

import re

import httpx

from sensor_billing.db import SessionFactory
from tests.ops.conftest import BEARER, WEBHOOK_SECRET
from tests.support.billing_state import READINGS, SENSORS, T0, new_organization, send, subscription

CUSTOMER = "cus_twice"


def duplicate_section(html: str) -> str | None:
    found = re.search(
        r'<section class="card alert" id="duplicate-subscriptions".*?</section>', html, re.DOTALL
    )
    return found.group(0) if found else None


async def subscribe(client: httpx.AsyncClient, sub_id: str, at: int) -> None:
    sub = subscription(sub_id, "active", start=at, customer=CUSTOMER, prices=[SENSORS, READINGS])
    await send(client, "customer.subscription.created", sub, at, secret=WEBHOOK_SECRET)


async def test_the_organization_page_names_both_live_metered_subscriptions_in_red(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    organization_id = await new_organization(sessions, CUSTOMER, "Aurora Dairy")
    await subscribe(client, "sub_first", T0)
    await subscribe(client, "sub_second", T0 + 60)

    page = await client.get(f"/ops/organizations/{organization_id}", headers=BEARER)

    assert page.status_code == 200
    section = duplicate_section(page.text)
    assert section is not None, "no duplicate-subscriptions section"
    assert "2 live subscriptions bill the same usage" in section
    assert re.findall(r'<tr data-subscription="([^"]+)">', section) == ["sub_first", "sub_second"]
    assert "Nothing was canceled" in section


async def test_an_organization_with_one_subscription_shows_no_duplicate_section(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    organization_id = await new_organization(sessions, CUSTOMER, "Aurora Dairy")
    await subscribe(client, "sub_first", T0)

    page = await client.get(f"/ops/organizations/{organization_id}", headers=BEARER)

    assert page.status_code == 200
    assert 'id="duplicate-subscriptions"' not in page.text
