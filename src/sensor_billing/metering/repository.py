"""SQL for the usage ledger. Nothing here commits: the caller's unit of work does."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Table,
    any_,
    bindparam,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from sensor_billing.db.schema import (
    MeterReport,
    Organization,
    ReportSource,
    ReportStatus,
)

# One closer at a time across all workers: two would measure the same windows twice (the
# ledger key would keep one row each, but the work and the locks would be doubled).
CLOSE_WINDOWS_LOCK = 0x5B_C105E

# Metered organizations, in every statement below: a Stripe customer that is not deleted.
# A new organization starts at its earliest reading in a window Stripe still accepts: one whose
# last second (the event timestamp) is at or after `sendable_from`, which is the window holding
# the instant just before `sendable_from` + 1 s. Readings of that window received before
# `sendable_from` itself are billed with it, not dropped.
START_NEW_CURSORS = text("""
WITH new_orgs AS (
    SELECT o.id
      FROM organizations o
      LEFT JOIN metering_cursors c ON c.organization_id = o.id
     WHERE c.organization_id IS NULL
       AND o.stripe_customer_id IS NOT NULL AND o.stripe_customer_deleted_at IS NULL
), first_readings AS (
    SELECT t.organization_id, min(t.received_at) AS first_at
      FROM temperature_readings t
      JOIN new_orgs n ON n.id = t.organization_id
     WHERE t.received_at >= date_bin(
               make_interval(secs => :window_seconds),
               CAST(:sendable_from AS timestamptz) + interval '1 second' - interval '1 microsecond',
               TIMESTAMPTZ '1970-01-01 00:00:00+00')
       AND t.received_at < :last_end
     GROUP BY t.organization_id
)
INSERT INTO metering_cursors (organization_id, closed_through)
SELECT n.id,
       least(:last_end, coalesce(
           date_bin(make_interval(secs => :window_seconds), CAST(:backfill_start AS timestamptz),
                    TIMESTAMPTZ '1970-01-01 00:00:00+00'),
           date_bin(make_interval(secs => :window_seconds), f.first_at,
                    TIMESTAMPTZ '1970-01-01 00:00:00+00'),
           :last_end))
  FROM new_orgs n
  LEFT JOIN first_readings f ON f.organization_id = n.id
ON CONFLICT (organization_id) DO NOTHING
""")

# How measured windows (a `measured` CTE) become ledger rows, for the close and for backfill
# alike: the identifier (job id = Stripe identifier), and `skipped` with its reason for a
# window Stripe can no longer take or a readings window with nothing to bill.
INSERT_MEASURED = """
INSERT INTO meter_reports (organization_id, event_name, window_start, window_end, value,
                           stripe_customer_id, identifier, source, status, skip_reason,
                           late_readings)
SELECT organization_id, event_name, window_start, window_end, value, stripe_customer_id,
       'sb.' || organization_id || '.' || event_name || '.'
           || extract(epoch FROM window_start)::bigint,
       'window',
       CASE WHEN window_end - interval '1 second' < :sendable_from THEN 'skipped'
            WHEN event_name = 'temperature_readings' AND value = 0 THEN 'skipped'
            ELSE 'pending' END,
       CASE WHEN window_end - interval '1 second' < :sendable_from
                THEN 'beyond Stripe''s 35-day limit for meter event timestamps'
            WHEN event_name = 'temperature_readings' AND value = 0
                THEN 'no readings in the window'
       END,
       late_readings
  FROM measured
