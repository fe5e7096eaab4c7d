"""`sensor-billing stripe ...`: the Stripe account's set-up, and test events for the API."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal, InvalidOperation

import typer

from sensor_billing.cli.errors import EXIT_UNAVAILABLE, EXIT_USAGE, reports_errors, stderr
from sensor_billing.cli.output import stdout_console
from sensor_billing.devtools.trigger import (
    SUPPORTED_TYPES,
    Delivery,
    build_event,
    deliver_event,
    new_context,
)
from sensor_billing.errors import ApiUnreachableError, InvalidInputError, UnknownEventTypeError
from sensor_billing.settings import get_settings
from sensor_billing.stripe_api.client import create_http_client, create_stripe_client
from sensor_billing.stripe_api.setup import (
    DEFAULT_CURRENCY,
    DEFAULT_READING_UNIT_AMOUNT,
    DEFAULT_SENSOR_UNIT_AMOUNT,
    SetupOptions,
    SetupResult,
    set_up_stripe,
)

app = typer.Typer(help="The Stripe account: set-up as code, test events.", no_args_is_help=True)
console = stdout_console()


# Stripe's unit_amount_decimal takes at most 12 decimal places; with Decimal's 28 digits of
# precision that leaves 16 before the point (a larger amount cannot be checked, nor is it a price).
MAX_CENTS = Decimal(10) ** 16


def _cents(option: str, value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite():  # also `nan` and `inf`, which Decimal reads
        raise InvalidInputError(f"{option} must be a number of cents, not {value!r}")
    if amount < 0 or amount >= MAX_CENTS or amount != amount.quantize(Decimal("1e-12")):
        raise InvalidInputError(
            f"{option} must be at least 0 and below {MAX_CENTS:f} with at most 12 decimal places"
        )
    return amount


@app.command()
@reports_errors
def setup(
    currency: str = typer.Option(DEFAULT_CURRENCY, help="Three-letter ISO currency code."),
    sensor_price: str = typer.Option(
        str(DEFAULT_SENSOR_UNIT_AMOUNT),
        help="Cents per active sensor per month (decimals allowed).",
    ),
    reading_price: str = typer.Option(
        str(DEFAULT_READING_UNIT_AMOUNT), help="Cents per temperature reading (decimals allowed)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Make sure the two Billing Meters, the product and its metered prices exist.

    Creates only what is missing; refuses (exit 1) when an existing meter or price differs in a
    way Stripe cannot change, and says what to do.
    """
    if len(currency) != 3 or not currency.isalpha():
        raise InvalidInputError(f"--currency must be a three-letter code, not {currency!r}")
    options = SetupOptions(
        currency=currency.lower(),
        unit_amounts={
            "active_sensors": _cents("--sensor-price", sensor_price),
            "temperature_readings": _cents("--reading-price", reading_price),
        },
    )
    settings = get_settings()

    async def run() -> SetupResult:
        http = create_http_client()
        try:
            return await set_up_stripe(create_stripe_client(settings, http_client=http), options)
        finally:
            await http.close_async()  # type: ignore[no-untyped-call]  # unannotated in the SDK

    result = asyncio.run(run())
    if as_json:
        console.print_json(json.dumps(result.to_json()))
        return
    for item in result.items:
        console.print(f"{item.kind} {item.name}: {item.id} ({item.outcome})", highlight=False)
    if result.created:
        console.print(f"created {len(result.created)} object(s)")
    else:
        console.print("nothing to create: the account is already set up")
    console.print("ids for the settings (optional; `reconcile` then checks these meters):")
    for line in result.settings_lines():
        console.print(f"  {line}", highlight=False)
    console.print("for subscriptions made elsewhere (no setting takes these):")
    for line in result.reference_lines():
        console.print(f"  {line}", highlight=False)


@app.command()
@reports_errors
def trigger(
    event_type: str = typer.Argument(..., help=f"One of: {', '.join(SUPPORTED_TYPES)}."),
    url: str | None = typer.Option(
        None, help="The running API (default: API_URL, which defaults to http://127.0.0.1:8000)."
    ),
    org: str | None = typer.Option(None, help="Organization id the event names."),
    customer: str | None = typer.Option(None, help="Stripe customer id the event names."),
) -> None:
    """Send a realistic, signed Stripe event to the API's POST /webhooks/stripe."""
    try:
        event = build_event(event_type, new_context(organization_id=org, customer_id=customer))
        settings = get_settings()
        delivery: Delivery = asyncio.run(
            deliver_event(event, api_url=url or settings.api_url, secrets_=settings.webhook_secrets)
        )
    except UnknownEventTypeError as error:
        stderr.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    except ApiUnreachableError as error:
        stderr.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    console.print(f"sent {event_type} {event['id']}: HTTP {delivery.status}", highlight=False)
    console.print(delivery.answer, highlight=False, soft_wrap=True)
    if not 200 <= delivery.status < 300:
        raise typer.Exit(1)
