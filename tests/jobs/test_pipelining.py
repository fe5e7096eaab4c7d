"""The Redis client the meter worker gives bullmq: concurrent commands in one pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from sensor_billing.jobs.pipelining import PipeliningRedis, bullmq_worker_connection

NAME = "pipelining-test"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[PipeliningRedis]:
    pipelining = PipeliningRedis.from_url(redis_url, decode_responses=True, client_name=NAME)
    assert isinstance(pipelining, PipeliningRedis)
    yield pipelining
    await pipelining.aclose()


async def connections_named(redis_url: str, name: str) -> int:
    plain = Redis.from_url(redis_url)
    try:
        return sum(1 for entry in await plain.client_list() if entry.get("name") == name)
    finally:
        await plain.aclose()


async def test_concurrent_callers_get_their_own_replies_over_one_connection(
    client: PipeliningRedis, redis_url: str
) -> None:
    await asyncio.gather(*(client.set(f"key:{index}", index) for index in range(50)))
    replies = await asyncio.gather(*(client.incr(f"key:{index}") for index in range(50)))

    assert replies == [index + 1 for index in range(50)]
    # A plain pooled client would have opened a connection per concurrent command.
    assert await connections_named(redis_url, NAME) == 1


async def test_a_command_that_fails_fails_only_for_its_caller(client: PipeliningRedis) -> None:
    await client.set("text", "not a number")
    results = await asyncio.gather(
        client.incr("counter"), client.incr("text"), client.get("text"), return_exceptions=True
    )

    assert results[0] == 1
    assert isinstance(results[1], ResponseError)
    assert results[2] == "not a number"


async def test_a_blocking_command_does_not_hold_up_the_others(client: PipeliningRedis) -> None:
    commands: Any = client  # redis-py types its commands for the sync and async clients at once
    waiting = asyncio.create_task(commands.bzpopmin("empty-set", timeout=5))
    await asyncio.sleep(0.1)
    await client.set("meanwhile", "done")  # answered while the wait goes on

    assert await client.get("meanwhile") == "done"
    assert not waiting.done()
    await client.zadd("empty-set", {"member": 1})
    assert await asyncio.wait_for(waiting, 5) == ("empty-set", "member", 1.0)


async def test_the_worker_connection_decodes_replies_as_bullmq_expects(redis_url: str) -> None:
    client = bullmq_worker_connection(redis_url)
    commands: Any = client
    try:
        await commands.hset("job", mapping={"name": "meter:report"})
        assert await commands.hgetall("job") == {"name": "meter:report"}
    finally:
        await client.aclose()