ON CONFLICT DO NOTHING
RETURNING status, late_readings
"""

# Every window of every eligible organization between its cursor and `last_end`, measured in
# one statement: readings received in the window, and sensors active at its end (from the
# status history, so a window caught up late counts the sensors of its own time). "At its end"
# is the window's last instant: windows are [start, end), so a status change at `end` belongs
# to the next window, as a reading received at `end` does.
# A cursor off the window grid (METER_WINDOW_SECONDS was changed: closed in hours through
# 11:00, now in days) first gets a short window up to the next boundary, [11:00, 24:00), counted
# on its own (`partial_readings`, empty otherwise): the aligned count would include readings
# before the cursor, already billed, and a window starting at the cursor would never match it.
#
# Late commits. A reading counts in the window of its `received_at`, which defaults to its
# transaction's start; the statement sees only transactions committed when it began (its
# snapshot). A transaction still open then (or begun before `received_at` and writing later)
# commits readings into windows this statement has measured. So the statement stores its own
# snapshot on every cursor it advances (`closed_snapshot`; pg_current_snapshot() is the
# statement's active snapshot), and the next close bills, by arrival, the readings before the
# cursor that the stored snapshot did not see (`late`), in the first window it closes for the
# organization (counted in `late_readings`). Snapshots only grow (closes run one at a time, each
# after the last committed), so after every close the organization's billed readings are
# exactly those received before its cursor that its stored snapshot sees: none twice, and every
# committed one once a close has run after its commit.
# A snapshot does not see exactly the transactions in its xip list (running when it was taken)
# and those from its xmax on (not begun). The statement reads those through
# `temperature_readings_xact_id_idx`: ids from `:late_from` (the lowest xmax among the cursors'
# snapshots: the readings inserted since the last close) and the ids in `:running` (every xip
# of those snapshots; a few, and most are other work's, without readings). Both come from the
# distinct stored snapshots (`:snapshots`, one per close as a rule) read just before
# (`LATE_CANDIDATES`); a cursor with another one (its organization became metered between the
# two statements) waits for the next close.
_MEASURE_CLOSED_WINDOWS = """
WITH cursors AS MATERIALIZED (
    SELECT c.organization_id, o.stripe_customer_id, c.closed_through,
           CAST(c.closed_snapshot AS pg_snapshot) AS seen
      FROM metering_cursors c
      JOIN organizations o ON o.id = c.organization_id
     WHERE c.closed_through < :last_end
       AND o.stripe_customer_id IS NOT NULL AND o.stripe_customer_deleted_at IS NULL
       AND c.closed_snapshot = ANY(CAST(:snapshots AS text[]))
), windows AS (
    SELECT c.organization_id, c.stripe_customer_id,
           greatest(ws, c.closed_through) AS window_start,
           ws + make_interval(secs => :window_seconds) AS window_end,
           ws AS aligned_start,
           c.closed_through AS cursor_at
      FROM cursors c
     CROSS JOIN LATERAL generate_series(
           date_bin(make_interval(secs => :window_seconds), c.closed_through,
                    TIMESTAMPTZ '1970-01-01 00:00:00+00'),
           CAST(:last_end AS timestamptz) - make_interval(secs => :window_seconds),
           make_interval(secs => :window_seconds)) AS ws
), bounds AS (
    SELECT min(window_start) AS low, max(window_end) AS high FROM windows
), readings AS (
    SELECT t.organization_id,
           date_bin(make_interval(secs => :window_seconds), t.received_at,
                    TIMESTAMPTZ '1970-01-01 00:00:00+00') AS window_start,
           count(*) AS value
      FROM temperature_readings t, bounds b
     WHERE t.received_at >= b.low AND t.received_at < b.high
     GROUP BY 1, 2
), partial_readings AS (
    SELECT w.organization_id, w.window_start, count(*) AS value
      FROM windows w
      JOIN temperature_readings t
        ON t.organization_id = w.organization_id
       AND t.received_at >= w.window_start AND t.received_at < w.window_end
     WHERE w.window_start <> w.aligned_start
     GROUP BY 1, 2
), late AS (
    SELECT t.organization_id, count(*) AS value
      FROM temperature_readings t
      JOIN cursors c ON c.organization_id = t.organization_id
     WHERE (t.xact_id >= :late_from OR t.xact_id = ANY(CAST(:running AS bigint[])))
       AND t.received_at < c.closed_through
       AND NOT pg_visible_in_snapshot(CAST(CAST(t.xact_id AS text) AS xid8), c.seen)
     GROUP BY 1
), sensors AS (
    SELECT w.organization_id, w.window_start, count(*) AS value
      FROM windows w
      JOIN sensor_status_periods p
        ON p.organization_id = w.organization_id
       AND p.status = 'active'
       AND p.valid_from < w.window_end
       AND (p.valid_to IS NULL OR p.valid_to >= w.window_end)
     GROUP BY 1, 2
), advanced AS (
    UPDATE metering_cursors m
       SET closed_through = :last_end,
           closed_snapshot = CAST(pg_current_snapshot() AS text),
           updated_at = now()
      FROM cursors c
     WHERE m.organization_id = c.organization_id
), measured AS (
    SELECT w.organization_id, w.stripe_customer_id, w.window_start, w.window_end, m.event_name,
           CASE m.event_name
               WHEN 'temperature_readings'
                   THEN coalesce(r.value, p.value, 0) + coalesce(l.value, 0)
               ELSE coalesce(s.value, 0) END AS value,
           CASE m.event_name WHEN 'temperature_readings' THEN coalesce(l.value, 0) ELSE 0 END
               AS late_readings
      FROM windows w
     CROSS JOIN (VALUES ('active_sensors'), ('temperature_readings')) AS m(event_name)
      LEFT JOIN readings r
        ON r.organization_id = w.organization_id AND r.window_start = w.window_start
      LEFT JOIN partial_readings p
        ON p.organization_id = w.organization_id AND p.window_start = w.window_start
      LEFT JOIN sensors s
        ON s.organization_id = w.organization_id AND s.window_start = w.window_start
      LEFT JOIN late l
        ON l.organization_id = w.organization_id AND w.window_start = w.cursor_at
)
"""
CLOSE_WINDOWS = text(_MEASURE_CLOSED_WINDOWS + INSERT_MEASURED)

# The distinct snapshots stored on the cursors the close will advance, their lowest xmax and
# every xip: a reading one of them did not see has an id from that xmax on, or one in the list.
LATE_CANDIDATES = text("""
WITH stored AS (
    SELECT DISTINCT c.closed_snapshot
      FROM metering_cursors c
      JOIN organizations o ON o.id = c.organization_id
     WHERE c.closed_through < :last_end
       AND o.stripe_customer_id IS NOT NULL AND o.stripe_customer_deleted_at IS NULL
), snapshots AS (
    SELECT CAST(closed_snapshot AS pg_snapshot) AS seen FROM stored
)
SELECT ARRAY(SELECT closed_snapshot FROM stored) AS snapshots,
       (SELECT min(CAST(CAST(pg_snapshot_xmax(seen) AS text) AS bigint)) FROM snapshots)
           AS late_from,
       ARRAY(SELECT DISTINCT CAST(CAST(x AS text) AS bigint)
               FROM snapshots, pg_snapshot_xip(seen) AS x) AS running
