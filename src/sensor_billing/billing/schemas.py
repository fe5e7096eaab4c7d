"""The answers of `GET /v1/organizations/{id}/billing` and `.../usage` (they go into the
OpenAPI document, examples included). Times are ISO 8601 in UTC; money is an integer in the
currency's minor units beside its `currency`; Stripe's decimal amounts are strings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sensor_billing.billing.standing import BillingView, PriceInfo
from sensor_billing.billing.usage import Figure, MeterUsage, PreviewOutcome, UsageReport

ORGANIZATION_EXAMPLE = "6f1c8a52-3a0e-4a0c-9a43-1a3c2f0e9b11"


def utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


class Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


class Period(Answer):
    start: datetime = Field(examples=["2026-12-01T00:00:00Z"], description="Included")
    end: datetime = Field(examples=["2027-01-01T00:00:00Z"], description="Excluded")


class EntitlementAnswer(Answer):
    entitled: bool = Field(description="May the organization use the product now")
    reason: str = Field(
        examples=["active", "trialing", "past_due_grace", "past_due_grace_ended", "canceled"],
        description=(
            "Why: the subscription's status, `past_due_grace` or `past_due_grace_ended`, "
            "`no_subscription` or `customer_deleted` (docs/billing.md, the policy)"
        ),
    )
    until: datetime | None = Field(
        examples=["2026-12-08T09:30:00Z"],
        description=(
            "When it ends unless something changes: the grace period's end, or the period's "
            "end of a subscription set to cancel then; null when no end is known"
        ),
    )


class SubscriptionAnswer(Answer):
    id: str = Field(examples=["sub_1QxY2bLkdIwHu7ix"])
    status: str = Field(examples=["active"], description="Stripe's status, as it said last")
    current_period: Period | None
    cancel_at_period_end: bool
    past_due_since: datetime | None = Field(
        description="The first failed payment of its unpaid invoices, when past_due"
    )


class PriceAnswer(Answer):
    id: str = Field(examples=["price_1QxY2bLkdIwHu7ixSensors"])
    event_name: str | None = Field(
        examples=["active_sensors"],
        description="The meter event it bills (for prices `stripe setup` made); else null",
    )
    meter_id: str | None = Field(examples=["mtr_61Rk2bLkdIwHu7ix"])
    currency: str | None = Field(examples=["eur"])
    unit_amount: int | None = Field(
        examples=[500],
        description="Minor units per unit, when a whole number (see unit_amount_decimal)",
    )
    unit_amount_decimal: str | None = Field(
        examples=["500", "0.01"], description="Minor units per unit, as Stripe states it"
    )


class BillingAnswer(Answer):
    """An organization's billing standing: whether it is entitled, its subscription, prices."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "organization_id": ORGANIZATION_EXAMPLE,
                    "stripe_customer_id": "cus_RkZ2bLkdIwHu7i",
                    "entitlement": {"entitled": True, "reason": "active", "until": None},
                    "subscription": {
                        "id": "sub_1QxY2bLkdIwHu7ix",
                        "status": "active",
                        "current_period": {
                            "start": "2026-12-01T00:00:00Z",
                            "end": "2027-01-01T00:00:00Z",
                        },
                        "cancel_at_period_end": False,
                        "past_due_since": None,
                    },
                    "prices": [
                        {
                            "id": "price_1QxY2bLkdIwHu7ixSensors",
                            "event_name": "active_sensors",
                            "meter_id": "mtr_61Rk2bLkdIwHu7ix",
                            "currency": "eur",
                            "unit_amount": 500,
                            "unit_amount_decimal": "500",
                        },
                        {
                            "id": "price_1QxY2bLkdIwHu7ixReadings",
                            "event_name": "temperature_readings",
                            "meter_id": "mtr_61Rk2cLkdIwHu7iy",
                            "currency": "eur",
                            "unit_amount": None,
                            "unit_amount_decimal": "0.01",
                        },
                    ],
                }
            ]
        },
    )

    organization_id: uuid.UUID
    stripe_customer_id: str | None
    entitlement: EntitlementAnswer
    subscription: SubscriptionAnswer | None = Field(
        description="The subscription that decides the entitlement (of several, the one that "
        "entitles most); null when there is none"
    )
    prices: list[PriceAnswer] = Field(description="The subscription's metered prices")


def decimal_text(amount: Decimal | None) -> str | None:
    if amount is None:
        return None
    text = format(amount.normalize(), "f")
    return text


def price_answer(price: PriceInfo) -> PriceAnswer:
    amount = price.unit_amount_decimal
    whole = amount is not None and amount == amount.to_integral_value()
    return PriceAnswer(
        id=price.id,
        event_name=price.event_name,
        meter_id=price.meter_id,
        currency=price.currency,
        unit_amount=int(amount) if amount is not None and whole else None,
        unit_amount_decimal=decimal_text(amount),
    )


def billing_answer(view: BillingView) -> BillingAnswer:
    standing, decision = view.billing.standing, view.billing.entitlement
    subscription = None
    if standing.subscription_id is not None and standing.status is not None:
        period = None
        start, end = utc(standing.current_period_start), utc(standing.current_period_end)
        if start is not None and end is not None:
            period = Period(start=start, end=end)
        subscription = SubscriptionAnswer(
            id=standing.subscription_id,
            status=standing.status,
            current_period=period,
            cancel_at_period_end=standing.cancel_at_period_end,
            past_due_since=utc(standing.past_due_since),
        )
    return BillingAnswer(
        organization_id=standing.organization_id,
        stripe_customer_id=standing.stripe_customer_id,
        entitlement=EntitlementAnswer(
            entitled=decision.entitled, reason=decision.reason, until=utc(decision.until)
        ),
        subscription=subscription,
        prices=[price_answer(price) for price in view.prices],
    )


