"""Does Redis answer, and is it new enough for bullmq?"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import RedisError

# bullmq refuses Redis older than 5.0.0 (bullmq RedisConnection.minimum_version).
MINIMUM_REDIS_VERSION = (5, 0, 0)


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


async def redis_problem_async(redis_url: str) -> str | None:
    """None when Redis answers and is new enough, else a one-line reason."""
    client = Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=5)
    try:
        info = await client.info("server")
    except (RedisError, OSError) as error:
        return f"cannot connect ({type(error).__name__}: {error})"
    finally:
        await client.aclose()
    version = str(info.get("redis_version", "0"))
    if parse_version(version) < MINIMUM_REDIS_VERSION:
        return f"Redis {version} is older than bullmq needs (5.0.0; 6.2+ recommended)"
    return None


def redis_problem(redis_url: str) -> str | None:
    return asyncio.run(redis_problem_async(redis_url))