""")


async def lock_closing(session: AsyncSession) -> None:
    await session.execute(select(func.pg_advisory_xact_lock(CLOSE_WINDOWS_LOCK)))
    # PostgreSQL's JIT spends ~270 ms compiling the close statement, which then runs in ~100 ms
    # (measured: benchmarks/metering_close.py); this transaction does better without it.
    await session.execute(text("SET LOCAL jit = off"))


async def start_new_cursors(
    session: AsyncSession,
    *,
    window: timedelta,
    last_end: datetime,
    sendable_from: datetime,
    backfill_start: datetime | None,
) -> int:
    result = await session.execute(
        START_NEW_CURSORS,
        {
            "window_seconds": int(window.total_seconds()),
            "last_end": last_end,
            "sendable_from": sendable_from,
            "backfill_start": backfill_start,
        },
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ClosedRows:
    by_status: dict[str, int]
    late_readings: int  # readings billed in these rows after their own window had closed


async def close_windows(
    session: AsyncSession, *, window: timedelta, last_end: datetime, sendable_from: datetime
) -> ClosedRows:
    """Insert the ledger rows of every window up to `last_end` and advance the cursors; count
    the rows by status, and the late readings they bill."""
    snapshots, late_from, running = (
        await session.execute(LATE_CANDIDATES, {"last_end": last_end})
    ).one()
    params = {
        "window_seconds": int(window.total_seconds()),
        "last_end": last_end,
        "sendable_from": sendable_from,
        "snapshots": snapshots,
        "late_from": late_from,
        "running": running,
    }
    counts: dict[str, int] = {}
    late = 0
    for status, late_readings in (await session.execute(CLOSE_WINDOWS, params)).all():
        counts[status] = counts.get(status, 0) + 1
        late += int(late_readings)
    return ClosedRows(counts, late)


async def organizations_without_customer(session: AsyncSession, limit: int) -> list[uuid.UUID]:
    rows = await session.scalars(
        select(Organization.id)
        .where(
            (Organization.stripe_customer_id.is_(None))
            | (Organization.stripe_customer_deleted_at.is_not(None))
        )
        .order_by(Organization.id)
        .limit(limit)
    )
    return list(rows)


@dataclass(frozen=True, slots=True)
class PendingReport:
    identifier: str
    organization_id: uuid.UUID
    event_name: str
    value: int
    window_end: datetime
    created_at: datetime
    id: int
    source: str = ReportSource.WINDOW.value


def pending_report(row: MeterReport) -> PendingReport:
    """A pending row just written (or made pending again), as the queue hand-off takes it."""
    return PendingReport(
        identifier=row.identifier,
        organization_id=row.organization_id,
        event_name=row.event_name,
        value=row.value,
        window_end=row.window_end,
        created_at=row.created_at,
        id=row.id,
        source=row.source,
    )


async def pending_reports(
    session: AsyncSession,
    *,
    created_before: datetime,
    limit: int,
    after: tuple[datetime, int] | None = None,
) -> list[PendingReport]:
    """A page of pending rows in (created_at, id) order, after the key `after` (keyset)."""
    query = (
        select(
            MeterReport.identifier,
            MeterReport.organization_id,
            MeterReport.event_name,
            MeterReport.value,
            MeterReport.window_end,
            MeterReport.created_at,
            MeterReport.id,
            MeterReport.source,
        )
        .where(MeterReport.status == ReportStatus.PENDING, MeterReport.created_at < created_before)
        .order_by(MeterReport.created_at, MeterReport.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(MeterReport.created_at, MeterReport.id) > tuple_(*after))
    rows = await session.execute(query)
    return [PendingReport(*row) for row in rows]


async def still_pending(session: AsyncSession, identifiers: list[str]) -> set[str]:
    rows = await session.scalars(
        select(MeterReport.identifier).where(
            MeterReport.identifier.in_(identifiers), MeterReport.status == ReportStatus.PENDING
        )
    )
    return set(rows)


async def count_pending(session: AsyncSession) -> int:
    value = await session.scalar(
        select(func.count()).select_from(MeterReport).where(MeterReport.status == "pending")
    )
    return int(value or 0)


# The table, for Core statements (mypy types an ORM class's __table__ as any FromClause).
_reports = cast(Table, MeterReport.__table__)


# The (customer, meter) pair's advisory lock: Stripe allows one concurrent meter event call
# per customer and meter (docs: rate-limits). Every sender takes it: the meter worker for as
# long as a job's call runs (`send_repository`), the stream for its batch (LOCK_STREAM_BATCH),
# a correction around its cancel; the SQL spells the same key.
def _pair_lock_key(customer: Any, event_name: Any) -> Any:
    return func.hashtextextended(customer + "/" + event_name, 1)


# The stream's batch (100 at once), and a stale row Stripe already counts (stale_resend); the
# meter worker writes its outcomes in `send_repository.RECORD_AND_CLAIM`.
MARK_SENT = (
    update(_reports)
    .where(_reports.c.id == any_(bindparam("report_ids", type_=ARRAY(BigInteger))))
    .values(
        status=ReportStatus.SENT.value,
        attempts=_reports.c.attempts + 1,
        last_attempt_at=bindparam("now"),
        sent_at=bindparam("now"),
        last_error=None,
        last_error_code=None,
    )
)


async def mark_sent(
    connection: AsyncSession | AsyncConnection, report_ids: list[int], now: datetime
) -> None:
    """Locked reports Stripe has accepted now (or had already): one more attempt each, sent."""
    await connection.execute(MARK_SENT, {"report_ids": report_ids, "now": now})


async def update_report(
    connection: AsyncSession | AsyncConnection, report_id: int, **changes: Any
) -> None:
    """Write what the decision not to send made of a report (stale_resend); built per call,
    so not for a hot path."""
    await connection.execute(update(_reports).where(_reports.c.id == report_id).values(**changes))


@dataclass(frozen=True, slots=True)
class StreamRow:
    """What the stream sends of a pending row."""

    id: int
    identifier: str
    event_name: str
    stripe_customer_id: str
    value: int
    window_end: datetime


# Rows, not ORM objects: loading 100 instances a batch was a tenth of the stream's CPU.
# The oldest pending rows (their ids, read without locks from meter_reports_pending_idx, which
# is on (created_at, id): no sort), then each of them in turn: the (customer, meter) pair's
# lock tried first (a job holds the pair of the row it is sending, not the row), then the row,
# SKIP LOCKED, and only while it is still pending. The candidates come up lazily, so rows past
# the batch's `limit` are not locked. There are enough of them for the stream's other senders'
# batches (which hold their rows and pairs) and a few rows of pairs that jobs hold.
LOCK_STREAM_BATCH = text("""
SELECT r.id, r.identifier, r.event_name, r.stripe_customer_id, r.value, r.window_end
  FROM (SELECT id FROM meter_reports
         WHERE status = 'pending' AND source = 'window' AND stripe_customer_id IS NOT NULL
           AND window_end - interval '1 second' >= :sendable_from
           -- Older rows may have been sent already; their jobs ask Stripe first (stale_resend).
           AND created_at >= :stale_before
         ORDER BY created_at, id
         LIMIT :candidates) AS c
 CROSS JOIN LATERAL (
       SELECT m.id, m.identifier, m.event_name, m.stripe_customer_id, m.value, m.window_end
         FROM meter_reports m
        WHERE m.id = c.id AND m.status = 'pending'
          AND pg_try_advisory_xact_lock(
                  hashtextextended(m.stripe_customer_id || '/' || m.event_name, 1))
          FOR UPDATE SKIP LOCKED) AS r
 LIMIT :limit
