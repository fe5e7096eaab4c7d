"""SQL of the meter worker's sends: claim rows, record what Stripe answered, release pairs.

The worker runs this for many jobs at once on one connection of its own, in autocommit
(`metering/send_ledger.py`); nothing here batches. The (customer, meter) lock is a
session-level advisory lock on that connection: it outlives the claim's statement, lasts
while the job calls Stripe, and is held until released or the session ends (PostgreSQL docs,
functions-admin.html, advisory lock functions), however the worker died. Session locks stack:
a session that takes one twice must release it twice, hence `:held` below. Its key is the
one every other sender takes (`repository.lock_customer_meter`, the stream's batch), so they
exclude each other as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from sensor_billing.db.schema import ReportSource, ReportStatus


@dataclass(frozen=True, slots=True)
class ReportForSend:
    """What the reporter reads of a ledger row it is about to send."""

    id: int
    identifier: str
    event_name: str
    stripe_customer_id: str | None
    value: int
    window_end: datetime
    status: str
    attempts: int
    key_generation: int
    # When it could first have been sent (metering/stale_resend.py).
    organization_id: uuid.UUID | None = None
    created_at: datetime | None = None
    source: str = ReportSource.WINDOW.value
    stale_check_waived: bool = False

    @property
    def sendable(self) -> bool:
        return self.status == ReportStatus.PENDING and self.stripe_customer_id is not None


@dataclass(frozen=True, slots=True)
class ClaimedReport:
    """One identifier's claim (`record_and_claim`).

    `pair_locked`: True when this statement took the pair's lock for this session, False when
    another session holds it, None when it was not tried (not sendable, a pair the session
    held already, or another row of the statement tried it). `row` is None when another
    transaction held the row itself."""

    identifier: str
    pair: str | None
    pair_locked: bool | None
    row: ReportForSend | None


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    """What one send attempt (or the decision not to send) made of a claimed row."""

    report_id: int
    status: ReportStatus
    at: datetime
    attempted: bool = False  # a call went to Stripe: one more attempt, at `at`
    last_error: str | None = None
    last_error_code: str | None = None  # Stripe's code, when Stripe refused the event
    skip_reason: str | None = None
    # 1 after a 5xx: Stripe keeps that answer under the key, the next call needs a new one.
    key_step: int = 0


# One statement, one commit, for what a batch of jobs needs of the ledger at one time:
#
# `recorded`: every outcome of the batch. Only a pending row changes: one that another sender
#   settled meanwhile keeps its verdict.
# `released`: one hold of each pair lock in `:releases` (a pair listed twice, twice): pairs
#   whose jobs' outcomes an earlier statement committed.
# Then the claims, in three steps whose order is the point:
# `candidates`: each row asked for, as the statement's snapshot sees it, to know its pair and
#   whether it looks sendable (pending, with a customer).
# `tried`: the pair's lock for each sendable row, tried without waiting; not for a pair this
#   session holds already (`:held`: the lock would stack), and once per pair within the
#   statement (its first row; the others wait their turn in the worker).
# `locked`: the row itself, FOR UPDATE SKIP LOCKED, after its pair lock was tried. In READ
#   COMMITTED this returns the newest committed version, not the snapshot's (the lock is taken
#   on "the updated version of the row" and the WHERE clause checked again: PostgreSQL docs,
#   transaction-iso.html, Read Committed; SKIP LOCKED skips a row still being changed): a
#   sender that held the pair until just now had committed its outcome before releasing it,
#   so a row it sent reads `sent` here. The row lock ends with the statement; the pair lock
#   stays. A row another transaction has locked (a stream batch, a correction, a meter error
#   verdict being recorded) comes back without its columns and is claimed again later.
# A row whose outcome this statement writes is not claimed by it for sending (its job still
# holds its pair). The last row, without an identifier, is there so that the statement
# always returns one and `released` (and `recorded`) always run.
# A batch without outcomes leaves out `recorded`: without an UPDATE the statement takes no
# lock that waits for a table lock of another transaction (ROW SHARE, not ROW EXCLUSIVE).
_RECORDED = """
recorded AS (
    UPDATE meter_reports AS r
       SET status = o.status,
           attempts = r.attempts + CASE WHEN o.attempted THEN 1 ELSE 0 END,
           last_attempt_at = CASE WHEN o.attempted THEN o.at ELSE r.last_attempt_at END,
           sent_at = CASE WHEN o.status = 'sent' THEN o.at ELSE r.sent_at END,
           last_error = CASE WHEN o.status = 'sent' THEN NULL
                             ELSE coalesce(o.last_error, r.last_error) END,
           last_error_code = CASE WHEN o.status = 'sent' THEN NULL
                                  ELSE coalesce(o.last_error_code, r.last_error_code) END,
           skip_reason = coalesce(o.skip_reason, r.skip_reason),
           key_generation = r.key_generation + o.key_step,
           updated_at = now()
      FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]),
                  CAST(:at AS timestamptz[]), CAST(:attempted AS boolean[]),
                  CAST(:errors AS text[]), CAST(:error_codes AS text[]),
                  CAST(:skip_reasons AS text[]), CAST(:key_steps AS integer[]))
           AS o(id, status, at, attempted, last_error, last_error_code, skip_reason, key_step)
     WHERE r.id = o.id AND r.status = 'pending'
    RETURNING r.id
),"""
_RELEASE_AND_CLAIM = """
released AS MATERIALIZED (
    SELECT count(*) FILTER (WHERE pg_advisory_unlock(hashtextextended(pair, 1))) AS pairs
      FROM unnest(CAST(:releases AS text[])) AS pair
), candidates AS MATERIALIZED (
    SELECT r.id, r.identifier,
           r.stripe_customer_id || '/' || r.event_name AS pair,
           r.status = 'pending' AND r.stripe_customer_id IS NOT NULL AS sendable
      FROM meter_reports r
     WHERE r.identifier = ANY(CAST(:identifiers AS text[]))
), tried AS MATERIALIZED (
    SELECT c.id, c.identifier, c.pair,
           CASE WHEN c.sendable AND c.pair <> ALL(CAST(:held AS text[]))
                     AND row_number() OVER (PARTITION BY c.pair, c.sendable ORDER BY c.id) = 1
                THEN pg_try_advisory_lock(hashtextextended(c.pair, 1))
           END AS pair_locked
      FROM candidates c
), locked AS MATERIALIZED (
    SELECT r.id, r.event_name, r.stripe_customer_id, r.value, r.window_end, r.status,
           r.attempts, r.key_generation, r.organization_id, r.created_at, r.source,
           r.stale_check_waived
      FROM meter_reports r
     WHERE r.id IN (SELECT id FROM tried)
       FOR UPDATE SKIP LOCKED
), claimed AS (
    SELECT t.identifier, t.pair, t.pair_locked, l.id, l.event_name, l.stripe_customer_id,
           l.value, l.window_end, l.status, l.attempts, l.key_generation, l.organization_id,
           l.created_at, l.source, l.stale_check_waived
      FROM tried t
      LEFT JOIN locked l ON l.id = t.id
)
SELECT claimed.* FROM claimed
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM released"""
# Constant text with bound parameters: ruff's S608 only sees the `+`.
RECORD_AND_CLAIM = text(
    "WITH" + _RECORDED + _RELEASE_AND_CLAIM + ", (SELECT count(*) FROM recorded) AS done"  # noqa: S608
)
RELEASE_AND_CLAIM = text("WITH" + _RELEASE_AND_CLAIM)


async def record_and_claim(
    connection: AsyncConnection,
    *,
    outcomes: Sequence[ReportOutcome],
    releases: Sequence[str],
    identifiers: Sequence[str],
    held_pairs: Sequence[str],
) -> list[ClaimedReport]:
    """Write `outcomes`, release `releases`, claim `identifiers` (RECORD_AND_CLAIM), all in one
    autocommit statement on `connection`, whose session then holds every pair lock returned
    True once more: the caller releases each in a later call."""
    parameters: dict[str, object] = {
        "releases": list(releases),
        "identifiers": list(identifiers),
        "held": list(held_pairs),
    }
    statement = RELEASE_AND_CLAIM
    if outcomes:
        statement = RECORD_AND_CLAIM
        parameters |= {
            "ids": [outcome.report_id for outcome in outcomes],
            "statuses": [outcome.status.value for outcome in outcomes],
            "at": [outcome.at for outcome in outcomes],
            "attempted": [outcome.attempted for outcome in outcomes],
            "errors": [outcome.last_error for outcome in outcomes],
            "error_codes": [outcome.last_error_code for outcome in outcomes],
            "skip_reasons": [outcome.skip_reason for outcome in outcomes],
            "key_steps": [outcome.key_step for outcome in outcomes],
        }
    result = await connection.execute(statement, parameters)
    claimed = []
    for record in result:
        if record.identifier is None:
            continue
        row = None
        if record.id is not None:
            row = ReportForSend(
                id=record.id,
                identifier=record.identifier,
                event_name=record.event_name,
                stripe_customer_id=record.stripe_customer_id,
                value=record.value,
                window_end=record.window_end,
                status=record.status,
                attempts=record.attempts,
                key_generation=record.key_generation,
                organization_id=record.organization_id,
                created_at=record.created_at,
                source=record.source,
                stale_check_waived=record.stale_check_waived,
            )
        claimed.append(ClaimedReport(record.identifier, record.pair, record.pair_locked, row))
    return claimed


__all__ = ["ClaimedReport", "ReportForSend", "ReportOutcome", "record_and_claim"]
