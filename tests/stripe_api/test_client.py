"""The Stripe HTTP client: every network failure, mid-answer too, is one retryable error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sensor_billing.errors import StripeUnavailableError
from sensor_billing.settings import load_settings
from sensor_billing.stripe_api.client import create_http_client, create_stripe_client
from sensor_billing.stripe_api.meter_events import MeterEvent, send_meter_event

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
EVENT = MeterEvent("temperature_readings", "cus_1", 5, "sb.org.temperature_readings.0", 0)
# An answer that promises more body than it sends.
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"


async def read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)


async def drop_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(HEAD + b'{"object": ')
    await writer.drain()
    writer.transport.abort()


async def stall_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(HEAD + b'{"object": ')
    await writer.drain()
    await asyncio.sleep(30)


@pytest.fixture
async def broken_stripe() -> AsyncIterator[Callable[[Answer], Awaitable[str]]]:
    """`await broken_stripe(answer)`: the URL of a server that answers every request so."""
    servers: list[asyncio.Server] = []

    async def start(answer: Answer) -> str:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("answer", [drop_mid_body, stall_mid_body])
async def test_an_answer_broken_off_mid_body_is_retried_later(
    broken_stripe: Callable[[Answer], Awaitable[str]], answer: Answer
) -> None:
    url = await broken_stripe(answer)
    settings = load_settings(
        stripe_api_key="sk_test_broken", stripe_api_base=url, stripe_meter_events_base=url
    )
    http = create_http_client(timeout=0.3)
    try:
        with pytest.raises(StripeUnavailableError, match="APIConnectionError"):
            await send_meter_event(create_stripe_client(settings, http_client=http), EVENT)
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]  # unannotated in the SDK