""")
STREAM_CANDIDATES_PER_ROW = 8


async def lock_stream_batch(
    session: AsyncSession, limit: int, sendable_from: datetime, stale_before: datetime
) -> list[StreamRow]:
    """Up to `limit` pending window rows with a customer whose event timestamp (window end
    - 1 s) is at or after `sendable_from`, written at or after `stale_before`, oldest first,
    locked for this transaction; rows another transaction holds (a job's claim, another
    sender) are skipped, and so are rows whose (customer, meter) pair is held (a job is sending
    it); the pairs of the rows taken stay locked until this transaction ends. Rows past
    Stripe's limit are left to their jobs, which fail them for a person: after a long outage
    they are the oldest, and a batch of them would end the stream. Rows written before
    `stale_before` are left to their jobs too, which first ask Stripe whether an earlier send
    counted (metering/stale_resend.py)."""
    rows = await session.execute(
        LOCK_STREAM_BATCH,
        {
            "limit": limit,
            "candidates": limit * STREAM_CANDIDATES_PER_ROW,
            "sendable_from": sendable_from,
            "stale_before": stale_before,
        },
    )
    return [StreamRow(*row) for row in rows]


@dataclass(frozen=True, slots=True)
class HourNeighbour:
    """Another ledger row whose event lies in the same hour, for the same customer and meter."""

    status: str
    value: int
    sent_at: datetime | None
    stripe_error_code: str | None


async def rows_in_hour(
    connection: AsyncSession | AsyncConnection,
    *,
    organization_id: uuid.UUID,
    customer: str,
    event_name: str,
    hour: datetime,
    except_id: int,
) -> list[HourNeighbour]:
    """The organization's other rows for this customer and meter whose event timestamp
    (window end - 1 s) lies in [hour, hour + 1 h). No window is longer than a day
    (METER_WINDOW_SECONDS divides one), which bounds the scan of (organization_id,
    window_start)."""
    last_second = _reports.c.window_end - timedelta(seconds=1)
    rows = await connection.execute(
        select(
            _reports.c.status,
            _reports.c.value,
            _reports.c.sent_at,
            _reports.c.stripe_error_code,
        ).where(
            _reports.c.organization_id == organization_id,
            _reports.c.window_start >= hour - timedelta(days=1),
            _reports.c.window_start < hour + timedelta(hours=1),
            _reports.c.stripe_customer_id == customer,
            _reports.c.event_name == event_name,
            last_second >= hour,
            last_second < hour + timedelta(hours=1),
            _reports.c.id != except_id,
        )
    )
    return [HourNeighbour(*row) for row in rows]


async def lock_customer_meter(session: AsyncSession, customer_id: str, event_name: str) -> None:
    """Stripe allows one concurrent meter event call per customer and meter (docs:
    rate-limits): every sender takes this lock around the call (`_pair_lock_key`)."""
    await session.execute(
        select(func.pg_advisory_xact_lock(_pair_lock_key(customer_id, event_name)))
    )


async def insert_job_report(
    connection: AsyncSession | AsyncConnection, values: dict[str, Any]
) -> None:
    """A report that arrived as a job from another producer; kept once per identifier."""
    await connection.execute(
        insert(MeterReport)
        .values(source=ReportSource.JOB.value, **values)
        .on_conflict_do_nothing(index_elements=[MeterReport.identifier])
    )


async def organization_customer(
    connection: AsyncSession | AsyncConnection, organization_id: uuid.UUID
) -> tuple[bool, str | None]:
    """Whether the organization exists, and its Stripe customer unless it has none or Stripe
    deleted it."""
    row = (
        await connection.execute(
            select(Organization.stripe_customer_id, Organization.stripe_customer_deleted_at).where(
                Organization.id == organization_id
            )
        )
    ).first()
    if row is None:
        return False, None
    return True, row.stripe_customer_id if row.stripe_customer_deleted_at is None else None


async def existing_identifiers(
    connection: AsyncSession | AsyncConnection, identifiers: list[str]
) -> set[str]:
    """Which of `identifiers` have a ledger row."""
    rows = await connection.scalars(
        select(MeterReport.identifier).where(MeterReport.identifier.in_(identifiers))
    )
    return set(rows)


async def existing_organizations(
    session: AsyncSession, organization_ids: set[uuid.UUID]
) -> set[uuid.UUID]:
    rows = await session.scalars(
        select(Organization.id).where(Organization.id.in_(organization_ids))
    )
    return set(rows)


async def fail_unsendable(session: AsyncSession, sendable_from: datetime) -> int:
    """Pending reports Stripe can no longer accept: failed, for a person to settle."""
    result = await session.execute(
        update(MeterReport)
        .where(
            MeterReport.status == ReportStatus.PENDING,
            MeterReport.window_end - timedelta(seconds=1) < sendable_from,
        )
        .values(
            status=ReportStatus.FAILED,
            last_error="Stripe's 35-day limit passed before Stripe accepted the report",
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- Operator commands: backfill, ledger listing, status ---------------------------------

# The parts of [start, end) that no window row of a metered organization covers, per meter,
# cut on the current window grid. A window row covers its own [window_start, window_end),
# whatever METER_WINDOW_SECONDS was when it was closed: after a change (days to hours, or
# hours to days) the rows of the old grid overlap the new grid's windows without sharing their
# start, so the ledger key alone would let a re-measured window bill readings a row of the
# old grid already bills. Only time before the organization's cursor is looked at: later
# windows are not missing but not closed yet (the worker closes them, from the cursor), and an
# organization without a cursor has nothing closed (its first close starts it).
_BACKFILL_PIECES = """
WITH spans AS (
    SELECT o.id AS organization_id, o.stripe_customer_id,
           tstzrange(CAST(:start AS timestamptz),
                     least(CAST(:end AS timestamptz), c.closed_through)) AS span,
           CAST(c.started_snapshot AS pg_snapshot) AS started
      FROM organizations o
      JOIN metering_cursors c ON c.organization_id = o.id
     WHERE o.stripe_customer_id IS NOT NULL AND o.stripe_customer_deleted_at IS NULL
       AND (CAST(:organization_id AS uuid) IS NULL OR o.id = CAST(:organization_id AS uuid))
       AND c.closed_through > CAST(:start AS timestamptz)
), covered AS (
    SELECT r.organization_id, r.event_name,
           range_agg(tstzrange(r.window_start, r.window_end)) AS ranges
      FROM meter_reports r
      JOIN spans s ON s.organization_id = r.organization_id
     WHERE r.source = 'window'
       AND r.window_start < upper(s.span) AND r.window_end > lower(s.span)
     GROUP BY 1, 2
), gaps AS (
    SELECT s.organization_id, s.stripe_customer_id, s.started, m.event_name,
           unnest(tstzmultirange(s.span)
                  - coalesce(c.ranges, CAST('{}' AS tstzmultirange))) AS gap
      FROM spans s
     CROSS JOIN (VALUES ('active_sensors'), ('temperature_readings')) AS m(event_name)
      LEFT JOIN covered c
        ON c.organization_id = s.organization_id AND c.event_name = m.event_name
), pieces AS (
    SELECT g.organization_id, g.stripe_customer_id, g.started, g.event_name,
           greatest(ws, lower(g.gap)) AS window_start,
           least(ws + make_interval(secs => :window_seconds), upper(g.gap)) AS window_end
      FROM gaps g
     CROSS JOIN LATERAL generate_series(
           date_bin(make_interval(secs => :window_seconds), lower(g.gap),
                    TIMESTAMPTZ '1970-01-01 00:00:00+00'),
           upper(g.gap) - interval '1 microsecond',
           make_interval(secs => :window_seconds)) AS ws
)
"""

# Per metered organization, how many windows (or parts of windows) in [start, end) miss a
# report for either meter.
MISSING_WINDOWS = text(
    _BACKFILL_PIECES
    + """
