"""Checkout Sessions in subscription mode: created, read, expired, and completed as a customer
paying on Stripe's page would complete them.

Stripe rules followed (docs: api/checkout/sessions/create, .../expire, .../object):
- `mode` is required; `success_url` is required for the hosted page (stripe-node#1944: only
  `ui_mode=embedded` does without it), must be a valid URL (`url_invalid`, "Not a valid URL")
  of at most 5000 characters; so must `cancel_url`;
- `line_items[n][price]` names an existing, active price ("The price specified is inactive.
  This field only accepts active prices."); a metered price takes no quantity ("Quantity
  should not be specified where usage_type is `metered`. Remove quantity from
  `line_items[0]`"), a licensed one needs it ("Quantity is required. Add `quantity` to
  `line_items[0]`"), at least 1; subscription mode takes at most 20 recurring line items;
- `customer` names an existing customer; without one, completing the session creates one
  (`customer_creation` is `always` in subscription mode);
- the list (api/checkout/sessions/list) is newest first and filters by `customer` ("Only
  return the Checkout Sessions for the Customer specified"), `status` (`open`, `complete`,
  `expired`) and `created`; `subscription` returns the session that made that subscription;
- a session expires 24 hours after creation; only an open session can be expired ("Only
  Checkout Sessions with a status in ["open"] can be expired. This Checkout Session has a
  status of `complete`."); the `url` is null once the session is no longer open;
- completing it creates the subscription (status `active`, one item per line item, metadata
  from `subscription_data[metadata]`) and sets the session `complete` with `subscription` and
  `customer_details` ("the customer details including the customer's tax exempt status and
  the customer's tax IDs", api/checkout/sessions/object; null while open).

Assumed where the docs are silent: only `mode=subscription` and the hosted page are modelled
(other modes and `ui_mode`s, and parameters the stand-in does not model, are refused saying so,
so a test never relies on a parameter ignored in silence; forms.refuse_unmodelled); line items
with different currencies or billing intervals are refused with the stand-in's own wording;
`client_reference_id` is at most 200 characters; an expired session is marked so when next
read or listed, with its `checkout.session.expired` event dated at its `expires_at`; the first
invoice a new subscription gets at Stripe is not modelled; the page collects no address, phone
or tax id, so a completed session's `customer_details` holds the customer's own name and email.
Completing sends `customer.created` (when the session made the customer),
`checkout.session.completed`, then `customer.subscription.created`.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlsplit

from stripe.params.checkout import (
    SessionCreateParams,
    SessionCreateParamsLineItem,
    SessionCreateParamsSubscriptionData,
    SessionListParams,
)

from .billing_records import CheckoutLineItem, CheckoutSession
from .errors import InvalidRequestError, invalid_param, missing_param, no_such, no_such_reference
from .forms import Form, optional_map, optional_str, refuse_unmodelled, required_str, sub_form
from .pagination import PAGING_PARAMS, created_filter
from .records import Customer, Price, new_id
from .state import StandinState
from .stripe_params import stripe_takes
from .subscriptions import start_subscription, subscription_snapshot
from .webhook_events import emit

SESSION_LIFETIME_SECONDS = 24 * 3600
MAX_URL_LENGTH = 5000
MAX_RECURRING_LINE_ITEMS = 20
MAX_CLIENT_REFERENCE_LENGTH = 200
_PARAMS = frozenset(
    {
        "mode",
        "customer",
        "line_items",
        "success_url",
        "cancel_url",
        "client_reference_id",
        "metadata",
        "subscription_data",
        "ui_mode",
        "expand",
    }
)
_LINE_ITEM_PARAMS = frozenset({"price", "quantity"})
_SUBSCRIPTION_DATA_PARAMS = frozenset({"metadata"})


def create_session(state: StandinState, form: Form, base_url: str) -> CheckoutSession:
    refuse_unmodelled(form, _PARAMS, stripe_takes(SessionCreateParams))
    _check_mode(form)
    success_url = checked_url(form, "success_url", required=True)
    assert success_url is not None
    cancel_url = checked_url(form, "cancel_url", required=False)
    reference = optional_str(form, "client_reference_id")
    if reference is not None and len(reference) > MAX_CLIENT_REFERENCE_LENGTH:
        raise invalid_param(
            "client_reference_id",
            f"client_reference_id must be at most {MAX_CLIENT_REFERENCE_LENGTH} characters.",
        )
    subscription_data = sub_form(form, "subscription_data") or {}
    refuse_unmodelled(
        subscription_data,
        _SUBSCRIPTION_DATA_PARAMS,
        stripe_takes(SessionCreateParamsSubscriptionData),
        within="subscription_data",
    )
    customer_id = optional_str(form, "customer")
    with state.lock:
        if customer_id is not None:
            customer = state.customers.get(customer_id)
            if customer is None or customer.deleted:
                raise no_such_reference("customer", customer_id, "customer")
        line_items, prices = _line_items(state, form)
        now = int(state.clock.now())
        session_id = new_id("cs_test_a1", 56)
        session = CheckoutSession(
            id=session_id,
            created=now,
            expires_at=now + SESSION_LIFETIME_SECONDS,
            customer=customer_id,
            line_items=line_items,
            currency=prices[0].currency,
            amount_total=sum(
                _line_amount(price, item) for price, item in zip(prices, line_items, strict=True)
            ),
            success_url=success_url,
            cancel_url=cancel_url,
            client_reference_id=reference,
            metadata=optional_map(form, "metadata") or {},
            subscription_metadata=optional_map(subscription_data, "metadata") or {},
            url=f"{base_url.rstrip('/')}/c/pay/{session_id}",
        )
        state.checkout_sessions[session.id] = session
        return session


def _check_mode(form: Form) -> None:
    mode = required_str(form, "mode")
    if mode in ("payment", "setup"):
        raise invalid_param("mode", f"The stand-in models mode=subscription only, not {mode}.")
    if mode != "subscription":
        raise invalid_param("mode", "Invalid mode: must be one of payment, setup or subscription")
    ui_mode = optional_str(form, "ui_mode")
    if ui_mode not in (None, "hosted"):
        raise invalid_param("ui_mode", f"The stand-in models the hosted page only, not {ui_mode}.")


def checked_url(form: Form, name: str, *, required: bool) -> str | None:
    """A URL parameter as Stripe checks it: http(s), at most 5000 characters."""
    value = required_str(form, name) if required else optional_str(form, name)
    if value is None:
        return None
    if len(value) > MAX_URL_LENGTH:
        raise invalid_param(name, "Invalid URL: URL must be 5000 characters or less.")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_param(name, "Not a valid URL", code="url_invalid")
    return value


def _line_items(state: StandinState, form: Form) -> tuple[list[CheckoutLineItem], list[Price]]:
    raw = sub_form(form, "line_items")
    if not raw:
        raise missing_param("line_items")
    positions = sorted(raw, key=lambda key: int(key) if key.isdigit() else -1)
    if len(positions) > MAX_RECURRING_LINE_ITEMS:
        raise invalid_param(
            "line_items",
            f"You can only have up to {MAX_RECURRING_LINE_ITEMS} recurring line items in "
            "subscription mode.",
        )
    items, prices = [], []
    for index, key in enumerate(positions):
        where = f"line_items[{index}]"
        if key != str(index):
            raise InvalidRequestError(f"Invalid array: {where} is missing.", param="line_items")
        entry = sub_form(raw, key) or {}
        refuse_unmodelled(
            entry, _LINE_ITEM_PARAMS, stripe_takes(SessionCreateParamsLineItem), within=where
        )
        price = _active_price(state, required_str(entry, "price", param=f"{where}[price]"), where)
        items.append(CheckoutLineItem(price.id, _quantity(entry, price, where)))
        prices.append(price)
    for price in prices[1:]:
        if price.currency != prices[0].currency:
            raise invalid_param("line_items", "All prices in a session must share one currency.")
        if (price.interval, price.interval_count) != (prices[0].interval, prices[0].interval_count):
            raise invalid_param(
                "line_items", "All recurring prices in a session must share one billing interval."
            )
    return items, prices


def _active_price(state: StandinState, price_id: str, where: str) -> Price:
    price = state.prices.get(price_id)
    if price is None:
        raise no_such_reference("price", price_id, f"{where}[price]")
    if not price.active:
        raise invalid_param(
            f"{where}[price]",
            "The price specified is inactive. This field only accepts active prices.",
        )
    return price


def _quantity(entry: Form, price: Price, where: str) -> int | None:
    raw = optional_str(entry, "quantity", param=f"{where}[quantity]")
    if price.usage_type == "metered":
        if raw is not None:
            raise invalid_param(
                f"{where}[quantity]",
                "Quantity should not be specified where usage_type is `metered`. Remove "
                f"quantity from `{where}`",
            )
        return None
    if raw is None:
        raise invalid_param(
            f"{where}[quantity]", f"Quantity is required. Add `quantity` to `{where}`"
        )
    try:
        quantity = int(raw)
    except ValueError:
        raise invalid_param(
            f"{where}[quantity]", f"Invalid integer: {raw}", code="parameter_invalid_integer"
        ) from None
    if quantity < 1:
        raise invalid_param(f"{where}[quantity]", "This value must be greater than or equal to 1.")
    return quantity


def _line_amount(price: Price, item: CheckoutLineItem) -> int:
    """What the session charges now: licensed items; metered usage is billed later."""
    if item.quantity is None:
        return 0
    exact = price.unit_amount_decimal * item.quantity
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def get_session(state: StandinState, session_id: str) -> CheckoutSession:
    with state.lock:
        session = state.checkout_sessions.get(session_id)
        if session is None:
            raise no_such("checkout.session", session_id)
        if session.status == "open" and state.clock.now() >= session.expires_at:
            _expire(state, session, at=session.expires_at)
        return session


SESSION_STATUSES = ("open", "complete", "expired")
_LIST_PARAMS = PAGING_PARAMS | {"customer", "status", "created", "subscription"}


def list_sessions(state: StandinState, query: Form) -> list[CheckoutSession]:
    """The sessions the filters name, newest first; one past its `expires_at` is expired first
    (as a read would), so `status=open` never lists a session that can no longer be paid."""
    refuse_unmodelled(query, _LIST_PARAMS, stripe_takes(SessionListParams))
    made_in_range = created_filter(query)
    customer = optional_str(query, "customer")
    subscription = optional_str(query, "subscription")
    status = optional_str(query, "status")
    if status is not None and status not in SESSION_STATUSES:
        raise invalid_param(
            "status", f"Invalid status: must be one of {', '.join(SESSION_STATUSES)}"
        )
    with state.lock:
        found = [
            get_session(state, session.id)
            for session in state.checkout_sessions.values()
            if (customer is None or session.customer == customer)
            and (subscription is None or session.subscription == subscription)
            and made_in_range(session.created)
        ]
    return [session for session in found if status is None or session.status == status][::-1]


def expire_session(state: StandinState, session_id: str) -> CheckoutSession:
    with state.lock:
        session = get_session(state, session_id)
        if session.status != "open":
            raise InvalidRequestError(
                'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout '
                f"Session has a status of `{session.status}`."
            )
        _expire(state, session)
        return session


def _expire(state: StandinState, session: CheckoutSession, at: int | None = None) -> None:
    session.status = "expired"
    emit(state, "checkout.session.expired", session.to_stripe(), created=at)


def complete_session(state: StandinState, session_id: str) -> CheckoutSession:
    """What paying on the hosted page does. Refuses a session that is not open."""
    with state.lock:
        session = get_session(state, session_id)
        if session.status != "open":
            raise SessionNotOpenError(session.id, session.status)
        if session.customer is None:
            customer = Customer(id=new_id("cus_", 14), created=int(state.clock.now()))
            state.customers[customer.id] = customer
            session.customer = customer.id
            emit(state, "customer.created", customer.to_stripe())
        subscription = start_subscription(
            state,
            customer=session.customer,
            line_items=session.line_items,
            currency=session.currency,
            metadata=session.subscription_metadata,
        )
        session.status = "complete"
        session.subscription = subscription.id
        session.customer_details = _customer_details(state.customers[session.customer])
        emit(state, "checkout.session.completed", session.to_stripe())
        emit(state, "customer.subscription.created", subscription_snapshot(state, subscription))
        return session


def _customer_details(customer: Customer) -> dict[str, object]:
    """What the hosted page collects, as the session shows it once complete (the recorded
    basil-era session in tests/fixtures/stripe): here, the customer's own name and email."""
    return {
        "address": None,
        "business_name": None,
        "email": customer.email,
        "individual_name": None,
        "name": customer.name,
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
    }


class SessionNotOpenError(Exception):
    def __init__(self, session_id: str, status: str) -> None:
        super().__init__(f"Checkout Session {session_id} is {status}, not open.")
        self.status = status
