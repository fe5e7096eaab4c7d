"""Meters (`/v1/billing/meters...`, with event summaries) and customers (`/v1/customers...`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import catalog
from .auth import require_secret_key
from .faults import FaultTarget
from .forms import optional_str
from .pagination import list_page
from .records import Customer, Meter
from .routes_common import catalog_write, path_id
from .summaries import event_summaries
from .wire import ok, query_form, standin_of, to_response

create_meter = catalog_write(lambda state, _, form: catalog.create_meter(state, form))


deactivate_meter = catalog_write(
    lambda state, request, _: catalog.deactivate_meter(state, path_id(request))
)


async def list_meters(request: Request) -> Response:
    state = standin_of(request)
    require_secret_key(state, request.headers)
    query = query_form(request)
    meters = catalog.list_meters(state, optional_str(query, "status"))
    return to_response(
        ok(
            list_page(
                meters,
                query=query,
                url="/v1/billing/meters",
                id_of=_meter_id,
                render=Meter.to_stripe,
            )
        )
    )


def _meter_id(meter: Meter) -> str:
    return meter.id


async def retrieve_meter(request: Request) -> Response:
    state = standin_of(request)
    require_secret_key(state, request.headers)
    return to_response(ok(catalog.get_meter(state, path_id(request)).to_stripe()))


async def list_event_summaries(request: Request) -> Response:
    state = standin_of(request)
    require_secret_key(state, request.headers)
    meter = catalog.get_meter(state, path_id(request))
    query = query_form(request)
    summaries = event_summaries(state, meter, query)
    page = list_page(
        summaries,
        query=query,
        url=f"/v1/billing/meters/{meter.id}/event_summaries",
        id_of=lambda summary: str(summary["id"]),
        render=dict,
    )
    return to_response(ok(page))


create_customer = catalog_write(
    lambda state, _, form: catalog.create_customer(state, form),
    fault_target=FaultTarget.CUSTOMERS,
)
update_customer = catalog_write(
    lambda state, request, form: catalog.update_customer(state, path_id(request), form),
    fault_target=FaultTarget.CUSTOMERS,
)


async def retrieve_customer(request: Request) -> Response:
    state = standin_of(request)
    require_secret_key(state, request.headers)
    return to_response(ok(catalog.get_customer(state, path_id(request)).to_stripe()))


async def delete_customer(request: Request) -> Response:
    state = standin_of(request)
    require_secret_key(state, request.headers)
    return to_response(ok(catalog.delete_customer(state, path_id(request)).to_stripe()))


async def list_customers(request: Request) -> Response:
    state = standin_of(request)
    require_secret_key(state, request.headers)
    query = query_form(request)
    customers = catalog.list_customers(state)
    return to_response(
        ok(
            list_page(
                customers,
                query=query,
                url="/v1/customers",
                id_of=_customer_id,
                render=Customer.to_stripe,
            )
        )
    )


def _customer_id(customer: Customer) -> str:
    return customer.id


routes = [
    Route("/v1/billing/meters", create_meter, methods=["POST"]),
    Route("/v1/billing/meters", list_meters, methods=["GET"]),
    Route("/v1/billing/meters/{object_id}", retrieve_meter, methods=["GET"]),
    Route("/v1/billing/meters/{object_id}/deactivate", deactivate_meter, methods=["POST"]),
    Route("/v1/billing/meters/{object_id}/event_summaries", list_event_summaries, methods=["GET"]),
    Route("/v1/customers", create_customer, methods=["POST"]),
    Route("/v1/customers", list_customers, methods=["GET"]),
    Route("/v1/customers/{object_id}", retrieve_customer, methods=["GET"]),
    Route("/v1/customers/{object_id}", update_customer, methods=["POST"]),
    Route("/v1/customers/{object_id}", delete_customer, methods=["DELETE"]),
]
