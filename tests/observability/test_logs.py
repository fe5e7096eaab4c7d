"""`LOG_FORMAT=json`: one JSON object per line, with the record's fields and never a secret."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from sensor_billing.errors import ConfigurationError
from sensor_billing.logs import JsonFormatter, TextFormatter
from sensor_billing.settings import load_settings
from tests.observability.conftest import SECRET
from tests.support.stripe_events import deliver, make_event


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the service logs while the test runs, formatted as LOG_FORMAT=json writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("sensor_billing")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(previous)


def log_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_a_webhook_delivery_logs_one_json_line_with_its_fields_and_no_secret_or_payload(
    client: httpx.AsyncClient, json_log: io.StringIO
) -> None:
    event = make_event(
        "customer.updated",
        {"id": "cus_logged", "object": "customer", "email": "private@example.com"},
        created=int(time.time()),
    )
    await deliver(client, event, secret=SECRET)

    webhook_lines = [
        line for line in log_lines(json_log) if line["logger"] == "sensor_billing.webhooks"
    ]
    assert len(webhook_lines) == 1
    line = webhook_lines[0]
    assert {"time", "level", "logger", "message"} <= set(line)
    assert line["level"] == "INFO"
    assert line["event_id"] == event["id"]
    assert line["event_type"] == "customer.updated"
    assert line["outcome"] == "processed"
    assert isinstance(line["duration_ms"], float)
    written = json_log.getvalue()
    assert SECRET not in written
    assert "private@example.com" not in written


def format_record(formatter: logging.Formatter, message: str, **extra: object) -> str:
    record = logging.LogRecord(
        "sensor_billing.test", logging.WARNING, __file__, 1, message, (), None
    )
    record.__dict__.update(extra)
    return formatter.format(record)


def test_secret_shaped_values_are_redacted_in_the_message_and_in_extra_fields() -> None:
    line = json.loads(
        format_record(
            JsonFormatter(),
            "key sk_live_51Habcdef and endpoint secret whsec_abc123 refused",
            api_key="sk_test_standin",
            raw_body='{"id": "evt_1"}',
            detail="rotated to rk_live_98xyz",
            attempts=3,
        )
    )

    assert line["message"] == "key [redacted] and endpoint secret [redacted] refused"
    assert line["api_key"] == "[redacted]"
    assert line["raw_body"] == "[redacted]"
    assert line["detail"] == "rotated to [redacted]"
    assert line["attempts"] == 3


def test_a_service_key_is_redacted_wherever_it_appears() -> None:
    line = json.loads(
        format_record(
            JsonFormatter(),
            "retry with sbk_Zx-9_aQ and go",
            note="copied sbk_abc-DEF_123 by mistake",
        )
    )

    assert line["message"] == "retry with [redacted] and go"
    assert line["note"] == "copied [redacted] by mistake"


def test_text_lines_redact_secrets_too() -> None:
    line = format_record(TextFormatter(), "bad secret whsec_abc123")

    assert line.endswith("WARNING sensor_billing.test bad secret [redacted]")


def test_log_format_json_makes_every_line_a_json_object() -> None:
    script = (
        "import logging\n"
        "from sensor_billing.logs import configure_logging\n"
        "configure_logging('INFO', 'json')\n"
        "logging.getLogger('sensor_billing.worker').info('worker started (concurrency %d)', 4,"
        " extra={'queue': 'meter-reporting'})\n"
        "logging.getLogger('sensor_billing.worker').debug('not shown at INFO')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )

    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert len(lines) == 1
    assert lines[0]["message"] == "worker started (concurrency 4)"
    assert lines[0]["logger"] == "sensor_billing.worker"
    assert lines[0]["queue"] == "meter-reporting"


def test_log_format_accepts_json_or_text_in_any_case_and_names_the_variable_otherwise() -> None:
    assert load_settings(log_format="JSON").log_format == "json"
    assert load_settings().log_format == "text"
    with pytest.raises(ConfigurationError, match="LOG_FORMAT"):
        load_settings(log_format="xml")


def test_worker_metrics_port_is_off_by_default_and_must_be_a_port() -> None:
    assert load_settings().worker_metrics_port == 0
    assert load_settings(worker_metrics_port="9464").worker_metrics_port == 9464
    with pytest.raises(ConfigurationError, match="WORKER_METRICS_PORT"):
        load_settings(worker_metrics_port="70000")


def test_uvicorns_terminal_colour_copy_of_the_message_is_left_out() -> None:
    """uvicorn adds `color_message` (the message with ANSI colour codes) to its records: in a
    JSON line it is a second, escaped copy of `message`."""
    line = json.loads(
        format_record(
            JsonFormatter(),
            "Started server process [42]",
            color_message="Started server process [\x1b[36m%d\x1b[0m]",
        )
    )

    assert line["message"] == "Started server process [42]"
    assert "color_message" not in line
