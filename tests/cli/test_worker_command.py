"""`sensor-billing worker`: its options are checked before anything starts."""

from __future__ import annotations

import pytest

from tests.cli.conftest import UNREACHABLE_DATABASE_URL, run_cli


def test_a_concurrency_above_the_settings_limit_is_refused_before_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Were the option accepted, the worker would go on to PostgreSQL and stop there (exit 3).
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE_DATABASE_URL)
    outcome = run_cli("worker", "--concurrency", "501")
    assert outcome.exit_code == 2
    assert "--concurrency" in outcome.stderr