# -- usage -----------------------------------------------------------------------------------


class UsageFigure(Answer):
    rows: int = Field(description="Ledger rows (usage windows) of this kind in the period")
    value: int = Field(
        description="Their usage by the meter's aggregation: the sum (`sum`), or the value of "
        "the row with the latest timestamp (`last`)"
    )


class MeterUsageAnswer(Answer):
    event_name: str = Field(examples=["temperature_readings"])
    aggregation: Literal["sum", "last"]
    sent: UsageFigure = Field(description="Accepted by Stripe")
    pending: UsageFigure = Field(description="Measured, not yet accepted by Stripe")
    failed: UsageFigure = Field(description="Refused by Stripe; a person must look")
    invalid: UsageFigure = Field(
        description="Accepted, then reported invalid by Stripe (not billed)"
    )


class UsagePeriod(Period):
    current: bool = Field(
        description="The subscription's current period (period=current), not a from/to range"
    )


class PreviewLineAnswer(Answer):
    price_id: str | None = Field(examples=["price_1QxY2bLkdIwHu7ixReadings"])
    event_name: str | None = Field(examples=["temperature_readings"])
    quantity: int | None = Field(examples=[120000])
    amount: int = Field(examples=[1200], description="Minor units")


class PreviewAnswer(Answer):
    status: Literal["available", "unavailable", "not_applicable"] = Field(
        description="`available`: Stripe's figures below; `unavailable`: Stripe failed or did "
        "not answer in time (the reason says which); `not_applicable`: not the current period"
    )
    reason: str | None = Field(
        examples=["stripe_timeout"],
        description="Why there is no preview: stripe_timeout, stripe_unavailable, "
        "stripe_refused, stripe_not_configured, no_subscription, requested_period",
    )
    message: str | None = Field(examples=["Stripe did not answer within 2 s"])
    currency: str | None = Field(examples=["eur"])
    amount_due: int | None = Field(examples=[2700], description="Minor units")
    subtotal: int | None = Field(examples=[2700], description="Minor units")
    total: int | None = Field(examples=[2700], description="Minor units")
    lines: list[PreviewLineAnswer]


class UsageAnswer(Answer):
    """An organization's usage in a billing period as the ledger holds it, and, for the
    current period, what Stripe's invoice preview says is due so far."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "organization_id": ORGANIZATION_EXAMPLE,
                    "period": {
                        "start": "2026-12-01T00:00:00Z",
                        "end": "2027-01-01T00:00:00Z",
                        "current": True,
                    },
                    "meters": [
                        {
                            "event_name": "active_sensors",
                            "aggregation": "last",
                            "sent": {"rows": 96, "value": 3},
                            "pending": {"rows": 2, "value": 3},
                            "failed": {"rows": 0, "value": 0},
                            "invalid": {"rows": 0, "value": 0},
                        },
                        {
                            "event_name": "temperature_readings",
                            "aggregation": "sum",
                            "sent": {"rows": 96, "value": 120000},
                            "pending": {"rows": 2, "value": 2400},
                            "failed": {"rows": 0, "value": 0},
                            "invalid": {"rows": 0, "value": 0},
                        },
                    ],
                    "preview": {
                        "status": "available",
                        "reason": None,
                        "message": None,
                        "currency": "eur",
                        "amount_due": 2700,
                        "subtotal": 2700,
                        "total": 2700,
                        "lines": [
                            {
                                "price_id": "price_1QxY2bLkdIwHu7ixSensors",
                                "event_name": "active_sensors",
                                "quantity": 3,
                                "amount": 1500,
                            },
                            {
                                "price_id": "price_1QxY2bLkdIwHu7ixReadings",
                                "event_name": "temperature_readings",
                                "quantity": 120000,
                                "amount": 1200,
                            },
                        ],
                    },
                }
            ]
        },
    )

    organization_id: uuid.UUID
    period: UsagePeriod
    meters: list[MeterUsageAnswer]
    preview: PreviewAnswer


def _figure(figure: Figure) -> UsageFigure:
    return UsageFigure(rows=figure.rows, value=figure.value)


def meter_answer(meter: MeterUsage) -> MeterUsageAnswer:
    aggregation: Literal["sum", "last"] = "last" if meter.aggregation == "last" else "sum"
    return MeterUsageAnswer(
        event_name=meter.event_name,
        aggregation=aggregation,
        sent=_figure(meter.figures["sent"]),
        pending=_figure(meter.figures["pending"]),
        failed=_figure(meter.figures["failed"]),
        invalid=_figure(meter.figures["invalid"]),
    )


def preview_answer(preview: PreviewOutcome, event_names: dict[str, str]) -> PreviewAnswer:
    invoice = preview.invoice
    return PreviewAnswer(
        status=preview.status,
        reason=preview.reason,
        message=preview.message,
        currency=invoice.currency if invoice else None,
        amount_due=invoice.amount_due if invoice else None,
        subtotal=invoice.subtotal if invoice else None,
        total=invoice.total if invoice else None,
        lines=[
            PreviewLineAnswer(
                price_id=line.price_id,
                event_name=event_names.get(line.price_id) if line.price_id else None,
                quantity=line.quantity,
                amount=line.amount,
            )
            for line in (invoice.lines if invoice else ())
        ],
    )


def usage_answer(report: UsageReport) -> UsageAnswer:
    event_names = {
        price.id: price.event_name for price in report.prices if price.event_name is not None
    }
    return UsageAnswer(
        organization_id=report.organization_id,
        period=UsagePeriod(
            start=report.period_start.astimezone(UTC),
            end=report.period_end.astimezone(UTC),
            current=report.current,
        ),
        meters=[meter_answer(meter) for meter in report.meters],
        preview=preview_answer(report.preview, event_names),
    )
