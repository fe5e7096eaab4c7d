"""The fields of Stripe's billing objects that the stand-in does not model, with the value an
account that does not use the feature gets, so that every answer carries the fields Stripe's
does (a missing one is an `AttributeError` in code reading it through the SDK).

Which fields: those stripe 16.1 types as always present, and those Stripe's recorded objects
of each kind carry (tests/fixtures/stripe: the 2025-04-30.basil invoice, the basil-era Checkout
Session, the 2020 subscriptions) that the SDK still declares; their values are the recorded
ones where a field is unused (null, `[]`, `{"enabled": false}`, `"none"`). Checked by
tests/devtools/test_stripe_standin_shapes.py.

Assumed where the docs are silent: the stand-in's account is not a Connect account, collects
no tax, has no shipping, discounts, custom fields or test clocks, and bills subscriptions in
`billing_mode` `classic` (the default before `flexible`, api/subscriptions/object); a hosted
session takes cards only (`payment_method_types` `["card"]`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def with_unmodelled(modelled: Mapping[str, Any], unmodelled: Mapping[str, Any]) -> dict[str, Any]:
    """The object as Stripe lays it out: `id` and `object` first, then every field by name;
    a field the stand-in models wins over its default."""
    merged = {**unmodelled, **modelled}
    head = [key for key in ("id", "object") if key in merged]
    return {key: merged[key] for key in [*head, *sorted(set(merged) - set(head))]}


def checkout_session_fields() -> dict[str, Any]:
    return {
        "adaptive_pricing": None,
        "client_secret": None,  # only for embedded and custom ui_modes
        "collected_information": None,
        "consent": None,
        "consent_collection": None,
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "discounts": [],
        "invoice_creation": None,  # payment mode only
        "origin_context": None,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "permissions": None,
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "submit_type": None,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "wallet_options": None,
    }


def subscription_fields() -> dict[str, Any]:
    return {
        "application_fee_percent": None,
        "billing_mode": {"flexible": None, "type": "classic", "updated_at": None},
        "billing_schedules": [],
        "billing_thresholds": None,
        "default_source": None,
        "default_tax_rates": [],
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "transfer_data": None,
    }


def subscription_item_fields() -> dict[str, Any]:
    return {"billing_thresholds": None}


def invoice_fields() -> dict[str, Any]:
    return {
        "account_country": None,
        "account_name": None,
        "account_tax_ids": None,
        "amount_shipping": 0,
        "application": None,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "custom_fields": None,
        "customer_address": None,
        "customer_phone": None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "footer": None,
        "from_invoice": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "on_behalf_of": None,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "statement_descriptor": None,
        "test_clock": None,
        "total_discount_amounts": [],
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
    }


def invoice_line_fields() -> dict[str, Any]:
    return {"pretax_credit_amounts": []}
