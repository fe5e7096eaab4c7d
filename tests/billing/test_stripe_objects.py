"""Reading billing fields out of Stripe objects of every API version the fixtures hold."""

from __future__ import annotations

import json
import uuid

from sensor_billing.billing.stripe_objects import (
    checkout_organization_id,
    invoice_subscription_id,
    metered_price_ids,
    read_subscription,
)
from tests.support.stripe_events import FIXTURES


def test_basil_invoice_finds_its_subscription_under_parent() -> None:
    data = json.loads(
        (FIXTURES / "objects" / "pay__invoice.payment_action_required.data-only.json").read_text()
    )
    invoice = data["object"]
    expected = invoice["parent"]["subscription_details"]["subscription"]
    assert expected
    assert invoice_subscription_id(invoice) == expected


def test_invoice_subscription_is_found_on_a_line_when_the_parent_is_absent() -> None:
    invoice = {
        "id": "in_1",
        "parent": None,
        "lines": {
            "data": [{"parent": {"subscription_item_details": {"subscription": "sub_from_line"}}}]
        },
    }
    assert invoice_subscription_id(invoice) == "sub_from_line"


def test_one_off_invoice_has_no_subscription() -> None:
    invoice = json.loads((FIXTURES / "events" / "zulip__invoice.paid__n1.json").read_text())
    assert invoice_subscription_id(invoice["data"]["object"]) is None


def test_legacy_metered_price_counts_as_metered() -> None:
    data = json.loads(
        (FIXTURES / "objects" / "pay__invoice.payment_action_required.data-only.json").read_text()
    )
    price = data["object"]["lines"]["data"][0]["price"]
    assert price["recurring"] == price["recurring"] | {"usage_type": "metered", "meter": None}
    licensed = {"id": "price_seat", "recurring": {"usage_type": "licensed", "meter": None}}
    subscription = {"items": {"data": [{"price": price}, {"price": licensed}]}}
    assert metered_price_ids(subscription) == [price["id"]]


def test_expanded_customer_object_is_read_as_its_id() -> None:
    snapshot = read_subscription(
        {"id": "sub_1", "status": "active", "customer": {"id": "cus_9", "object": "customer"}}
    )
    assert snapshot is not None
    assert snapshot.customer_id == "cus_9"
    assert snapshot.current_period_start is None


def test_subscription_without_status_is_not_read() -> None:
    assert read_subscription({"id": "sub_1", "customer": "cus_1"}) is None


def test_checkout_prefers_metadata_and_skips_values_that_are_not_uuids() -> None:
    org = uuid.uuid4()
    assert checkout_organization_id({"metadata": {"organization_id": str(org)}}) == org
    assert (
        checkout_organization_id(
            {"metadata": {"organization_id": "35"}, "client_reference_id": str(org)}
        )
        == org
    )
    assert checkout_organization_id({"metadata": {}, "client_reference_id": None}) is None
