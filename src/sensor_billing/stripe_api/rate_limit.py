"""An account-wide limit on calls to Stripe, shared by every worker process through Redis.

Stripe counts meter event calls per account (1,000/s live; docs: rate-limits); workers on
several machines must share one budget, so the budget lives in Redis. GCRA: one key holding
the theoretical arrival time; each call either fits (and moves it on) or learns how long to
wait.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

# KEYS[1]: the limiter key. ARGV[1]: ms between calls; ARGV[2]: burst tolerance in ms.
# Returns 0 when the call may go now, else the ms to wait before asking again.
GCRA = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now_ms)
if tat < now_ms then tat = now_ms end
local allow_at = tat - burst
if now_ms < allow_at then return math.ceil(allow_at - now_ms) end
local new_tat = tat + interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now_ms + burst + 1000))
return 0
"""


class AccountRateLimiter:
    def __init__(
        self, redis: Redis, calls_per_second: float, key: str = "sensor-billing:stripe-calls"
    ) -> None:
        self._redis = redis
        self._key = key
        self._interval_ms = 1000.0 / calls_per_second
        # Allow a tenth of a second's worth of calls at once, at least one.
        self._burst_ms = max(self._interval_ms, 100.0) - self._interval_ms
        self._script: Any = redis.register_script(GCRA)

    async def acquire(self) -> None:
        """Wait until one more call fits in the account's budget."""
        while True:
            wait_ms = int(
                await self._script(keys=[self._key], args=[self._interval_ms, self._burst_ms])
            )
            if wait_ms <= 0:
                return
            await asyncio.sleep(wait_ms / 1000)
