"""The service's errors.

    SensorBillingError                 base; everything the service raises on purpose
    ├── ConfigurationError             a setting is missing or malformed (start-up stops)
    │   └── PortInUseError             `dev`, `serve`: the API port is taken
    ├── InvalidInputError              a command's argument is malformed or names nothing
    │   └── InvalidParameterError      an HTTP request's parameter is malformed (422)
    ├── DataDirInUseError              `dev`: another instance holds the data folder
    ├── DatabaseUnavailableError       PostgreSQL does not answer
    ├── QueueUnavailableError          Redis does not answer or is too old for bullmq
    ├── InvalidJobDataError            job data that a queue must not carry
    ├── StripeUnavailableError         429, 409, 5xx, timeout, connection: retry later
    ├── StripeRefusedError             any other 4xx: retrying cannot help
    ├── WebhookNotConfiguredError      no STRIPE_WEBHOOK_SECRET: every delivery is refused
    ├── EventFetchError                a thin event's full event could not be fetched or read:
    │                                  answered 5xx, nothing recorded, Stripe delivers again
    └── WebhookRejectedError           a delivery refused before anything is written
        ├── SignatureMissingError      no Stripe-Signature header
        ├── SignatureMalformedError    header without a timestamp or any v1 signature
        ├── SignatureMismatchError     no v1 signature matches any active secret
        ├── SignatureExpiredError      timestamp outside the tolerance (replay protection)
        ├── PayloadTooLargeError       body over the size limit
        ├── UnsupportedMediaTypeError  body is not declared as JSON
        └── InvalidEventError          body is not JSON, or not a Stripe event
    StripeSetupConflictError           (under the base) an existing Stripe object differs
                                       from the set-up and cannot be changed in place
    UnknownEventTypeError              (under the base) `stripe trigger` has no such event
    ApiUnreachableError                (under the base) the service's HTTP API did not answer
    CorrectionNotPossibleError         (under the base) `usage correct` cannot fix this row
                                       now (not sent yet, a correction still pending, or
                                       Stripe reported it invalid)
    ResendNotPossibleError             (under the base) `usage resend --row` names a row that
                                       bills what it should (pending, or sent without an
                                       error) or is never sent (skipped, cancelled)
    OpsRequestError                    (under the base) an /ops page refused the request
    ├── OpsNotSignedInError            no, or a wrong, token or session (401)
    ├── OpsCsrfError                   a form without this session's CSRF token (403)
    └── OrganizationNotFoundError      no organization with that id (404)
    ApiRequestError                    (under the base) a /v1 request refused; nothing written
    ├── ServiceKeyRefusedError         no, a malformed, an unknown or a revoked service key (401)
    ├── InvalidJsonBodyError           the body is not JSON (400)
    ├── NoSuchOrganizationError        no organization with that id (404)
    ├── IdempotencyKeyReusedError      the key was first used for another request (409)
    ├── IdempotencyKeyInUseError       a request with the key is still running (409)
    ├── SubscriptionExistsError        checkout for an organization already subscribed (409)
    ├── CustomerMissingError           the organization has no Stripe customer yet (409)
    ├── CustomerDeletedError           the organization's Stripe customer was deleted (409)
    ├── NoBillingPeriodError           usage of the current period was asked for, and the
    │                                  organization has no subscription period (409)
    └── CheckoutNotConfiguredError     no STRIPE_API_KEY, or `stripe setup` has not run (503)

HTTP and the CLI each map these to a status or exit code in one place.
"""

from __future__ import annotations


class SensorBillingError(Exception):
    """Base class: an error the service raises on purpose, with a message a person can act on."""


class ConfigurationError(SensorBillingError):
    """A setting is missing or malformed. The message names the environment variable."""


class PortInUseError(ConfigurationError):
    """The API port is taken (exit 2, like any other bad option)."""


class InvalidInputError(SensorBillingError):
    """A command-line argument is malformed, out of range, or names something that does not
    exist. Nothing was written; the message names the option."""


class InvalidParameterError(InvalidInputError):
    """A query or path parameter of an HTTP request is malformed or out of range (422);
    nothing was written or asked of Stripe. The message names the parameter."""

    code = "invalid_request"


class DataDirInUseError(SensorBillingError):
    """Another `sensor-billing dev` holds the data folder; two servers on one PGDATA corrupt it."""


class DatabaseUnavailableError(SensorBillingError):
    """PostgreSQL could not be reached or refused the connection."""


class QueueUnavailableError(SensorBillingError):
    """Redis could not be reached or is older than bullmq needs."""


class InvalidJobDataError(SensorBillingError):
    """Job data failed validation; nothing was enqueued."""


class UnknownOrganizationError(SensorBillingError):
    """A job names an organization this service does not have (perhaps not yet committed by
    the producer): the queue retries it, and the sweep revives it once the organization exists."""


class WebhookNotConfiguredError(SensorBillingError):
    """STRIPE_WEBHOOK_SECRET is not set, so no delivery can be verified."""

    code = "webhook_not_configured"


