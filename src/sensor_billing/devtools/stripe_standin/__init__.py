"""A local Stripe stand-in: Billing Meters, customers, products and prices, Checkout Sessions,
subscriptions and the webhook events they send. Follows Stripe's contract, refuses what it
refuses.

Start it in tests with `run_in_thread()` and point `stripe.StripeClient(base_addresses=...)` at
`.url`; read what it accepted from `.state`. See the modules for the Stripe rules each follows
(checkout.py, billing_portal.py, subscriptions.py, subscription_lifecycle.py, invoices.py,
invoice_preview.py, webhook_events.py, webhook_endpoints.py, event_queries.py, expansion.py,
pagination.py, unmodelled_fields.py, stripe_params.py for billing) and docs/stripe-standin.md
for the control API the billing tests use.

Where Stripe's documentation is silent, the stand-in assumes:
- A bad or missing key is answered 401 with error type `invalid_request_error` (what Stripe's
  API sends); the SDK raises `stripe.AuthenticationError` from the status alone.
- Identifiers are unique per account across event names and across v1 and v2, for exactly
  24 h from acceptance; idempotency keys are kept exactly 24 h (v1) / 30 days (v2).
- v1 checks synchronously that the payload holds the meter's customer and value keys (Stripe's
  defaults when no active meter exists); the stream defers those checks to error reports.
- Asynchronous validation runs at acceptance, in this order: no active meter (`no_meter`, or
  `archived_meter` when only inactive meters have the name), timestamp range (stream only),
  missing customer key, unknown or deleted customer (strict mode only), missing value,
  non-numeric value (`-?digits[.digits]`). An invalid event still uses up its identifier.
- Strict customers mode is on once any customer has been created, unless configured.
- Parameter validation failures, 401s and 429s are not saved by the idempotency layer; the
  duplicate-identifier refusal is (the endpoint began executing).
- Injected faults without `recorded_before_*` sit in front of the API: nothing runs, nothing is
  saved. With `recorded_before_*` the request ran: after a timeout or a cut connection its real
  answer is saved, so a retry with the same key replays it; after a 500 the 500 is saved, as
  Stripe keeps it (docs: api/idempotent_requests), so the same key gets the 500 again.
- Every error report becomes one v2 thin event (error_count 1), sent once to the event
  destination if one is set (control API), fetchable at `GET /v2/core/events/{id}`.
- Summaries: every window in [start, end) gets one (0 if empty), newest first; start < end; an
  unknown customer is a 404 in strict mode. A second cancel of the same event succeeds again.
- Webhook deliveries (thin and snapshot events) are signed with the wall-clock time of sending,
  not the stand-in's clock, which tests move; an event's `created` is the stand-in's clock.
- Faults apply to the endpoint groups a plan targets (metering by default); `invalid_request`
  is a 400 refusal injected before the endpoint runs.
"""

from .app import create_app
from .config import EventDestination, StandinConfig
from .errors import StripeRefusalError, WireAnswer
from .faults import FaultDecision, FaultInjector, FaultKind, FaultPlan, FaultTarget
from .records import (
    Counters,
    Customer,
    ErrorCode,
    ErrorReport,
    EventDelivery,
    Meter,
    MeterEventRecord,
    MeterEventSession,
    Price,
    Product,
    V2Event,
)
from .server import DEFAULT_API_KEY, RunningStandin, run_in_thread
from .state import StandinState

__all__ = [
    "DEFAULT_API_KEY",
    "Counters",
    "Customer",
    "ErrorCode",
    "ErrorReport",
    "EventDelivery",
    "EventDestination",
    "FaultDecision",
    "FaultInjector",
    "FaultKind",
    "FaultPlan",
    "FaultTarget",
    "Meter",
    "MeterEventRecord",
    "MeterEventSession",
    "Price",
    "Product",
    "RunningStandin",
    "StandinConfig",
    "StandinState",
    "StripeRefusalError",
    "V2Event",
    "WireAnswer",
    "create_app",
    "run_in_thread",
]
