"""`/v1/subscriptions...`: the subscriptions completed Checkout Sessions started."""

from __future__ import annotations

from starlette.routing import Route

from . import subscriptions
from .faults import FaultTarget
from .routes_common import object_read, path_id

retrieve_subscription = object_read(
    lambda state, request: subscriptions.subscription_snapshot(
        state, subscriptions.get_subscription(state, path_id(request))
    ),
    fault_target=FaultTarget.SUBSCRIPTIONS,
)

routes = [
    Route("/v1/subscriptions/{object_id}", retrieve_subscription, methods=["GET"]),
]