class EventFetchError(SensorBillingError):
    """What a verified delivery needs from Stripe could not be fetched (or was not what Stripe
    documents): the full event behind a thin event, or the subscription of an event from the
    stored state's second. Nothing was recorded: answered 502 so that Stripe delivers again."""

    code = "event_fetch_failed"


class RecordingInterruptedError(SensorBillingError):
    """The process stopped before a delivery's event was recorded: answered 503, so that Stripe
    delivers again."""

    code = "shutting_down"


class WebhookRejectedError(SensorBillingError):
    """A webhook delivery refused before anything was written. `code` names the problem."""

    code = "webhook_rejected"


class SignatureMissingError(WebhookRejectedError):
    code = "signature_missing"


class SignatureMalformedError(WebhookRejectedError):
    code = "signature_malformed"


class SignatureMismatchError(WebhookRejectedError):
    code = "signature_mismatch"


class SignatureExpiredError(WebhookRejectedError):
    code = "timestamp_outside_tolerance"


class PayloadTooLargeError(WebhookRejectedError):
    code = "payload_too_large"


class UnsupportedMediaTypeError(WebhookRejectedError):
    code = "unsupported_media_type"


class InvalidEventError(WebhookRejectedError):
    code = "invalid_event"


class StripeUnavailableError(SensorBillingError):
    """Stripe could not take the call now (rate limit, conflict, server error, network).

    Safe to retry with the same idempotency key and identifier (docs: error-low-level)."""

    def __init__(
        self, message: str, status: int | None = None, *, stripe_message: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        # Stripe's own words (no class name), for answers that pass them on.
        self.stripe_message = stripe_message


class StripeRefusedError(SensorBillingError):
    """Stripe refused the call for good (400, 401, 402, 403, 404): a person must look."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        code: str | None = None,
        *,
        stripe_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.stripe_message = stripe_message


class StripeSetupConflictError(SensorBillingError):
    """An existing meter or price differs from what the set-up needs, and Stripe does not let
    it be changed (a meter keeps its aggregation; a price keeps its amount and meter)."""


class UnknownEventTypeError(SensorBillingError):
    """`stripe trigger` was asked for an event type it cannot build."""


class ApiUnreachableError(SensorBillingError):
    """The service's HTTP API (for `stripe trigger`) could not be reached."""


class CorrectionNotPossibleError(SensorBillingError):
    """A ledger correction was refused before anything was written: the row is not sent, an
    earlier correction of it is still pending, or Stripe reported a sent row invalid."""


class ResendNotPossibleError(SensorBillingError):
    """A row named for a re-send is not one Stripe left unbilled; nothing was written."""


class OpsRequestError(SensorBillingError):
    """An /ops page refused the request; answered as a page for browsers."""

    code = "ops_request_refused"


class OpsNotSignedInError(OpsRequestError):
    """No valid `Authorization: Bearer` token and no valid session cookie."""

    code = "unauthorized"


class OpsCsrfError(OpsRequestError):
    """A form posted without the CSRF token of the signed-in session."""

    code = "csrf_failed"


class OrganizationNotFoundError(OpsRequestError):
    """No organization has the id asked for (or it is not a UUID)."""

    code = "not_found"


class ApiRequestError(SensorBillingError):
    """A `/v1` request refused before anything was written; `code` names the problem and
    `details` adds what the caller needs to act (rendered into the error object)."""

    code = "invalid_request"

    def __init__(self, message: str, **details: str) -> None:
        super().__init__(message)
        self.details = details


class ServiceKeyRefusedError(ApiRequestError):
    """No `Authorization: Bearer sbk_...`, or a key that is unknown or revoked."""

    code = "unauthorized"


class InvalidJsonBodyError(ApiRequestError):
    code = "invalid_json"


class NoSuchOrganizationError(ApiRequestError):
    code = "organization_not_found"


class IdempotencyKeyReusedError(ApiRequestError):
    """The Idempotency-Key was first used with another method, path or body."""

    code = "idempotency_key_reused"


class IdempotencyKeyInUseError(ApiRequestError):
    """Another request with the same Idempotency-Key is still running; retry it later."""

    code = "idempotency_key_in_use"


class SubscriptionExistsError(ApiRequestError):
    """Checkout for an organization that already has a live subscription: the Billing Portal
    is where it changes or cancels it."""

    code = "subscription_exists"


class CustomerMissingError(ApiRequestError):
    code = "customer_missing"


class CustomerDeletedError(ApiRequestError):
    code = "customer_deleted"


class CheckoutNotConfiguredError(ApiRequestError):
    """No STRIPE_API_KEY, or the Stripe account lacks what `stripe setup` makes."""

    code = "checkout_not_configured"


class NoBillingPeriodError(ApiRequestError):
    """The current billing period was asked for, and the organization has no subscription
    with one (409): ask for a period with `from` and `to` instead."""

    code = "no_current_period"
