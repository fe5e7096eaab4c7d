"""Billing Portal sessions: a short-lived link where a customer manages their subscription.

Stripe rules followed (docs: api/customer_portal/sessions/create, .../object):
- `customer` is required and names an existing customer; `return_url` is optional, a valid
  URL (`url_invalid`, "Not a valid URL");
- without `configuration` the session uses the account's default configuration;
- the session answers `id` (`bps_...`), `url`, `customer`, `return_url`, `created`,
  `configuration` (`bpc_...`), `livemode`, `locale`, `flow`, `on_behalf_of`.

Assumed where the docs are silent: the account has a default configuration
(`DEFAULT_CONFIGURATION`; a test-mode account without one is refused at Stripe); another
configuration id is refused as missing; `flow_data` and `on_behalf_of` are not modelled and
refused saying so; the session's `url` opens a stand-in page that links back to
`return_url`.
"""

from __future__ import annotations

from stripe.params.billing_portal import SessionCreateParams

from .billing_records import PortalSession
from .checkout import checked_url
from .errors import no_such, no_such_reference
from .forms import Form, optional_str, refuse_unmodelled, required_str
from .records import new_id
from .state import StandinState
from .stripe_params import stripe_takes

DEFAULT_CONFIGURATION = "bpc_standin_default"
_PARAMS = frozenset({"customer", "return_url", "configuration", "locale", "expand"})


def create_portal_session(state: StandinState, form: Form, base_url: str) -> PortalSession:
    refuse_unmodelled(form, _PARAMS, stripe_takes(SessionCreateParams))
    customer_id = required_str(form, "customer")
    return_url = checked_url(form, "return_url", required=False)
    configuration = optional_str(form, "configuration") or DEFAULT_CONFIGURATION
    if configuration != DEFAULT_CONFIGURATION:
        raise no_such_reference("billing_portal.configuration", configuration, "configuration")
    with state.lock:
        customer = state.customers.get(customer_id)
        if customer is None or customer.deleted:
            raise no_such_reference("customer", customer_id, "customer")
        session_id = new_id("bps_", 24)
        session = PortalSession(
            id=session_id,
            customer=customer_id,
            created=int(state.clock.now()),
            configuration=configuration,
            return_url=return_url,
            locale=optional_str(form, "locale"),
            url=f"{base_url.rstrip('/')}/p/session/{session_id}",
        )
        state.portal_sessions[session.id] = session
        return session


def get_portal_session(state: StandinState, session_id: str) -> PortalSession:
    with state.lock:
        session = state.portal_sessions.get(session_id)
        if session is None:
            raise no_such("billing_portal.session", session_id)
        return session
