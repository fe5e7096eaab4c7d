"""The meter worker's group commit: the ledger work of many jobs in a few statements.

Each `meter:report` job claims its row, calls Stripe once, and records what Stripe answered
(`reporter.report_usage`). The jobs of one worker process hand those claims and outcomes to
one `SendLedger`, which gathers them for at most GATHER_SECONDS (less once as many are waiting
as the worker runs jobs at once) and then, on the one connection it keeps (autocommit), runs

  1. one UPDATE for every outcome gathered: one commit. A job waits for it, so bullmq completes
     a job only after its row's mark is committed. If it fails, every job whose outcome it
     carried fails (bullmq retries them) and none of its outcomes is written.
  2. one statement releasing the (customer, meter) locks of jobs whose outcome is committed;
  3. one SELECT claiming every row asked for: read as last committed, its pair lock tried
     (`send_repository.CLAIM_REPORTS`).

The pair lock is a session lock of that connection, so one lock per pair serves the whole
process; within the process the pair goes to one job at a time (`_Pair`): a job for a pair
another of its jobs holds waits for it, then claims its row again (the holder's outcome is
committed by then, so a second job for the same row reads it `sent`). A pair another worker
holds is asked for again after a short wait, as a row another transaction has locked is.

If the connection fails, it is dropped, and PostgreSQL drops its locks with it; jobs that are
calling Stripe at that moment finish their call (other workers could now take their pairs, as
they could take a job's locks when its connection died before) and record their outcome on the
next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sensor_billing.metering import send_repository
from sensor_billing.metering.send_repository import ClaimedReport, ReportForSend, ReportOutcome

logger = logging.getLogger("sensor_billing.worker")

# How long a claim or an outcome waits for others to share its statement (unless a full batch
# is waiting sooner). Jobs that start or finish together arrive within a few ms of each other;
# the statement they share costs about what one job's statement cost alone.
GATHER_SECONDS = 0.002
# At most this many claims, or outcomes, in one statement.
MAX_STATEMENT_ROWS = 500
# A row another transaction has locked, or whose pair another worker holds, is claimed again
# after this, doubling up to the maximum: the holder is usually in a call to Stripe.
BUSY_RETRY_SECONDS = 0.005
BUSY_RETRY_MAX_SECONDS = 0.2


class _Decision(enum.Enum):
    ABSENT = "absent"  # no ledger row
    ROW = "row"  # the row, not sendable (settled, or no customer): nothing to lock
    HOLD = "hold"  # the row, pending, with its pair held for this claim
    WAIT = "wait"  # the pair is another claim's in this process: wait for it, claim again
    BUSY = "busy"  # the row, or its pair, is another transaction's or worker's: claim again


@dataclass(frozen=True, slots=True)
class _Answer:
    decision: _Decision
    row: ReportForSend | None = None
    # WAIT: resolved when the pair is handed to this claim.
    turn: asyncio.Future[None] | None = None


@dataclass(slots=True)
class _ClaimRequest:
    identifier: str
    token: object
    future: asyncio.Future[_Answer]


@dataclass(slots=True)
class _OutcomeRequest:
    outcome: ReportOutcome
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Waiter:
    token: object
    turn: asyncio.Future[None]


@dataclass(slots=True)
class _Pair:
    """A (customer, meter) pair some claim of this process holds (or is about to)."""

    holder: object | None
    locked: bool  # this process's session holds the pair's PostgreSQL lock (once)
    waiters: deque[_Waiter] = field(default_factory=deque)


class SendLedger:
    """Claims and outcomes of one worker process's jobs, gathered into shared statements."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        batch_size: int,
        gather_seconds: float = GATHER_SECONDS,
    ) -> None:
        self._engine = engine
        self._batch_size = max(1, batch_size)
        self._gather_seconds = gather_seconds
        self._connection: AsyncConnection | None = None
        self._claims: list[_ClaimRequest] = []
        self._outcomes: list[_OutcomeRequest] = []
        self._releases: list[str] = []
        self._pairs: dict[str, _Pair] = {}
        self._wake = asyncio.Event()
        self._batch_full: asyncio.Future[None] | None = None
        self._first_request_at: float | None = None
        self._runner: asyncio.Task[None] | None = None
        # The outcomes and claims of the statement being run.
        self._in_flight: tuple[list[_OutcomeRequest], list[_ClaimRequest]] = ([], [])

    def claim(self, identifier: str) -> ReportClaim:
        """`async with ledger.claim(identifier) as row:` the row (None: no such row) and, when it
        is pending for a customer, its pair held for this block; released when the block ends,
        which is after the block's `record` committed."""
        return ReportClaim(self, identifier)

    async def record(self, outcome: ReportOutcome) -> None:
        """Write `outcome` with the others gathered; returns once it is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outcomes.append(_OutcomeRequest(outcome, future))
        self._requested()
        await future

    async def close(self) -> None:
        """Stop (after the worker's jobs are done): anything still asked for fails, and the
        connection closes, its locks with it."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        # Whatever was not answered (the worker's close gave up on its jobs) fails.
        outcomes, claims = (
            [*self._in_flight[0], *self._outcomes],
            [*self._in_flight[1], *self._claims],
        )
        _fail_all(outcomes, claims, ConnectionError("the worker is stopping"))
        self._claims, self._outcomes, self._releases = [], [], []
        await self._drop_connection()

    # -- the jobs' side ------------------------------------------------------------------

    async def _ask_claim(self, identifier: str, token: object) -> _Answer:
        future: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._claims.append(_ClaimRequest(identifier, token, future))
        self._requested()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # answered just as it was cancelled
                self._abandon(future.result(), token)
            raise

    async def _await_turn(self, answer: _Answer, token: object) -> None:
        assert answer.turn is not None
        assert answer.row is not None
        try:
            await answer.turn
        except asyncio.CancelledError:
            if answer.turn.done() and not answer.turn.cancelled():  # handed over, then cancelled
                self._vacate(_pair_of(answer.row), token)
            raise

    def _abandon(self, answer: _Answer, token: object) -> None:
        if answer.decision is _Decision.HOLD and answer.row is not None:
            self._vacate(_pair_of(answer.row), token)
        elif answer.turn is not None:
            answer.turn.cancel()  # its place in the queue is skipped

    def _release(self, token: object, row: ReportForSend | None) -> None:
        if row is not None:
            self._vacate(_pair_of(row), token)

    def _vacate(self, pair: str, token: object) -> None:
        """`token` no longer holds `pair`."""
        entry = self._pairs.get(pair)
        if entry is not None and entry.holder is token:
            entry.holder = None
            self._hand_over(pair, entry)

    def _hand_over(self, pair: str, entry: _Pair) -> None:
        """A pair nobody holds goes to its next waiter; without one, its lock is released."""
        while entry.waiters:
            waiter = entry.waiters.popleft()
            if not waiter.turn.done():
                entry.holder = waiter.token
                waiter.turn.set_result(None)
                return
        del self._pairs[pair]
        if entry.locked:
            self._releases.append(pair)
            self._requested()

    # -- the statements' side ------------------------------------------------------------

    def _requested(self) -> None:
        loop = asyncio.get_running_loop()
        if self._first_request_at is None:
            self._first_request_at = loop.time()
        if self._runner is None:
            self._runner = loop.create_task(self._run())
        self._wake.set()
        full = self._batch_full
        if full is not None and not full.done() and self._waiting() >= self._batch_size:
            full.set_result(None)

    def _waiting(self) -> int:
        return len(self._claims) + len(self._outcomes)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not (self._claims or self._outcomes or self._releases):
                self._wake.clear()
                await self._wake.wait()
            await self._gather(loop)
            outcomes = self._outcomes[:MAX_STATEMENT_ROWS]
            claims = self._claims[:MAX_STATEMENT_ROWS]
            releases = self._releases
            del self._outcomes[: len(outcomes)]
            del self._claims[: len(claims)]
            self._releases = []
            self._first_request_at = loop.time() if self._waiting() else None
            self._in_flight = (outcomes, claims)
            try:
                await self._execute(outcomes, releases, claims)
            except Exception as error:  # a bug here would leave every job waiting: say so
                logger.exception("the meter worker's ledger failed")
                _fail_all(outcomes, claims, error)
            finally:
                self._in_flight = ([], [])

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        started = self._first_request_at
        if started is None or self._waiting() >= self._batch_size:
            return
        remaining = started + self._gather_seconds - loop.time()
        if remaining <= 0:
            return
        full: asyncio.Future[None] = loop.create_future()
        self._batch_full = full
        timer = loop.call_later(remaining, _resolve, full)
        try:
            await full
        finally:
            timer.cancel()
            self._batch_full = None

    async def _execute(
        self,
        outcomes: list[_OutcomeRequest],
        releases: list[str],
        claims: list[_ClaimRequest],
    ) -> None:
        try:
            connection = await self._connect()
            claimed = await send_repository.record_and_claim(
                connection,
                outcomes=[request.outcome for request in outcomes],
                releases=releases,
                identifiers=[request.identifier for request in claims],
                held_pairs=[pair for pair, entry in self._pairs.items() if entry.locked],
            )
        except Exception as error:
            # Nothing of the statement is kept: its outcomes' jobs fail and bullmq retries
            # them; its claims took nothing but locks, and those went with the connection.
            logger.warning("meter ledger statement failed (%s): reconnecting", error)
            await self._drop_connection()
            _fail_all(outcomes, claims, error)
            return
        for outcome in outcomes:
            _resolve(outcome.future)
        self._settle(claims, claimed)

    def _settle(self, claims: Sequence[_ClaimRequest], claimed: Sequence[ClaimedReport]) -> None:
        by_identifier = {report.identifier: report for report in claimed}

        # Rows whose pair lock the statement tried come first: another row of the statement
        # with the same pair (not tried) then finds the pair's new holder.
        def untried(request: _ClaimRequest) -> bool:
            report = by_identifier.get(request.identifier)
            return report is None or report.pair_locked is None

        for request in sorted(claims, key=untried):
            report = by_identifier.get(request.identifier)
            answer = _Answer(_Decision.ABSENT) if report is None else self._decide(request, report)
            if request.future.done():  # cancelled while the statement ran
                self._abandon(answer, request.token)
            else:
                request.future.set_result(answer)

    def _decide(self, request: _ClaimRequest, report: ClaimedReport) -> _Answer:
        pair, row = report.pair, report.row
        entry = self._pairs.get(pair) if pair is not None else None
        if report.pair_locked and pair is not None:
            if entry is None:
                entry = self._pairs[pair] = _Pair(holder=None, locked=True)
            else:
                entry.locked = True  # its lock had gone with a connection; it is back
        if entry is None or pair is None:
            # No claim of this process has the pair. If the row is sendable, another worker
            # (or transaction) holds the pair: its lock was not taken here.
            if row is None or row.sendable:
                return _Answer(_Decision.BUSY)
            return _Answer(_Decision.ROW, row)
        free = entry.holder is None
        if row is not None and row.sendable:
            if free or entry.holder is request.token:
                entry.holder = request.token
                if entry.locked:
                    return _Answer(_Decision.HOLD, row)
                # Its turn here, but the lock is another worker's since a connection was lost.
                return _Answer(_Decision.BUSY)
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry.waiters.append(_Waiter(request.token, turn))
            return _Answer(_Decision.WAIT, row, turn)
        # Nothing to send now (the row is settled, or another transaction has it locked): a
        # lock just taken for it, or this claim's turn, goes to the next claim of the pair.
        if row is not None and entry.holder is request.token:
            entry.holder = None
            free = True
        if free:
            self._hand_over(pair, entry)
        return _Answer(_Decision.BUSY) if row is None else _Answer(_Decision.ROW, row)

    async def _connect(self) -> AsyncConnection:
        if self._connection is None:
            connection = await self._engine.connect()
            try:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
            except BaseException:
                await connection.close()
                raise
            self._connection = connection
        return self._connection

    async def _drop_connection(self) -> None:
        """Close the connection for good (its session's locks end with it) and forget them."""
        connection, self._connection = self._connection, None
        for entry in self._pairs.values():
            entry.locked = False
        self._releases = []
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()
            with contextlib.suppress(Exception):
                await connection.close()


class ReportClaim:
    """`SendLedger.claim`'s block: the row, and its pair held until the block ends."""

    def __init__(self, ledger: SendLedger, identifier: str) -> None:
        self._ledger = ledger
        self._identifier = identifier
        self._held: ReportForSend | None = None

    async def __aenter__(self) -> ReportForSend | None:
        ledger, delay = self._ledger, BUSY_RETRY_SECONDS
        turn_for: str | None = None  # a pair handed to this claim while it waited
        try:
            while True:
                answer = await ledger._ask_claim(self._identifier, self)
                if answer.decision is _Decision.HOLD:
                    self._held, turn_for = answer.row, None
                    return answer.row
                if answer.decision in (_Decision.ABSENT, _Decision.ROW):
                    return answer.row
                if answer.decision is _Decision.WAIT:
                    assert answer.row is not None
                    await ledger._await_turn(answer, self)
                    turn_for = _pair_of(answer.row)
                else:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BUSY_RETRY_MAX_SECONDS)
        finally:
            if turn_for is not None:  # not held after all: the next claim of the pair gets it
                ledger._vacate(turn_for, self)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        held, self._held = self._held, None
        self._ledger._release(self, held)


def _pair_of(row: ReportForSend) -> str:
    """The pair's key as CLAIM_REPORTS spells it (and `repository.lock_customer_meter`)."""
    return f"{row.stripe_customer_id}/{row.event_name}"


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _fail_all(
    outcomes: Sequence[_OutcomeRequest], claims: Sequence[_ClaimRequest], error: BaseException
) -> None:
    for outcome in outcomes:
        _fail(outcome.future, error)
    for claim in claims:
        _fail(claim.future, error)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


__all__ = ["GATHER_SECONDS", "ReportClaim", "SendLedger"]
