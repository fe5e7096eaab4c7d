"""An account-wide limit on calls to Stripe, shared by every worker process through Redis.

Stripe counts meter event calls per account (1,000/s live; docs: rate-limits); workers on
several machines must share one budget, so the budget lives in Redis: GCRA, one key holding
the theoretical arrival time (TAT) of the account's next call, asked for several calls at a
time.

Why no second holds more than the configured rate, whatever the processes do: calls are
spaced SPACING_MARGIN wider than 1/rate; a grant of several calls at once is allowed at most
BATCH_SPAN_MS early (the GCRA burst); and every granted call starts within HOLD_SECONDS of
being asked for, or is dropped (never saved for later). The calls that start in any second
were then granted within that second or the HOLD_SECONDS before it, and GCRA grants at most
(1 s + HOLD_SECONDS + burst) / spacing = 1.04 / 1.05 of the rate in such a span, rounded up:
no more than the rate, with 10 ms to spare for the network.

A process asks for the callers it has waiting plus a few ahead (as many as its callers found
none granted lately, at most a batch span's worth), so that under load most callers take a
call without a Redis round trip; calls granted ahead that are not started in time are
dropped, and it asks for fewer ahead.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from redis.asyncio import Redis

# KEYS[1]: the limiter key. ARGV[1]: ms between calls; ARGV[2]: burst tolerance in ms; ARGV[3]:
# calls wanted. Returns {calls granted now (0 up to the wanted), ms to wait before asking again
# when none was}. The n-th call of a grant fits when now >= TAT + (n - 1) * interval - burst.
GCRA = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + tonumber(now[2]) / 1000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now_ms)
if tat < now_ms then tat = now_ms end
local fit = math.floor((now_ms + burst - tat) / interval) + 1
if fit < 1 then return {0, math.ceil(tat - burst - now_ms)} end
if fit > wanted then fit = wanted end
local new_tat = tat + fit * interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now_ms + burst + 1000))
return {fit, 0}
"""

# Calls are spaced this much wider than 1/rate: room for a grant's hold and burst (4%) and for
# the network between here and Stripe.
SPACING_MARGIN = 0.05
# One script call grants at most the calls that fit in this span (20 at 1,000/s, 1 below 50/s).
BATCH_SPAN_MS = 20.0
# A granted call not started this long after it was asked for is asked for again.
HOLD_SECONDS = 0.02


class AccountRateLimiter:
    def __init__(
        self, redis: Redis, calls_per_second: float, key: str = "sensor-billing:stripe-calls"
    ) -> None:
        self._redis = redis
        self._key = key
        self._interval_ms = 1000.0 * (1 + SPACING_MARGIN) / calls_per_second
        self._batch = int(BATCH_SPAN_MS // self._interval_ms) + 1
        self._burst_ms = (self._batch - 1) * self._interval_ms
        self._script: Any = redis.register_script(GCRA)
        # Callers waiting for a call, and calls granted ahead of callers (each the loop time
        # it was asked for: it must start within HOLD_SECONDS of that).
        self._waiting: deque[asyncio.Future[float]] = deque()
        self._granted: deque[float] = deque()
        # How many calls to ask for beyond the callers waiting: doubled while callers keep
        # finding none granted ahead, halved when granted calls go unused.
        self._ahead = 0
        self._granter: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        """Wait until one more call fits in the account's budget; start it right away."""
        loop = asyncio.get_running_loop()
        if self._take_granted(loop.time()):
            return
        self._ahead = min(self._batch - 1, max(1, self._ahead * 2))
        while True:
            grant: asyncio.Future[float] = loop.create_future()
            self._waiting.append(grant)
            if self._granter is None or self._granter.done():
                self._granter = loop.create_task(self._grant_waiting())
            asked_at = await grant
            if loop.time() - asked_at <= HOLD_SECONDS:
                return
            # This process was too busy to start the call in time: started now, it could
            # crowd a later second, so it waits for another.

    def _take_granted(self, now: float) -> bool:
        unused = 0
        while self._granted and now - self._granted[0] > HOLD_SECONDS:
            self._granted.popleft()  # too late to start: another second's call
            unused += 1
        if unused:
            self._ahead //= 2
        if self._granted:
            self._granted.popleft()
            return True
        return False

    async def _grant_waiting(self) -> None:
        """Ask Redis for the waiting callers' calls (and some ahead), as many in one script
        call as the budget allows."""
        loop = asyncio.get_running_loop()
        while True:
            while self._waiting and self._waiting[0].done():  # cancelled callers
                self._waiting.popleft()
            if not self._waiting:
                return
            wanted = min(len(self._waiting) + self._ahead, self._batch)
            asked_at = loop.time()
            try:
                granted, wait_ms = await self._script(
                    keys=[self._key], args=[self._interval_ms, self._burst_ms, wanted]
                )
            except Exception as error:
                while self._waiting:
                    grant = self._waiting.popleft()
                    if not grant.done():
                        grant.set_exception(error)
                return
            calls = int(granted)
            if loop.time() - asked_at > HOLD_SECONDS:
                calls = 0  # answered too late to start them in time: ask again
            for _ in range(calls):
                while self._waiting and self._waiting[0].done():
                    self._waiting.popleft()
                if self._waiting:
                    self._waiting.popleft().set_result(asked_at)
                else:
                    self._granted.append(asked_at)
            if int(wait_ms) > 0:
                await asyncio.sleep(int(wait_ms) / 1000)