SELECT organization_id, count(DISTINCT window_start) AS missing
  FROM pieces
 GROUP BY 1
 ORDER BY 1
"""
)

# The missing pieces measured as `close_windows` measures a window (readings received in it,
# sensors active at its last instant; the 35-day limit and empty windows `skipped`), with
# the readings the organization's first close could see (`started_snapshot`): time before a
# cursor that no row covers is time before the organization's metering began, and a reading
# committed since then is the close's to bill, by arrival, whenever its `received_at` (see
# `_MEASURE_CLOSED_WINDOWS`). Backfill holds the closing lock, so no close runs meanwhile.
# Constant text with bound parameters: ruff's S608 only sees the `+`.
BACKFILL_WINDOWS = text(
    _BACKFILL_PIECES  # noqa: S608
    + """
, measured AS (
    SELECT p.organization_id, p.stripe_customer_id, p.event_name, p.window_start,
           p.window_end, 0 AS late_readings,
           CASE p.event_name
               WHEN 'temperature_readings' THEN (
                   SELECT count(*) FROM temperature_readings t
                    WHERE t.organization_id = p.organization_id
                      AND t.received_at >= p.window_start AND t.received_at < p.window_end
                      AND (t.xact_id IS NULL
                           OR pg_visible_in_snapshot(CAST(CAST(t.xact_id AS text) AS xid8),
                                                     p.started)))
               ELSE (
                   SELECT count(*) FROM sensor_status_periods s
                    WHERE s.organization_id = p.organization_id
                      AND s.status = 'active'
                      AND s.valid_from < p.window_end
                      AND (s.valid_to IS NULL OR s.valid_to >= p.window_end))
           END AS value
      FROM pieces p
)
"""
    + INSERT_MEASURED
)


@dataclass(frozen=True, slots=True)
class OrganizationBilling:
    id: uuid.UUID
    metered: bool  # a Stripe customer that is not deleted


async def find_organization(
    session: AsyncSession, organization_id: uuid.UUID
) -> OrganizationBilling | None:
    row = (
        await session.execute(
            select(
                Organization.id,
                Organization.stripe_customer_id.is_not(None)
                & Organization.stripe_customer_deleted_at.is_(None),
            ).where(Organization.id == organization_id)
        )
    ).first()
    return OrganizationBilling(row[0], bool(row[1])) if row else None


async def missing_windows(
    session: AsyncSession,
    *,
    window: timedelta,
    start: datetime,
    end: datetime,
    organization_id: uuid.UUID | None,
) -> dict[uuid.UUID, int]:
    """Per metered organization, how many windows (or parts) in [start, end) miss a report."""
    rows = await session.execute(
        MISSING_WINDOWS,
        {
            "window_seconds": int(window.total_seconds()),
            "start": start,
            "end": end,
            "organization_id": organization_id,
        },
    )
    return {organization: int(missing) for organization, missing in rows}


async def backfill_windows(
    session: AsyncSession,
    *,
    window: timedelta,
    start: datetime,
    end: datetime,
    organization_id: uuid.UUID,
    sendable_from: datetime,
) -> dict[str, int]:
    """Insert the organization's missing rows in [start, end) (`MISSING_WINDOWS`' pieces);
    count them by status."""
    statuses = (
        (
            await session.execute(
                BACKFILL_WINDOWS,
                {
                    "window_seconds": int(window.total_seconds()),
                    "start": start,
                    "end": end,
                    "organization_id": organization_id,
                    "sendable_from": sendable_from,
                },
            )
        )
        .scalars()
        .all()
    )
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts


async def ledger_rows(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID | None,
    status: str | None,
    limit: int,
    stripe_error: bool = False,
) -> list[MeterReport]:
    """The newest ledger rows (by window, then meter), optionally of one organization/status,
    or only those a Stripe meter error event marked (few: `meter_reports_stripe_error_idx`)."""
    query = select(MeterReport)
    if organization_id is not None:
        query = query.where(MeterReport.organization_id == organization_id)
    if status is not None:
        query = query.where(MeterReport.status == status)
    if stripe_error:
        query = query.where(MeterReport.stripe_error_code.is_not(None))
    query = query.order_by(
        MeterReport.window_start.desc(), MeterReport.organization_id, MeterReport.event_name
    ).limit(limit)
    return list(await session.scalars(query))


# Pending rows through the partial index `meter_reports_pending_idx`; cursors are one row per
# organization. The age comes from the database clock, like `created_at`.
LEDGER_BACKLOG = text("""
SELECT
  (SELECT count(*) FROM meter_reports WHERE status = 'pending') AS pending,
  (SELECT min(created_at) FROM meter_reports WHERE status = 'pending') AS oldest_pending_at,
  (SELECT extract(epoch FROM now() - min(created_at))
     FROM meter_reports WHERE status = 'pending') AS oldest_pending_age,
  (SELECT max(closed_through) FROM metering_cursors) AS closed_through
""")


@dataclass(frozen=True, slots=True)
class LedgerBacklog:
    pending: int
    oldest_pending_at: datetime | None
    oldest_pending_age_seconds: float  # 0 when nothing is pending
    closed_through: datetime | None  # end of the newest closed window; None before the first


async def ledger_backlog(connection: AsyncConnection | AsyncSession) -> LedgerBacklog:
    """How far behind reporting is: pending rows, the oldest one, the last closed window."""
    row = (await connection.execute(LEDGER_BACKLOG)).one()
    return LedgerBacklog(
        pending=int(row.pending),
        oldest_pending_at=row.oldest_pending_at,
        oldest_pending_age_seconds=max(float(row.oldest_pending_age or 0), 0.0),
        closed_through=row.closed_through,
    )
