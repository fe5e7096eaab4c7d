"""The account-wide limit on Stripe calls, shared through Redis by several limiters (as by
several worker processes), each granting several calls per Redis call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis.asyncio import Redis

from sensor_billing.stripe_api.rate_limit import AccountRateLimiter


def most_in_one_second(times: Sequence[float]) -> int:
    """The most calls that started within any one second, [t, t + 1)."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(ordered):
        while moment - ordered[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


async def test_limiters_sharing_an_account_never_start_more_than_the_rate_in_any_second(
    redis_url: str,
) -> None:
    # 200/s: several calls fit one grant (the limiter's span is 20 ms), the case a local
    # allowance could let two processes overrun.
    rate = 200.0
    clients = [Redis.from_url(redis_url) for _ in range(3)]
    limiters = [AccountRateLimiter(client, rate, key="test:calls") for client in clients]
    loop = asyncio.get_running_loop()
    started: list[float] = []
    stop_at = loop.time() + 2.5

    async def caller(limiter: AccountRateLimiter) -> None:
        while loop.time() < stop_at:
            await limiter.acquire()
            started.append(loop.time())

    try:
        await asyncio.gather(*(caller(limiter) for limiter in limiters for _ in range(20)))
    finally:
        for client in clients:
            await client.aclose()

    assert most_in_one_second(started) <= rate
    assert len(started) > rate, "too few calls to say anything"
