"""Which parameters Stripe's API takes for a call, as the official SDK declares them.

The SDK's params types (`stripe.params...CreateParams`) are generated from Stripe's OpenAPI
spec; their keys, less the SDK's own request options (`stripe.RequestOptions`: api_key,
idempotency_key, headers, ...), are the call's parameters. The stand-in refuses a parameter it
does not model in two ways: one Stripe takes is refused saying the stand-in does not model it;
one Stripe does not take is `parameter_unknown`, as Stripe answers (forms.refuse_unmodelled).
"""

from __future__ import annotations

import stripe

_REQUEST_OPTIONS = frozenset(stripe.RequestOptions.__annotations__)


def stripe_takes(params_type: type) -> frozenset[str]:
    return frozenset(params_type.__annotations__) - _REQUEST_OPTIONS
