"""Everything the stand-in remembers, behind one lock.

uvicorn serves from its own thread while tests read from theirs: every read or write of the
stores below holds `lock` (re-entrant, never held across an `await`). Readers get copies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections import Counter, deque
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from .billing_records import (
    CheckoutSession,
    Invoice,
    PortalSession,
    SnapshotEvent,
    Subscription,
    WebhookEndpoint,
)
from .clock import StandinClock
from .config import EventDestination, StandinConfig
from .faults import FaultInjector, FaultPlan
from .idempotency import IdempotencyStore
from .records import (
    Counters,
    Customer,
    ErrorReport,
    EventDelivery,
    Formula,
    Meter,
    MeterEventRecord,
    MeterEventSession,
    Price,
    Product,
    V2Event,
)

CustomerMeterKey = tuple[str, str]


class StandinState:
    def __init__(
        self,
        api_keys: Iterable[str],
        *,
        config: StandinConfig | None = None,
        faults: FaultPlan | None = None,
    ) -> None:
        self.api_keys = frozenset(api_keys)
        if not self.api_keys:
            raise ValueError("the stand-in needs at least one secret API key to accept")
        self.lock = threading.RLock()
        self.clock = StandinClock()
        self.faults = FaultInjector(faults)
        self.idempotency = IdempotencyStore(self.clock)
        self._config = config or StandinConfig()
        self._clear_stores()

    def _clear_stores(self) -> None:
        self.meters: dict[str, Meter] = {}
        self.customers: dict[str, Customer] = {}
        self.products: dict[str, Product] = {}
        self.prices: dict[str, Price] = {}
        self.events: list[MeterEventRecord] = []
        self.identifier_accepted_at: dict[str, float] = {}
        self.reports: list[ErrorReport] = []
        self.v2_events: dict[str, V2Event] = {}
        self.destination: EventDestination | None = None
        # v2 events created while a destination was set, not yet handed to a delivery task.
        self.undelivered: list[str] = []
        self.deliveries: list[EventDelivery] = []
        self.sessions_by_token: dict[str, MeterEventSession] = {}
        self.counters = Counters()
        self.in_flight: set[CustomerMeterKey] = set()
        self.recent_metering_calls: deque[float] = deque()
        self.checkout_sessions: dict[str, CheckoutSession] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.portal_sessions: dict[str, PortalSession] = {}
        self.invoices: dict[str, Invoice] = {}
        self.webhook_endpoints: dict[str, WebhookEndpoint] = {}
        self.webhook_events: dict[str, SnapshotEvent] = {}
        self.webhook_deliveries: list[EventDelivery] = []
        # Events made but not yet handed to a send (webhook_events.take_outbox).
        self.webhook_outbox: list[str] = []
        # Background sends of webhook events (touched on the stand-in's event loop only).
        self.webhook_tasks: set[asyncio.Task[None]] = set()

    # -- configuration -------------------------------------------------------------------

    @property
    def config(self) -> StandinConfig:
        with self.lock:
            return self._config

    def configure(self, config: StandinConfig) -> None:
        with self.lock:
            self._config = config

    def set_faults(self, plan: FaultPlan) -> None:
        self.faults.configure(plan)

    @property
    def strict_customers(self) -> bool:
        with self.lock:
            if self._config.strict_customers is not None:
                return self._config.strict_customers
            return bool(self.customers)

    def reset(self) -> None:
        """Forget all data, faults, configuration and clock offset; keep the API keys."""
        with self.lock:
            self._clear_stores()
            self._config = StandinConfig()
            self.faults.configure(FaultPlan())
            self.idempotency.clear()
            self.clock.reset()

    def count_fault(self, kind: str) -> None:
        with self.lock:
            faults = self.counters.faults_injected
            faults[kind] = faults.get(kind, 0) + 1

    # -- lookups used by the endpoints (call with `lock` held) ---------------------------

    def active_meter(self, event_name: str) -> Meter | None:
        for meter in self.meters.values():
            if meter.event_name == event_name and meter.status == "active":
                return meter
        return None

    # -- read helpers for tests ----------------------------------------------------------

    def accepted_events(self) -> list[MeterEventRecord]:
        """Every accepted event, in arrival order, valid or not, cancelled or not."""
        with self.lock:
            return [
                dataclasses.replace(event, payload=dict(event.payload)) for event in self.events
            ]

    def error_reports(self) -> list[ErrorReport]:
        with self.lock:
            return list(self.reports)

    def thin_events(self) -> list[V2Event]:
        """Every v2 event (one per error report), oldest first."""
        with self.lock:
            return list(self.v2_events.values())

    def event_deliveries(self) -> list[EventDelivery]:
        with self.lock:
            return list(self.deliveries)

    def counters_snapshot(self) -> Counters:
        with self.lock:
            return dataclasses.replace(
                self.counters, faults_injected=dict(self.counters.faults_injected)
            )

    def identifier_accept_counts(self) -> dict[str, int]:
        """How many times each identifier was accepted; above 1 means billed twice."""
        with self.lock:
            return dict(Counter(event.identifier for event in self.events))

    def accepted_totals(self) -> dict[CustomerMeterKey, Decimal]:
        """Sum of counted values per (customer, event_name), for `sum` meters."""
        totals: dict[CustomerMeterKey, Decimal] = {}
        for event in self._counted_events("sum"):
            key = (event.customer or "", event.event_name)
            totals[key] = totals.get(key, Decimal(0)) + event.numeric_value
        return totals

    def last_values(self) -> dict[CustomerMeterKey, Decimal]:
        """Per (customer, event_name) of a `last` meter: the value with the latest timestamp."""
        latest: dict[CustomerMeterKey, MeterEventRecord] = {}
        for event in self._counted_events("last"):
            key = (event.customer or "", event.event_name)
            held = latest.get(key)
            if held is None or (event.timestamp, event.sequence) > (held.timestamp, held.sequence):
                latest[key] = event
        return {key: event.numeric_value for key, event in latest.items()}

    def _counted_events(self, formula: Formula) -> list[MeterEventRecord]:
        with self.lock:
            return [
                event
                for event in self.events
                if event.counts
                and event.meter_id in self.meters
                and self.meters[event.meter_id].formula == formula
            ]

    def delivered_pairs(self) -> set[tuple[str, str | None]]:
        """(event, endpoint) pairs that an endpoint has answered 2xx."""
        with self.lock:
            return {(d.event_id, d.endpoint) for d in self.webhook_deliveries if d.succeeded}

    def pending_webhooks(self, event: SnapshotEvent) -> int:
        """The endpoints of `event` that still exist and have not answered it 2xx yet."""
        with self.lock:
            delivered = self.delivered_pairs()
            return sum(
                1
                for endpoint_id in event.endpoint_ids
                if endpoint_id in self.webhook_endpoints
                and (event.id, endpoint_id) not in delivered
            )

    def snapshot(self) -> dict[str, Any]:
        """The control API's view (`GET /_standin/state`)."""
        with self.lock:
            return {
                "now": self.clock.now(),
                "clock_frozen": self.clock.frozen,
                "strict_customers": self.strict_customers,
                "config": self._config.model_dump(),
                "faults": self.faults.plan.model_dump(mode="json"),
                "events": [event.to_control() for event in self.events],
                "error_reports": [report.to_control() for report in self.reports],
                "v2_events": [event.to_notification() for event in self.v2_events.values()],
                "event_destination": None
                if self.destination is None
                else {"url": self.destination.url},
                "event_deliveries": [delivery.to_control() for delivery in self.deliveries],
                "counters": {**self.counters.to_control(), "error_reports": len(self.reports)},
                "meters": [meter.to_stripe() for meter in self.meters.values()],
                "customers": [customer.to_stripe() for customer in self.customers.values()],
                "products": [product.to_stripe() for product in self.products.values()],
                "prices": [price.to_stripe() for price in self.prices.values()],
                **self._billing_snapshot(),
            }

    def _billing_snapshot(self) -> dict[str, Any]:
        return {
            "checkout_sessions": [s.to_stripe() for s in self.checkout_sessions.values()],
            "subscriptions": [s.to_stripe(self.prices) for s in self.subscriptions.values()],
            "billing_portal_sessions": [s.to_stripe() for s in self.portal_sessions.values()],
            "invoices": [i.to_stripe(self.prices) for i in self.invoices.values()],
            "webhook_endpoints": [e.to_stripe() for e in self.webhook_endpoints.values()],
            "webhook_events": [
                e.to_stripe(self.pending_webhooks(e)) for e in self.webhook_events.values()
            ],
            "webhook_deliveries": [d.to_control() for d in self.webhook_deliveries],
        }
