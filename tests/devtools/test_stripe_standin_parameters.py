"""Parameters Stripe takes: modelled ones take effect, unmodelled ones are refused saying the
stand-in does not model them (not as unknown to Stripe, and never ignored)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from tests.devtools.helpers import SUCCESS_URL, BillingCatalog, subscribe

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


@pytest.fixture
async def subscription(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> dict[str, Any]:
    started: dict[str, Any] = (await subscribe(client, catalog, control))["subscription"]
    return started


CHECKOUT = "/v1/checkout/sessions"
PREVIEW = "/v1/invoices/create_preview"
PORTAL = "/v1/billing_portal/sessions"
SUBSCRIPTION = "/v1/subscriptions/{subscription}"
ENDPOINTS = "/v1/webhook_endpoints"


@pytest.mark.parametrize(
    ("method", "path", "data", "param"),
    [
        ("POST", CHECKOUT, {"allow_promotion_codes": "true"}, "allow_promotion_codes"),
        ("POST", CHECKOUT, {"line_items[0][tax_rates][0]": "txr_1"}, "line_items[0][tax_rates]"),
        ("POST", CHECKOUT, {"subscription_data[trial_period_days]": "7"},
         "subscription_data[trial_period_days]"),
        ("POST", PREVIEW, {"subscription_details[cancel_now]": "true"}, "subscription_details"),
        ("POST", PORTAL, {"flow_data[type]": "payment_method_update"}, "flow_data"),
        ("POST", SUBSCRIPTION, {"items[0][price]": "price_1"}, "items"),
        ("DELETE", SUBSCRIPTION, {"invoice_now": "true"}, "invoice_now"),
        ("POST", ENDPOINTS, {"connect": "true"}, "connect"),
    ],
)  # fmt: skip
async def test_a_parameter_stripe_takes_but_the_stand_in_does_not_model_is_refused_saying_so(
    raw: httpx.AsyncClient,
    catalog: BillingCatalog,
    subscription: dict[str, Any],
    method: str,
    path: str,
    data: dict[str, str],
    param: str,
) -> None:
    valid = {
        CHECKOUT: {
            "mode": "subscription",
            "success_url": SUCCESS_URL,
            "line_items[0][price]": catalog.metered_price,
        },
        PREVIEW: {"subscription": subscription["id"]},
        PORTAL: {"customer": subscription["customer"]},
        ENDPOINTS: {"url": "https://app.example/hook", "enabled_events[0]": "*"},
    }.get(path, {})

    answer = await raw.request(
        method,
        path.format(subscription=subscription["id"]),
        data={**valid, **data},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    error = answer.json()["error"]
    assert (answer.status_code, error["param"]) == (400, param)
    assert "code" not in error
    assert "stand-in does not model" in error["message"]
