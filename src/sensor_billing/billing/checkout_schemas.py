"""The bodies and answers of the checkout and portal endpoints (/v1)."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# Stripe takes URLs of up to 5000 characters; a return address is far shorter.
MAX_URL_LENGTH = 2048


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc or any(c.isspace() for c in value):
        raise ValueError("must be an http:// or https:// URL")
    return value


HttpUrlText = Annotated[
    str,
    Field(min_length=1, max_length=MAX_URL_LENGTH, examples=["https://app.example.com/billing"]),
    AfterValidator(_http_url),
]


class CheckoutSessionRequest(BaseModel):
    # An unknown field is refused, as Stripe refuses an unknown parameter: a misspelt one
    # never passes silently.
    model_config = ConfigDict(extra="forbid")

    success_url: HttpUrlText = Field(
        description=(
            "Where Stripe sends the customer after paying; `{CHECKOUT_SESSION_ID}` in it is "
            "replaced by the session's id"
        )
    )
    cancel_url: HttpUrlText = Field(description="Where Stripe sends the customer who goes back")


class PortalSessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    return_url: HttpUrlText = Field(description="Where the portal's link back leads")


class SessionAnswer(BaseModel):
    id: str = Field(description="The Stripe session's id (cs_... or bps_...)")
    url: str = Field(description="Send the customer's browser here")
    organization_id: uuid.UUID
    customer_id: str = Field(description="The organization's Stripe customer (cus_...)")


class CheckoutSessionAnswer(SessionAnswer):
    """A Stripe Checkout Session for a subscription with the two metered prices."""


class PortalSessionAnswer(SessionAnswer):
    """A Stripe Billing Portal session for the organization's customer."""
