"""Products (`/v1/products...`) and prices (`/v1/prices...`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import products
from .auth import require_secret_key
from .pagination import list_page
from .records import Price, Product
from .routes_common import catalog_write, path_id
from .wire import ok, query_form, standin_of, to_response

create_product = catalog_write(lambda state, _, form: products.create_product(state, form))


async def list_products(request: Request) -> Response:
    state = standin_of(request)
    require_secret_key(state, request.headers)
    query = query_form(request)
    found = products.list_products(state, query)
    page = list_page(
        found, query=query, url="/v1/products", id_of=_product_id, render=Product.to_stripe
    )
    return to_response(ok(page))


def _product_id(product: Product) -> str:
    return product.id


async def retrieve_product(request: Request) -> Response:
    state = standin_of(request)
    require_secret_key(state, request.headers)
    return to_response(ok(products.get_product(state, path_id(request)).to_stripe()))


create_price = catalog_write(lambda state, _, form: products.create_price(state, form))


async def list_prices(request: Request) -> Response:
    state = standin_of(request)
    require_secret_key(state, request.headers)
    query = query_form(request)
    found = products.list_prices(state, query, products.lookup_keys_of(request.url.query))
    page = list_page(found, query=query, url="/v1/prices", id_of=_price_id, render=Price.to_stripe)
    return to_response(ok(page))


def _price_id(price: Price) -> str:
    return price.id


async def retrieve_price(request: Request) -> Response:
    state = standin_of(request)
    require_secret_key(state, request.headers)
    return to_response(ok(products.get_price(state, path_id(request)).to_stripe()))


routes = [
    Route("/v1/products", create_product, methods=["POST"]),
    Route("/v1/products", list_products, methods=["GET"]),
    Route("/v1/products/{object_id}", retrieve_product, methods=["GET"]),
    Route("/v1/prices", create_price, methods=["POST"]),
    Route("/v1/prices", list_prices, methods=["GET"]),
    Route("/v1/prices/{object_id}", retrieve_price, methods=["GET"]),
]
