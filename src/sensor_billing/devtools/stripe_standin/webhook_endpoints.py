"""Webhook endpoints: where the snapshot events go (webhook_events.py).

Stripe rules followed (docs: api/webhook_endpoints/create, .../object):
- `url` and `enabled_events` are required; `enabled_events` lists event types, `*` for all;
- the endpoint's signing `secret` (`whsec_...`) is returned only at creation;
- a deleted endpoint receives nothing more.

Assumed where the docs are silent: an endpoint's events are rendered at `API_VERSION` (basil),
so an `api_version` other than that is refused rather than accepted and not honoured; `url`
must be http(s) (test mode reaches loopback here);
event type names are not checked against Stripe's catalogue. The control API registers an
endpoint with a secret the caller already holds (dev mode and tests know their `whsec_`).
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit

from stripe.params import WebhookEndpointCreateParams, WebhookEndpointListParams

from .billing_records import API_VERSION, WebhookEndpoint
from .errors import invalid_param, missing_param, no_such
from .forms import (
    Form,
    optional_map,
    optional_str,
    refuse_unmodelled,
    required_str,
    sub_form,
)
from .pagination import PAGING_PARAMS
from .records import new_id
from .state import StandinState
from .stripe_params import stripe_takes

_PARAMS = frozenset({"url", "enabled_events", "description", "metadata", "api_version", "expand"})
_EVENT_TYPE = re.compile(r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)+)$")
SECRET_PATTERN = r"^whsec_\S+$"  # noqa: S105 - the shape of a secret, not one


def create_endpoint(state: StandinState, form: Form) -> WebhookEndpoint:
    refuse_unmodelled(form, _PARAMS, stripe_takes(WebhookEndpointCreateParams))
    url = required_str(form, "url")
    listed = sub_form(form, "enabled_events")
    if not listed:
        raise missing_param("enabled_events")
    events = [value for _, value in sorted(listed.items()) if isinstance(value, str)]
    api_version = optional_str(form, "api_version")
    if api_version not in (None, API_VERSION):
        raise invalid_param(
            "api_version",
            f"The Stripe stand-in renders events at {API_VERSION} only, not {api_version}.",
        )
    return register_endpoint(
        state,
        url=url,
        secret="whsec_" + secrets.token_urlsafe(24),
        enabled_events=events,
        description=optional_str(form, "description"),
        metadata=optional_map(form, "metadata") or {},
        api_version=api_version,
    )


def register_endpoint(
    state: StandinState,
    *,
    url: str,
    secret: str,
    enabled_events: list[str],
    description: str | None = None,
    metadata: dict[str, str] | None = None,
    api_version: str | None = None,
) -> WebhookEndpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_param("url", "Invalid URL: must be an http(s) URL.", code="url_invalid")
    for index, event_type in enumerate(enabled_events):
        if not _EVENT_TYPE.match(event_type):
            raise invalid_param(f"enabled_events[{index}]", f"Invalid event type: {event_type}")
    if not re.match(SECRET_PATTERN, secret):
        raise invalid_param("secret", "A webhook signing secret starts with whsec_.")
    with state.lock:
        endpoint = WebhookEndpoint(
            id=new_id("we_", 24),
            url=url,
            secret=secret,
            enabled_events=list(enabled_events),
            created=int(state.clock.now()),
            api_version=api_version,
            description=description,
            metadata=dict(metadata or {}),
        )
        state.webhook_endpoints[endpoint.id] = endpoint
        return endpoint


def get_endpoint(state: StandinState, endpoint_id: str) -> WebhookEndpoint:
    with state.lock:
        endpoint = state.webhook_endpoints.get(endpoint_id)
        if endpoint is None:
            raise no_such("webhook_endpoint", endpoint_id)
        return endpoint


def delete_endpoint(state: StandinState, endpoint_id: str) -> WebhookEndpoint:
    with state.lock:
        endpoint = get_endpoint(state, endpoint_id)
        del state.webhook_endpoints[endpoint_id]
        return endpoint


def list_endpoints(state: StandinState, query: Form) -> list[WebhookEndpoint]:
    refuse_unmodelled(query, PAGING_PARAMS, stripe_takes(WebhookEndpointListParams))
    with state.lock:
        return list(state.webhook_endpoints.values())[::-1]
