"""Injected faults, by default on the metering endpoints (v1 meter events, v2 stream).

Each request of a targeted endpoint group draws once from a seeded generator, so a run with the
same plan and the same request order injects the same faults. A fault is infrastructure, never
Stripe's answer: it is not saved by the idempotency layer. With `recorded_before_*` the request
executes first (its real answer is saved for replays) and only the acknowledgement is lost: the
classic double-billing trap, where the client cannot tell "not recorded" from "recorded".
`invalid_request` is the one fault shaped as a refusal (400 `invalid_request_error`): Stripe
refusing a call before it executes, e.g. a Checkout Session it will not create.

`targets` names the endpoint groups a plan applies to (`FaultTarget`); the default keeps the
metering endpoints only, so a plan set for metering never breaks set-up calls.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FaultKind(StrEnum):
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    DROPPED_CONNECTION = "dropped_connection"
    INVALID_REQUEST = "invalid_request"


class FaultTarget(StrEnum):
    """Endpoint groups a fault plan can apply to."""

    METERING = "metering"  # v1 meter events, the v2 stream, v2 event fetches
    CUSTOMERS = "customers"  # /v1/customers writes
    CHECKOUT = "checkout"  # /v1/checkout/sessions create and expire
    BILLING_PORTAL = "billing_portal"  # /v1/billing_portal/sessions
    SUBSCRIPTIONS = "subscriptions"  # /v1/subscriptions reads, update, cancel
    INVOICES = "invoices"  # /v1/invoices reads, create_preview
    EVENTS = "events"  # /v1/events reads


class FaultPlan(BaseModel):
    """Probabilities (0..1) per request; they must add up to at most 1."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_limited: float = Field(0.0, ge=0.0, le=1.0)
    server_error: float = Field(0.0, ge=0.0, le=1.0)
    timeout: float = Field(0.0, ge=0.0, le=1.0)
    dropped_connection: float = Field(0.0, ge=0.0, le=1.0)
    invalid_request: float = Field(0.0, ge=0.0, le=1.0)
    recorded_before_server_error: bool = False
    recorded_before_timeout: bool = False
    recorded_before_dropped_connection: bool = False
    timeout_seconds: float = Field(2.0, gt=0.0, le=120.0)
    seed: int = 0
    targets: tuple[FaultTarget, ...] = (FaultTarget.METERING,)

    @model_validator(mode="after")
    def _rates_are_a_distribution(self) -> Self:
        rates = (
            self.rate_limited,
            self.server_error,
            self.timeout,
            self.dropped_connection,
            self.invalid_request,
        )
        if sum(rates) > 1.0:
            raise ValueError("fault rates add up to more than 1")
        return self


@dataclass(frozen=True)
class FaultDecision:
    kind: FaultKind
    recorded_before: bool
    timeout_seconds: float


class FaultInjector:
    def __init__(self, plan: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self._plan = plan or FaultPlan()
        self._random = self._generator(self._plan.seed)

    @staticmethod
    def _generator(seed: int) -> random.Random:
        # Reproducible runs are the point here, not unpredictability.
        return random.Random(seed)  # noqa: S311

    @property
    def plan(self) -> FaultPlan:
        with self._lock:
            return self._plan

    def configure(self, plan: FaultPlan) -> None:
        with self._lock:
            self._plan = plan
            self._random = self._generator(plan.seed)

    def draw(self, target: FaultTarget) -> FaultDecision | None:
        with self._lock:
            plan = self._plan
            if target not in plan.targets:
                return None
            roll = self._random.random()
        threshold = 0.0
        for kind, rate, recorded in (
            (FaultKind.RATE_LIMITED, plan.rate_limited, False),
            (FaultKind.SERVER_ERROR, plan.server_error, plan.recorded_before_server_error),
            (FaultKind.TIMEOUT, plan.timeout, plan.recorded_before_timeout),
            (
                FaultKind.DROPPED_CONNECTION,
                plan.dropped_connection,
                plan.recorded_before_dropped_connection,
            ),
            (FaultKind.INVALID_REQUEST, plan.invalid_request, False),
        ):
            threshold += rate
            if roll < threshold:
                return FaultDecision(kind, recorded, plan.timeout_seconds)
        return None
