"""The stand-in served on a thread of another process (`dev`, tests)."""

from __future__ import annotations

import logging

import pytest

from sensor_billing.devtools.stripe_standin import run_in_thread

LIFECYCLE = ("Shutting down", "Finished server process")


def test_a_threaded_standin_leaves_the_start_and_stop_lines_to_the_host(
    caplog: pytest.LogCaptureFixture,
) -> None:
    standin = run_in_thread()
    # As in `dev`: the API's uvicorn, configured after the stand-in, logs uvicorn.error at INFO.
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    logging.getLogger("uvicorn.error").info("Shutting down")  # the host's own line

    standin.stop()

    lifecycle = [
        (record.threadName, record.getMessage())
        for record in caplog.records
        if record.name == "uvicorn.error" and record.getMessage().startswith(LIFECYCLE)
    ]
    assert lifecycle == [("MainThread", "Shutting down")]
