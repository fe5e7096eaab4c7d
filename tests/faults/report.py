"""Print the counts of the last fault-test run as the table rows of docs/reliability.md.

.venv/bin/python -m tests.faults.report
"""

from __future__ import annotations

import json
from typing import Any

from tests.faults.conftest import ARTIFACT

# Counts shown in the table; anything else stays in the JSON.
SHOWN = (
    "readings",
    "windows",
    "events_accepted",
    "meter_calls",
    "meter_call_answers",
    "idempotent_replays",
    "duplicates_refused",
    "jobs_enqueued",
    "jobs_revived",
    "jobs_enqueued_by_the_second_sweep",
    "jobs_in_queue_for_the_event",
    "sweeps_failed",
    "events",
    "deliveries",
    "answers",
    "redeliveries",
    "processed",
    "duplicates",
    "effects_applied",
    "state_changes",
    "redis_restarts",
    "rows_pending_at_restart",
    "connections_terminated",
    "connections_dropped",
    "outages",
    "kills",
    "calls_in_flight_at_kills",
    "accepted_not_committed_at_kill",
    "seconds_from_delivery_to_kill",
    "requests_that_waited_for_the_pool_timeout",
)


def describe(counts: dict[str, Any]) -> str:
    parts = []
    for name in SHOWN:
        if name in counts:
            value = counts[name]
            if isinstance(value, dict):
                value = ", ".join(f"{k}: {v}" for k, v in sorted(value.items()))
                value = f"({value})"
            parts.append(f"{name.replace('_', ' ')} {value}")
    return "; ".join(parts)


def main() -> None:
    runs: dict[str, dict[str, Any]] = json.loads(ARTIFACT.read_text())["tests"]
    for test, counts in runs.items():
        print(f"| {counts['fault']} | `{test}` | {counts['seconds']} s | {describe(counts)} |")


if __name__ == "__main__":
    main()
