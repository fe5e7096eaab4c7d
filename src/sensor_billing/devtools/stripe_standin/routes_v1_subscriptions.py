"""`/v1/subscriptions...` (started by completed Checkout Sessions), `GET /v1/invoices/{id}` and
`POST /v1/invoices/create_preview`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import invoice_preview, invoices, subscriptions
from .auth import require_secret_key
from .billing_records import Subscription
from .expansion import expand_in_list
from .faults import FaultTarget
from .pagination import list_page
from .routes_common import catalog_write, object_read, path_id
from .webhook_events import send_outbox_in_background
from .wire import ok, query_form, standin_of, to_response

retrieve_subscription = object_read(
    lambda state, request: subscriptions.subscription_snapshot(
        state, subscriptions.get_subscription(state, path_id(request))
    ),
    fault_target=FaultTarget.SUBSCRIPTIONS,
)
update_subscription = catalog_write(
    lambda state, request, form: subscriptions.subscription_snapshot(
        state, subscriptions.update_subscription(state, path_id(request), form)
    ),
    fault_target=FaultTarget.SUBSCRIPTIONS,
    after=send_outbox_in_background,
    answers="subscription",
)
cancel_subscription = catalog_write(
    lambda state, request, form: subscriptions.subscription_snapshot(
        state, subscriptions.cancel_subscription(state, path_id(request), form)
    ),
    fault_target=FaultTarget.SUBSCRIPTIONS,
    after=send_outbox_in_background,
    answers="subscription",
)


async def list_subscriptions(request: Request) -> Response:
    state = standin_of(request)
    require_secret_key(state, request.headers)
    query = query_form(request)
    found = subscriptions.list_subscriptions(state, query)
    page = list_page(
        found,
        query=query,
        url="/v1/subscriptions",
        id_of=_subscription_id,
        render=lambda subscription: subscriptions.subscription_snapshot(state, subscription),
        expand=lambda page: expand_in_list(state, "subscription", page, query),
    )
    return to_response(ok(page))


def _subscription_id(subscription: Subscription) -> str:
    return subscription.id


retrieve_invoice = object_read(
    lambda state, request: invoices.get_invoice(state, path_id(request)).to_stripe(state.prices),
    fault_target=FaultTarget.INVOICES,
)

preview_invoice = catalog_write(
    lambda state, _, form: invoice_preview.preview_invoice(state, form),
    fault_target=FaultTarget.INVOICES,
    answers="invoice",
)

routes = [
    Route("/v1/subscriptions", list_subscriptions, methods=["GET"]),
    Route("/v1/subscriptions/{object_id}", retrieve_subscription, methods=["GET"]),
    Route("/v1/subscriptions/{object_id}", update_subscription, methods=["POST"]),
    Route("/v1/subscriptions/{object_id}", cancel_subscription, methods=["DELETE"]),
    Route("/v1/invoices/create_preview", preview_invoice, methods=["POST"]),
    Route("/v1/invoices/{object_id}", retrieve_invoice, methods=["GET"]),
]
